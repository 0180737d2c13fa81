"""Build the digits network of ``examples/digits.bnn`` in Python, without a spec.

The IR is bnnc's contract between front ends and backends, so a model built
here compiles to exactly the code the ``.bnn`` file gives (once the spec's
source locations, which only feed comments, are set aside)::

    python examples/build_ir.py
"""

from __future__ import annotations

from pathlib import Path

import bnnc
from bnnc import dsl
from bnnc.compiler import ir


def digits_program() -> ir.Program:
    """The IR of examples/digits.bnn, written by hand."""
    image = ir.Name(id="image")
    x = ir.Name(id="x")
    return ir.Program(
        prior=ir.Distribution(params={"mu": 0.0, "std": 0.1}),
        posterior=ir.Distribution(params={"mu_init": 0.0, "rho_init": -7.0}),
        networks=[
            ir.Network(
                name="DigitsCNN",
                doc="A small convolutional classifier: two conv blocks and a "
                "Bayesian head.",
                params=[
                    ir.Param(name="classes", type="int", default=ir.Int(value=10)),
                    ir.Param(name="width", type="int", default=ir.Int(value=16)),
                ],
                inputs=[
                    ir.Input(
                        name="image",
                        dims=[
                            ir.Name(id="B"),
                            ir.Int(value=1),
                            ir.Int(value=8),
                            ir.Int(value=8),
                        ],
                    )
                ],
                layers=[
                    ir.Layer(
                        name="conv1",
                        op="Conv2d",
                        bayesian=False,
                        args=[ir.Int(value=1), ir.Name(id="width")],
                        kwargs=[
                            ir.Keyword(name="kernel_size", value=ir.Int(value=3)),
                            ir.Keyword(name="padding", value=ir.Int(value=1)),
                        ],
                        comment="deterministic",
                    ),
                    ir.Layer(
                        name="conv2",
                        op="Conv2d",
                        args=[
                            ir.Name(id="width"),
                            ir.BinOp(
                                op="*", left=ir.Int(value=2), right=ir.Name(id="width")
                            ),
                        ],
                        kwargs=[
                            ir.Keyword(name="kernel_size", value=ir.Int(value=3)),
                            ir.Keyword(name="padding", value=ir.Int(value=1)),
                        ],
                        comment="Bayesian",
                    ),
                    ir.Layer(
                        name="head",
                        op="Linear",
                        args=[ir.Auto(), ir.Name(id="classes")],
                        prior=ir.Distribution(params={"std": 1.0}),
                        comment="in-size inferred",
                    ),
                ],
                body=[
                    ir.Assign(
                        target="x",
                        value=ir.call(
                            "max_pool2d",
                            ir.call("relu", ir.call("conv1", image)),
                            ir.Int(value=2),
                        ),
                    ),
                    ir.Assign(
                        target="x",
                        value=ir.call(
                            "max_pool2d",
                            ir.call("relu", ir.call("conv2", x)),
                            ir.Int(value=2),
                        ),
                    ),
                    ir.Return(
                        outputs=[
                            ir.Output(value=ir.call("head", ir.call("flatten", x)))
                        ]
                    ),
                ],
            )
        ],
    )


def main() -> None:
    """Compile both and show they agree."""
    built = digits_program()
    spec = Path(__file__).with_name("digits.bnn")
    parsed = ir.without_locations(dsl.load(spec))
    same_ir = parsed == built
    same_code = bnnc.compile(parsed) == bnnc.compile(built)
    print(f"IR equal: {same_ir}; generated code identical: {same_code}")
    model = bnnc.build(built, classes=10)
    print(type(model).__name__, sum(p.numel() for p in model.parameters()), "params")


if __name__ == "__main__":
    main()
