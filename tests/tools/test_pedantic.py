"""``bnnc.compiler.pedantic``: warnings a careful Bayesian modeller would want."""

from __future__ import annotations

from pathlib import Path

import pytest

import bnnc
from bnnc import dsl
from bnnc.compiler.check import check_program
from bnnc.compiler.diagnostics import CODES, Diagnostic
from bnnc.compiler.pedantic import pedantic_warnings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.bnn"))


def _warnings(text: str, **options: bool) -> list[Diagnostic]:
    return pedantic_warnings(check_program(dsl.parse(text, "t.bnn")), **options)


def _render(text: str) -> str:
    found = _warnings(text)
    assert all(d.severity == "warning" for d in found)
    return "\n".join(d.render(text) for d in found)


def test_codes_are_registered() -> None:
    assert CODES["BNN601"] == "prior std far from the layer's fan-in scale"
    assert CODES["BNN602"] == "posterior starts wider than the prior"
    assert CODES["BNN603"] == "layer result never reaches an output"
    assert CODES["BNN604"] == "network has no Bayesian layer"


# --------------------------------------------------------------------------------------
# BNN601
# --------------------------------------------------------------------------------------

CONV = """\
network Conv(c: int = 8) {
    input x: Tensor[B, c, 16, 16]
    layers {
        a = Conv2d(c, 16, kernel_size=(3, 5), groups=2, prior=Gaussian(std=3.0))
        b = Conv2d(auto, 4, kernel_size=1, prior=Gaussian(std=0.02))
        ok = Conv2d(4, 4, kernel_size=3, prior=Gaussian(std=0.1))
        off = fixed Conv2d(4, 4, kernel_size=3)
    }
    forward { return off(ok(b(a(x)))) }
}
"""


def test_prior_scale_of_convolutions() -> None:
    # fan_in(a) = 8 / 2 groups * 3 * 5 = 60; fan_in(b) = auto = 16; ok: 4 * 9 = 36.
    assert _render(CONV) == (
        "t.bnn:4:63: warning[BNN601]: prior std 3.0 of layer `a` is 23x its fan-in "
        "scale 1/sqrt(60) = 0.13\n"
        "  |\n"
        "4 |         a = Conv2d(c, 16, kernel_size=(3, 5), groups=2, "
        "prior=Gaussian(std=3.0))\n"
        "  |                                                               "
        "^^^^^^^^^^^^^^^^^\n"
        "  = hint: with 60 inputs per output, a prior std between 0.013 and 1.3 keeps "
        "the prior's pre-activations near the scale of the inputs\n"
        "t.bnn:5:50: warning[BNN601]: prior std 0.02 of layer `b` is 0.08x its "
        "fan-in scale 1/sqrt(16) = 0.25\n"
        "  |\n"
        "5 |         b = Conv2d(auto, 4, kernel_size=1, prior=Gaussian(std=0.02))\n"
        "  |                                                  ^^^^^^^^^^^^^^^^^^\n"
        "  = hint: with 16 inputs per output, a prior std between 0.025 and 2.5 keeps "
        "the prior's pre-activations near the scale of the inputs"
    )


FROM_DEFAULTS = """\
prior default = Gaussian(std=2.0)

network Wide(d: int = 400, free: int) {
    input x: Tensor[B, d]
    input y: Tensor[B, free]
    layers {
        a = Linear(d, 8)
        b = Linear(free, 8)
        c = Linear(8, 1, prior=Gaussian(mu=1.0))
    }
    forward { return c(a(x) + b(y)) }
}
"""


def test_prior_scale_from_the_file_default() -> None:
    # b's fan-in depends on `free`, which has no default: not checked.
    found = _warnings(FROM_DEFAULTS)
    assert [(d.code, d.span.line if d.span else 0) for d in found] == [
        ("BNN601", 7),
    ]
    (warning,) = found
    assert warning.message == (
        "prior std 2.0 of layer `a` is 40x its fan-in scale 1/sqrt(400) = 0.05"
    )
    assert warning.hints == (
        "with 400 inputs per output, a prior std between 0.005 and 0.5 keeps the "
        "prior's pre-activations near the scale of the inputs",
        "std comes from the file's `prior default` (line 1)",
    )
    assert warning.span is not None and warning.span.column == 9  # the layer


def test_prior_scale_within_bounds_is_quiet() -> None:
    text = """
    prior default = Gaussian(std=0.5)
    network Ok = sequential { Linear(16, 16), relu, Linear(16, 1) }
    """
    assert _warnings(text) == []  # 0.5 is 2x 1/sqrt(16)


# --------------------------------------------------------------------------------------
# BNN602
# --------------------------------------------------------------------------------------

POSTERIOR = """\
posterior default = Gaussian(rho_init=-3.0)

network Net(d: int = 16) {
    prior default = Gaussian(std=0.04)
    input x: Tensor[B, d]
    layers {
        a = Linear(d, d, posterior=Gaussian(rho_init=0.0), prior=Gaussian(std=0.25))
        b = Linear(d, d)
        c = Linear(d, d, prior=Gaussian(std=0.25))
    }
    forward { return c(b(a(x))) }
}
"""


def test_posterior_wider_than_prior() -> None:
    # softplus(0) = 0.69 > 0.25 at the layer's own setting; softplus(-3) = 0.049
    # > 0.04 from the file default; c: 0.049 < 0.25 is fine.
    assert _render(POSTERIOR) == (
        "t.bnn:7:36: warning[BNN602]: initial posterior std of layer `a`, "
        "softplus(rho_init=0.0) = 0.69, is above its prior std 0.25\n"
        "  |\n"
        "7 |         a = Linear(d, d, posterior=Gaussian(rho_init=0.0), "
        "prior=Gaussian(std=0.25))\n"
        "  |                                    ^^^^^^^^^^^^^^^^^^^^^^\n"
        "  = hint: start the posterior narrower than the prior: rho_init below -1.26; "
        "-5 to -7 (std 0.0067 to 0.00091) is usual\n"
        "t.bnn:8:9: warning[BNN602]: initial posterior std of layer `b`, "
        "softplus(rho_init=-3.0) = 0.049, is above its prior std 0.04\n"
        "  |\n"
        "8 |         b = Linear(d, d)\n"
        "  |         ^^^^^^^^^^^^^^^^\n"
        "  = hint: start the posterior narrower than the prior: rho_init below -3.2; "
        "-5 to -7 (std 0.0067 to 0.00091) is usual\n"
        "  = hint: rho_init comes from the file's `posterior default` (line 1)"
    )


def test_posterior_at_the_prior_std_and_fixed_layers_are_quiet() -> None:
    text = """
    network Net(d: int = 16) {
        input x: Tensor[B, d]
        layers {
            a = Linear(d, d, prior=Gaussian(std=0.25),
                       posterior=Gaussian(rho_init=-5.0))
            b = fixed Linear(d, d)
        }
        forward { return b(a(x)) }
    }
    """
    assert _warnings(text) == []


# --------------------------------------------------------------------------------------
# BNN603
# --------------------------------------------------------------------------------------

DEAD = """\
network Block(d: int = 4) {
    input x: Tensor[B, d]
    layers { f = Linear(d, d) }
    forward { return f(x) }
}

network Net(d: int = 4) {
    input x: Tensor[B, d]
    layers {
        a = Linear(d, d)
        b = fixed Linear(d, d)
        blk = Block(d)
        out = Linear(d, d)
        side = Linear(d, d)
    }
    forward {
        h = a(x)
        h = out(x)
        g = relu(b(x) + blk(x))
        g = relu(g)
        s = side(x)
        return out(h) + side(s)
    }
}
"""


def test_layer_results_that_reach_no_output() -> None:
    assert _render(DEAD) == (
        "t.bnn:17:13: warning[BNN603]: the result of layer `a` never reaches an "
        "output of network `Net`\n"
        "   |\n"
        "17 |         h = a(x)\n"
        "   |             ^^^^\n"
        "  = hint: this `h` is reassigned before it is read; its weights are still "
        "sampled and its KL term still counts in the loss\n"
        "t.bnn:19:18: warning[BNN603]: the result of layer `b` never reaches an "
        "output of network `Net`\n"
        "   |\n"
        "19 |         g = relu(b(x) + blk(x))\n"
        "   |                  ^^^^\n"
        "  = hint: `g` only feeds values that reach no output; it is computed for "
        "nothing\n"
        "t.bnn:19:25: warning[BNN603]: the result of layer `blk` never reaches an "
        "output of network `Net`\n"
        "   |\n"
        "19 |         g = relu(b(x) + blk(x))\n"
        "   |                         ^^^^^^\n"
        "  = hint: `g` only feeds values that reach no output; its weights are never "
        "trained by the outputs"
    )


def test_unread_values_are_left_to_bnn210() -> None:
    text = """
    network Net(d: int = 4) {
        input x: Tensor[B, d]
        layers { a = Linear(d, d)  b = Linear(d, d) }
        forward {
            unused = a(x)
            return b(x)
        }
    }
    """
    checked = check_program(dsl.parse(text, "t.bnn"))
    assert [d.code for d in checked.warnings] == ["BNN210"]
    assert pedantic_warnings(checked) == []


# --------------------------------------------------------------------------------------
# BNN604
# --------------------------------------------------------------------------------------

DETERMINISTIC = """\
network Features(d: int = 4) {
    input x: Tensor[B, d]
    layers { f = fixed Linear(d, d) }
    forward { return relu(f(x)) }
}

network Plain(d: int = 4) {
    input x: Tensor[B, d]
    layers { feats = Features(d)  out = fixed Linear(d, 1) }
    forward { return out(feats(x)) }
}

network Mixed(d: int = 4) {
    input x: Tensor[B, d]
    layers { feats = Features(d)  out = Linear(d, 1) }
    forward { return out(feats(x)) }
}

network NoLayers {
    input x: Tensor[B, 3]
    forward { return relu(x) }
}
"""


def test_networks_without_bayesian_layers() -> None:
    # Features is used as a layer: only the networks nothing uses are examined.
    assert _render(DETERMINISTIC) == (
        "t.bnn:7:1: warning[BNN604]: network `Plain` has no Bayesian layer: its "
        "predictions carry no weight uncertainty\n"
        "  |\n"
        "7 | network Plain(d: int = 4) {\n"
        "  | ^^^^^^^\n"
        "  = hint: remove `fixed` from at least one layer, e.g. the read-out\n"
        "t.bnn:19:1: warning[BNN604]: network `NoLayers` has no Bayesian layer: its "
        "predictions carry no weight uncertainty\n"
        "   |\n"
        "19 | network NoLayers {\n"
        "   | ^^^^^^^\n"
        "  = hint: remove `fixed` from at least one layer, e.g. the read-out"
    )


# --------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------

EXAMPLE_CODES = {"digits": ["BNN601"]}  # the read-out's std=1.0 over 128 inputs


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples(path: Path) -> None:
    checked = bnnc.check(path)
    found = pedantic_warnings(checked)
    assert [d.code for d in found] == EXAMPLE_CODES.get(path.stem, [])
    assert pedantic_warnings(checked) == found  # deterministic
    for warning in found:
        assert warning.span is not None and warning.span.file == str(path)
        assert warning.hints


def test_digits_readout_message() -> None:
    (warning,) = pedantic_warnings(bnnc.check(ROOT / "examples" / "digits.bnn"))
    assert warning.message == (
        "prior std 1.0 of layer `head` is 11x its fan-in scale 1/sqrt(128) = 0.088"
    )


def test_imported_networks_on_request(tmp_path: Path) -> None:
    (tmp_path / "sub.bnn").write_text(
        """
network Sub(d: int = 100) {
    input x: Tensor[B, d]
    layers { f = Linear(d, 2, prior=Gaussian(std=5.0)) }
    forward { return f(x) }
}
"""
    )
    (tmp_path / "top.bnn").write_text(
        """from "sub.bnn" import Sub
network Top {
    input x: Tensor[B, 100]
    layers { s = Sub() }
    forward { return s(x) }
}
"""
    )
    checked = bnnc.check(tmp_path / "top.bnn")
    assert pedantic_warnings(checked) == []
    (warning,) = pedantic_warnings(checked, imported=True)
    assert warning.code == "BNN601"
    assert warning.span is not None
    assert warning.span.file == str(tmp_path / "sub.bnn")
    assert warning.span.line == 4


def test_docs_show_real_output() -> None:
    doc = (ROOT / "docs" / "tools.md").read_text(encoding="utf-8")
    digits = ROOT / "examples" / "digits.bnn"
    (warning,) = pedantic_warnings(bnnc.check(digits))
    rendered = warning.render(digits.read_text()).replace(
        str(digits), "examples/digits.bnn"
    )
    assert rendered in doc
    for text, index in ((POSTERIOR, 1), (DEAD, 0), (DETERMINISTIC, 0)):
        assert _warnings(text)[index].render(text) in doc
    for code, title in CODES.items():
        if code.startswith("BNN6"):
            assert f"| {code} | {title} |" in doc
