"""Symbolic integer sizes.

Shape inference works on sizes that may depend on network parameters (``width``)
or on symbolic input dimensions (``B``, ``T``). A :class:`Size` is a polynomial
with integer coefficients over such symbols, plus opaque atoms for floor
division and modulo that do not simplify. Polynomials are kept in a normal form,
so ``2 * width * 2`` and ``width * 4`` are the same size, and a size that
depends only on parameters can be emitted as a Python expression in generated
code (so ``auto`` stays correct when a user passes another ``width``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Monomial = tuple["Atom", ...]


@dataclass(frozen=True, order=True)
class Symbol:
    """A named size: a network parameter or a symbolic input dimension."""

    name: str


@dataclass(frozen=True)
class FloorDiv:
    """``numerator // denominator`` that did not simplify."""

    numerator: Size
    denominator: Size


@dataclass(frozen=True)
class Mod:
    """``numerator % denominator`` that did not simplify."""

    numerator: Size
    denominator: Size


Atom = Symbol | FloorDiv | Mod


def _atom_key(atom: Atom) -> str:
    return atom.name if isinstance(atom, Symbol) else f"~{render(atom_size(atom))}"


def atom_size(atom: Atom) -> Size:
    """The size made of a single atom."""
    return Size(((((atom,)), 1),))


@dataclass(frozen=True)
class Size:
    """A polynomial: a sorted tuple of (monomial, coefficient) pairs."""

    terms: tuple[tuple[Monomial, int], ...]

    # --- construction -------------------------------------------------------------
    @staticmethod
    def of(value: int | str | Size) -> Size:
        """A size from an int, a symbol name or a size."""
        if isinstance(value, Size):
            return value
        if isinstance(value, bool):
            raise TypeError("a size cannot be a bool")
        if isinstance(value, int):
            return Size((((), value),) if value else ())
        return atom_size(Symbol(value))

    @staticmethod
    def _normal(pairs: dict[Monomial, int]) -> Size:
        kept = [(m, c) for m, c in pairs.items() if c != 0]
        kept.sort(key=lambda mc: (len(mc[0]), [_atom_key(a) for a in mc[0]]))
        return Size(tuple(kept))

    # --- queries --------------------------------------------------------------------
    @property
    def constant(self) -> int | None:
        """The integer value when the size has no symbols."""
        if not self.terms:
            return 0
        if len(self.terms) == 1 and self.terms[0][0] == ():
            return self.terms[0][1]
        return None

    def symbols(self) -> set[str]:
        """Names of every symbol the size depends on."""
        found: set[str] = set()
        for monomial, _ in self.terms:
            for atom in monomial:
                if isinstance(atom, Symbol):
                    found.add(atom.name)
                else:
                    found |= atom.numerator.symbols() | atom.denominator.symbols()
        return found

    # --- arithmetic -----------------------------------------------------------------
    def __add__(self, other: Size | int) -> Size:
        other = Size.of(other)
        pairs: dict[Monomial, int] = dict(self.terms)
        for m, c in other.terms:
            pairs[m] = pairs.get(m, 0) + c
        return Size._normal(pairs)

    def __neg__(self) -> Size:
        return Size(tuple((m, -c) for m, c in self.terms))

    def __sub__(self, other: Size | int) -> Size:
        return self + (-Size.of(other))

    def __mul__(self, other: Size | int) -> Size:
        other = Size.of(other)
        pairs: dict[Monomial, int] = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                m = tuple(sorted(m1 + m2, key=_atom_key))
                pairs[m] = pairs.get(m, 0) + c1 * c2
        return Size._normal(pairs)

    def __floordiv__(self, other: Size | int) -> Size:
        other = Size.of(other)
        divisor = other.constant
        if divisor == 0:
            raise ZeroDivisionError("division of a size by zero")
        if divisor is not None:
            if divisor == 1:
                return self
            if all(c % divisor == 0 for _, c in self.terms):
                return Size(tuple((m, c // divisor) for m, c in self.terms))
            if self.constant is not None:
                return Size.of(self.constant // divisor)
        return atom_size(FloorDiv(self, other))

    def __mod__(self, other: Size | int) -> Size:
        other = Size.of(other)
        divisor = other.constant
        if divisor == 0:
            raise ZeroDivisionError("modulo of a size by zero")
        if divisor is not None and all(c % divisor == 0 for _, c in self.terms):
            return Size.of(0)
        if divisor is not None and self.constant is not None:
            return Size.of(self.constant % divisor)
        return atom_size(Mod(self, other))

    # --- evaluation -----------------------------------------------------------------
    def evaluate(self, values: Mapping[str, int]) -> int | None:
        """The integer value under ``values``, or None if a symbol is unknown."""
        total = 0
        for monomial, coefficient in self.terms:
            product = coefficient
            for atom in monomial:
                value = _evaluate_atom(atom, values)
                if value is None:
                    return None
                product *= value
            total += product
        return total

    def substitute(self, mapping: Mapping[str, Size]) -> Size:
        """Replace symbols by sizes (used when a network is instantiated)."""
        result = Size.of(0)
        for monomial, coefficient in self.terms:
            product = Size.of(coefficient)
            for atom in monomial:
                product = product * _substitute_atom(atom, mapping)
            result = result + product
        return result

    def __str__(self) -> str:
        return render(self)


def split_divisions(size: Size, prefix: str) -> tuple[Size, list[tuple[str, Size]]]:
    """Replace each ``//`` or ``%`` atom by a new symbol ``{prefix}_{k}``.

    Returns the rewritten size and the (symbol, atom) pairs, so generated code
    can name long sub-expressions on their own lines.
    """
    named: dict[Atom, str] = {}
    result = Size.of(0)
    for monomial, coefficient in size.terms:
        product = Size.of(coefficient)
        for atom in monomial:
            if isinstance(atom, Symbol):
                product = product * atom_size(atom)
            else:
                name = named.setdefault(atom, f"{prefix}_{len(named) + 1}")
                product = product * Size.of(name)
        result = result + product
    return result, [(name, atom_size(atom)) for atom, name in named.items()]


def _evaluate_atom(atom: Atom, values: Mapping[str, int]) -> int | None:
    if isinstance(atom, Symbol):
        return values.get(atom.name)
    numerator = atom.numerator.evaluate(values)
    denominator = atom.denominator.evaluate(values)
    if numerator is None or denominator is None or denominator == 0:
        return None
    if isinstance(atom, FloorDiv):
        return numerator // denominator
    return numerator % denominator


def _substitute_atom(atom: Atom, mapping: Mapping[str, Size]) -> Size:
    if isinstance(atom, Symbol):
        return mapping.get(atom.name, atom_size(atom))
    numerator = atom.numerator.substitute(mapping)
    denominator = atom.denominator.substitute(mapping)
    if isinstance(atom, FloorDiv):
        return numerator // denominator
    return numerator % denominator


def render(size: Size, names: Mapping[str, str] | None = None) -> str:
    """A Python expression for the size; ``names`` renames symbols."""
    names = names or {}
    if not size.terms:
        return "0"
    # Highest-degree terms first, the constant last: `2 * width + 1`.
    ordered = sorted(size.terms, key=lambda mc: -len(mc[0]))
    pieces: list[str] = []
    for monomial, coefficient in ordered:
        factors = [_render_atom(a, names) for a in monomial]
        if len(monomial) > 1 or abs(coefficient) != 1:
            # `//` and `%` bind like `*`, so a product needs them parenthesised.
            factors = [
                f if isinstance(a, Symbol) else f"({f})"
                for a, f in zip(monomial, factors, strict=True)
            ]
        magnitude = abs(coefficient)
        if magnitude != 1 or not factors:
            factors.insert(0, str(magnitude))
        text = " * ".join(factors)
        if not pieces:
            pieces.append(f"-{text}" if coefficient < 0 else text)
        else:
            pieces.append(f"- {text}" if coefficient < 0 else f"+ {text}")
    return " ".join(pieces)


def _render_atom(atom: Atom, names: Mapping[str, str]) -> str:
    if isinstance(atom, Symbol):
        return names.get(atom.name, atom.name)
    op = "//" if isinstance(atom, FloorDiv) else "%"
    return f"{_paren(atom.numerator, names)} {op} {_paren(atom.denominator, names)}"


def _paren(size: Size, names: Mapping[str, str]) -> str:
    text = render(size, names)
    simple = len(size.terms) <= 1 and (not size.terms or size.terms[0][1] >= 0)
    return text if simple and " " not in text else f"({text})"
