"""Symbolic sizes: normal form, arithmetic, evaluation, substitution, rendering."""

import pytest

from bnnc.compiler.symbolic import Size, render

W = Size.of("width")
H = Size.of("H")


def test_products_are_normalised() -> None:
    assert Size.of(8) * W == W * 2 * 2 * 2
    assert render(W * 2 * 2 * 2) == "8 * width"
    assert (W + W) == W * 2
    assert (W - W).constant == 0


def test_constants_fold() -> None:
    assert (Size.of(8) + 2 * 1 - 2 - 1).constant == 7
    assert ((Size.of(8) + 2 - 2 - 1) // 1 + 1).constant == 8
    assert (Size.of(7) // 2).constant == 3
    assert (Size.of(7) % 2).constant == 1


def test_exact_division_of_polynomials() -> None:
    assert (W * 4) // 2 == W * 2
    assert render((W * 4 + 2) // 2) == "2 * width + 1"


def test_opaque_floor_division_evaluates_and_substitutes() -> None:
    out = (H + 2 - 3) // 2 + 1
    assert out.constant is None
    assert out.evaluate({"H": 9}) == 5
    assert out.evaluate({}) is None
    assert out.substitute({"H": Size.of(9)}).constant == 5
    assert render(out) == "(H - 1) // 2 + 1" or render(out) == "1 + (H - 1) // 2"


def test_render_signs_and_symbols() -> None:
    assert render(Size.of(0)) == "0"
    assert render(Size.of(-3)) == "-3"
    assert render(W - 1) in ("width - 1", "-1 + width")
    assert render(W * Size.of("depth")) == "depth * width"
    assert render(W * 3, {"width": "self.width"}) == "3 * self.width"


def test_symbols_and_division_by_zero() -> None:
    assert (W * H + 1).symbols() == {"width", "H"}
    with pytest.raises(ZeroDivisionError):
        W // 0


def test_rendered_expression_is_valid_python() -> None:
    size = ((H * 2 + W) // 3) * 4 - W % 5
    code = render(size)
    assert eval(code, {"H": 10, "width": 7}) == size.evaluate({"H": 10, "width": 7})
