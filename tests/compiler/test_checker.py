"""The checker: shapes through every construct, auto sizes, instantiation."""

import pytest

from bnnc import dsl
from bnnc.compiler.check import check_program
from bnnc.compiler.diagnostics import CompileError
from bnnc.compiler.symbolic import Size


def check(text: str):
    return check_program(dsl.parse(text, "t.bnn"))


def dims(info, name):
    return [str(d) for d in info.values[name].dims]


def codes(text: str) -> list[str]:
    with pytest.raises(CompileError) as caught:
        check(text)
    return [d.code for d in caught.value.diagnostics if d.severity == "error"]


def test_conv_pool_flatten_shapes_and_auto() -> None:
    checked = check(
        """
        network N(width: int = 8, classes: int = 10) {
            input image: Tensor[B, 3, 32, 32]
            layers {
                c1 = Conv2d(3, width, kernel_size=5, stride=1, padding=2)
                c2 = Conv2d(auto, 2 * width, kernel_size=(3, 3), dilation=2)
                head = Linear(auto, classes)
            }
            forward {
                a = max_pool2d(relu(c1(image)), 2)
                b = avg_pool2d(c2(a), kernel_size=2, stride=2)
                f = flatten(b)
                return head(f)
            }
        }
        """
    )
    info = checked.networks["N"]
    assert dims(info, "a") == ["B", "width", "16", "16"]
    # dilation 2, kernel 3: 16 - 4 = 12; pool 2 -> 6
    assert dims(info, "b") == ["B", "2 * width", "6", "6"]
    assert dims(info, "f") == ["B", "72 * width"]
    assert info.layers["c2"].auto == {"input_channels": Size.of("width")}
    assert str(info.layers["head"].auto["input_size"]) == "72 * width"
    assert [str(d) for d in info.outputs[0][1].dims] == ["B", "classes"]


def test_sequence_model_and_named_outputs() -> None:
    checked = check(
        """
        network S(vocab: int = 100) {
            input tokens: Tensor[B, T, dtype=int64]
            layers {
                emb = Embedding(vocab, 16, padding_idx=0)
                lstm = LSTM(vocab, 16, 32, 4)
                proj = Linear(16, 8)
            }
            forward {
                e = mean(emb(tokens), dim=1)
                h = lstm(tokens)
                return (summary=proj(e), logits=log_softmax(h))
            }
        }
        """
    )
    info = checked.networks["S"]
    assert dims(info, "e") == ["B", "16"]
    assert [(n, [str(d) for d in t.dims]) for n, t in info.outputs] == [
        ("summary", ["B", "8"]),
        ("logits", ["B", "4"]),
    ]
    assert info.record_name == "SOutput"


def test_network_as_layer_is_checked_with_the_callers_values() -> None:
    checked = check(
        """
        network Block(d: int, hidden: int = 32) {
            input x: Tensor[B, d]
            layers { a = Linear(d, hidden)  b = Linear(hidden, d) }
            forward { return x + b(relu(a(x))) }
        }
        network Top(d_in: int = 12) {
            input x: Tensor[B, d_in]
            layers { blk = Block(d=d_in, hidden=64)  out = Linear(auto, 1) }
            forward { return out(blk(x)) }
        }
        """
    )
    assert list(checked.networks) == ["Block", "Top"]
    assert str(checked.networks["Top"].layers["out"].auto["input_size"]) == "d_in"
    assert codes(
        """
        network Block(d: int) {
            input x: Tensor[B, d]
            layers { a = Linear(d, d) }
            forward { return a(x) }
        }
        network Top {
            input x: Tensor[B, 12]
            layers { blk = Block(d=16) }
            forward { return blk(x) }
        }
        """
    ) == ["BNN402"]


def test_residual_broadcast_and_concat() -> None:
    checked = check(
        """
        network R {
            input x: Tensor[B, 8]
            input y: Tensor[B, 4]
            layers { f = Linear(12, 8) }
            forward {
                z = concat(x, y, dim=1)
                return x + f(z)
            }
        }
        """
    )
    assert dims(checked.networks["R"], "z") == ["B", "12"]


def test_symbolic_dims_flow_through_and_auto_cannot_depend_on_them() -> None:
    checked = check(
        """
        network C {
            input x: Tensor[B, 4, L]
            layers { c = Conv1d(4, 8, kernel_size=3, padding=1) }
            forward { return c(x) }
        }
        """
    )
    assert [str(d) for d in checked.networks["C"].outputs[0][1].dims] == ["B", "8", "L"]
    assert "BNN403" in codes(
        """
        network C {
            input x: Tensor[B, 4, L]
            layers { c = Conv1d(4, 8, kernel_size=3)  h = Linear(auto, 2) }
            forward { return h(flatten(c(x))) }
        }
        """
    )


def test_all_independent_errors_are_reported_together() -> None:
    found = codes(
        """
        network A {
            input x: Tensor[B, 4]
            layers { f = Linear(5, 2)  g = Linaer(2, 2)  unused = Linear(2, 2) }
            forward { y = f(x)  return relu(q) }
        }
        """
    )
    assert sorted(found) == ["BNN201", "BNN203", "BNN210", "BNN402"]


def test_warnings_do_not_fail() -> None:
    checked = check(
        """
        network W {
            input x: Tensor[B, 4]
            input extra: Tensor[B, 4]
            layers { f = Linear(4, 2) }
            forward { return f(x) }
        }
        """
    )
    assert [w.code for w in checked.warnings] == ["BNN210"]
