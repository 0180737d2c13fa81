"""``bnnc fmt``: canonical, idempotent, meaning- and comment-preserving."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnnc.compiler import ir
from bnnc.compiler.diagnostics import CompileError
from bnnc.dsl import parse
from bnnc.dsl.format import (
    LINE_LENGTH,
    FormatResult,
    format_file,
    format_source,
    write_atomic,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.bnn"))


def meaning(text: str) -> ir.Program:
    return ir.without_locations(parse(text, "t.bnn"))


_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')


def comments(text: str) -> Counter[str]:
    """The comments of valid ``.bnn`` text (strings skipped), trailing space dropped."""
    found = _STRING_OR_COMMENT.findall(text)
    return Counter(c.rstrip() for c in found if c.startswith("#"))


def code_of(line: str) -> str:
    """``line`` without its comment."""
    return _STRING_OR_COMMENT.sub(
        lambda m: m.group() if m.group().startswith('"') else "", line
    )


def check(text: str) -> str:
    """Format ``text`` and check every property the formatter promises."""
    out = format_source(text)
    assert format_source(out) == out, "not idempotent"
    assert meaning(out) == meaning(text), "the IR changed"
    kept, given_ = comments(out), comments(text)
    assert all(kept[c] >= n for c, n in given_.items()), "a comment was lost"
    if out:
        assert out.endswith("\n") and not out.endswith("\n\n")
        assert not out.startswith("\n")
    assert "\n\n\n" not in out
    for line in out.split("\n"):
        assert line == line.rstrip(), f"trailing whitespace: {line!r}"
        code = code_of(line)  # comments are kept as they are, even a lone CR
        assert "\t" not in code and "\r" not in code, f"a tab or CR: {line!r}"
    return out


# --- golden cases --------------------------------------------------------------------

GOLDEN: dict[str, tuple[str, str]] = {
    "messy spacing": (
        """\
prior default=Gaussian(mu=0.0,std=0.1)
posterior   default =Gaussian( mu_init = 0.0 , rho_init=-6.0 )
network  MLP ( d_in:int,hidden:int=64 ) {
input x:Tensor[B,d_in]
layers{fc1=Linear(d_in,hidden);fc2=Linear(hidden,1)}
forward{h=relu(fc1(x))
return fc2(dropout(h,p=0.1))*2+1}}
""",
        """\
prior     default = Gaussian(mu=0.0, std=0.1)
posterior default = Gaussian(mu_init=0.0, rho_init=-6.0)

network MLP(d_in: int, hidden: int = 64) {
    input x: Tensor[B, d_in]

    layers {
        fc1 = Linear(d_in, hidden)
        fc2 = Linear(hidden, 1)
    }

    forward {
        h = relu(fc1(x))
        return fc2(dropout(h, p=0.1)) * 2 + 1
    }
}
""",
    ),
    "comments everywhere": (
        """\
# file header

# doc line 1
#
# doc line 2
network Net(d: int) {   # opener comment
    # before the input
    input x: Tensor[B, d]   # the input
    layers {
        fc = Linear(d, 2)   # becomes the layer's comment
        # between layers
        out = Linear(2, 1) # out
        # end of layers
    }
    forward {
        h = relu(fc(x))  # trailing
        return out(h)
        # end of forward
    } # after forward
}  # after network
# end of file
""",
        """\
# file header

# doc line 1
#
# doc line 2
network Net(d: int) {   # opener comment
    # before the input
    input x: Tensor[B, d]   # the input

    layers {
        fc  = Linear(d, 2)  # becomes the layer's comment
        # between layers
        out = Linear(2, 1)  # out
        # end of layers
    }

    forward {
        h = relu(fc(x))  # trailing
        return out(h)
        # end of forward
    }  # after forward
}  # after network
# end of file
""",
    ),
    "comments inside statements": (
        """\
network Net(d: int, # the size
            w: int) { # opener
    input x: Tensor[B, # batch
                    d]
    layers # before the brace
    {
        fc = Linear(d, # in
                    w, prior=Gaussian(std=1.0)) # fc
        out = # odd place
              Linear(w, 1)
    }
    forward {
        return out(fc(x) + # inside an operator
                   x) # end
    }
}
""",
        """\
network Net(
    d: int,  # the size
    w: int,
) {  # opener
    input x: Tensor[
        B,  # batch
        d,
    ]

    layers {
        # before the brace
        fc  = Linear(
            d,  # in
            w,
            prior=Gaussian(std=1.0),
        )  # fc
        # odd place
        out = Linear(w, 1)
    }

    forward {
        return out(
            # inside an operator
            fc(x) + x,
        )  # end
    }
}
""",
    ),
    "crlf and tabs": (
        "network Net(d: int) {\r\n\tinput x: Tensor[B, d]\r\n\r\n\tlayers {\r\n"
        "\t\tfc = Linear(d, 2)\t# tab\r\n\t}\r\n\r\n\tforward {\r\n"
        "\t\treturn fc(x)\r\n\t}\r\n}\r\n",
        """\
network Net(d: int) {
    input x: Tensor[B, d]

    layers {
        fc = Linear(d, 2)  # tab
    }

    forward {
        return fc(x)
    }
}
""",
    ),
    "long argument lists": (
        """\
network Wide(first_input_size: int = 128, hidden_size: int = 256, output_size: int = 10, rate: float = 0.1) {
    input x: Tensor[B, first_input_size]
    layers {
        fc = Linear(first_input_size, hidden_size, prior=Gaussian(mu=0.0, std=0.5), posterior=Gaussian(mu_init=0.0, rho_init=-6.0))
        out = Linear(hidden_size, output_size, prior=Gaussian(mu=0.0, std=1.0), posterior=Gaussian(mu_init=0.0, rho_init=-6.0, ), )
        extremely_long_layer_name_for_testing = Linear(first_input_size_and_then_some, hidden_size_and_more_and_more)
    }
    forward {
        return log_softmax(out(dropout(relu(fc(x)), p=rate)), dim=-1) + out(dropout(relu(fc(x)), p=rate))
    }
}
""",  # noqa: E501
        """\
network Wide(first_input_size: int = 128, hidden_size: int = 256, output_size: int = 10,
             rate: float = 0.1) {
    input x: Tensor[B, first_input_size]

    layers {
        fc                                    = Linear(
            first_input_size,
            hidden_size,
            prior=Gaussian(mu=0.0, std=0.5),
            posterior=Gaussian(mu_init=0.0, rho_init=-6.0),
        )
        out                                   = Linear(
            hidden_size,
            output_size,
            prior=Gaussian(mu=0.0, std=1.0),
            posterior=Gaussian(mu_init=0.0, rho_init=-6.0),
        )
        extremely_long_layer_name_for_testing = Linear(first_input_size_and_then_some,
                                                       hidden_size_and_more_and_more)
    }

    forward {
        return log_softmax(out(dropout(relu(fc(x)), p=rate)), dim=-1)
            + out(dropout(relu(fc(x)), p=rate))
    }
}
""",
    ),
    "sequential": (
        """\
# A chain.
network Chain(d: int, h: int = 32) = sequential { Linear(d, h), relu,   # first block
  fixed Linear(h, h), relu
  ,
  Linear(h, 2), Normal }   # head
network Tiny() = sequential{Linear(4,2)}
network Long(d: int) = sequential { Linear(d, 64), relu, Linear(64, 64), relu, Linear(64, 64), relu, Linear(64, 64), relu, Linear(64, 1) }
""",  # noqa: E501
        """\
# A chain.
network Chain(d: int, h: int = 32) = sequential {
    Linear(d, h), relu,  # first block
    fixed Linear(h, h), relu,
    Linear(h, 2), Normal,  # head
}

network Tiny() = sequential {
    Linear(4, 2)
}

network Long(d: int) = sequential {
    Linear(d, 64), relu, Linear(64, 64), relu, Linear(64, 64), relu, Linear(64, 64),
    relu, Linear(64, 1),
}
""",
    ),
    "imports, priors, heads and named outputs": (
        """\
from "blocks.bnn" import MLPBlock,GaussianHead
from "other.bnn"   import Thing
prior default = Gaussian(std=1.0)
posterior default = Gaussian(rho_init=-5.0)
network Head(w: int = 8) {
    prior default = Gaussian(std = 0.5) ; input h: Tensor[B, w] ; input mask: Tensor[B, w, dtype=bool]
    layers { mlp = MLPBlock(w, hidden=2*w) ; head = GaussianHead(w) ; mean = fixed Linear(w, 2) }
    forward { out = head(mlp(h))
      return (mean = out.mean, log_std=out.log_std, extra = mean(h * mask, dim = -1),) }
}
network Reg(d: int) {
    input x: Tensor[B, d]
    layers { out = Linear(d, 2, prior=Gaussian(mu=0.0, std=1e-1)) }
    forward { return Normal(out(x)) }
}
""",  # noqa: E501
        """\
from "blocks.bnn" import MLPBlock, GaussianHead
from "other.bnn" import Thing

prior     default = Gaussian(std=1.0)
posterior default = Gaussian(rho_init=-5.0)

network Head(w: int = 8) {
    prior default = Gaussian(std=0.5)

    input h:    Tensor[B, w]
    input mask: Tensor[B, w, dtype=bool]

    layers {
        mlp  = MLPBlock(w, hidden=2 * w)
        head = GaussianHead(w)
        mean = fixed Linear(w, 2)
    }

    forward {
        out = head(mlp(h))
        return (mean=out.mean, log_std=out.log_std, extra=mean(h * mask, dim=-1))
    }
}

network Reg(d: int) {
    input x: Tensor[B, d]

    layers {
        out = Linear(d, 2, prior=Gaussian(mu=0.0, std=1e-1))
    }

    forward {
        return Normal(out(x))
    }
}
""",
    ),
    "expressions": (
        """\
network E(n: int = -(-3), m: float = .5e-3) {
    input x: Tensor[B, 1_000]
    forward {
        t = (  ) ; u = ( x , ) ; v = ((x, x)) ; w = ((x))
        a = (x - (x - x)) * (x + x) / (x * x) // x % (x / x)
        b = - x . y + (-x).y + (x + x).z + (1).real - -1
        return (a, b, "a # not a comment", )
    }
}
""",
        """\
network E(n: int = -(-3), m: float = .5e-3) {
    input x: Tensor[B, 1_000]

    forward {
        t = ()
        u = (x,)
        v = (x, x)
        w = x
        a = (x - (x - x)) * (x + x) / (x * x) // x % (x / x)
        b = -x.y + (-x).y + (x + x).z + (1).real - -1
        return (a, b, "a # not a comment")
    }
}
""",
    ),
    "blank lines": (
        """\


network A {
    input x: Tensor[B, 2]



    input y: Tensor[B, 2]
    layers {

        a = Linear(2, 2)


        long_name = Linear(2, 2)

    }


    forward { return a(x) }

}



""",
        """\
network A {
    input x: Tensor[B, 2]

    input y: Tensor[B, 2]

    layers {
        a = Linear(2, 2)

        long_name = Linear(2, 2)
    }

    forward {
        return a(x)
    }
}
""",
    ),
    "docstrings stay docstrings": (
        """\
network A = sequential { Linear(2, 3) }
# not a docstring: a blank line follows

# the docstring of B
network B = sequential { Linear(2, 3) } # after B: the Linear's (it ends its line)
# not a docstring: `network C` does not start its line
; network C = sequential { Linear(2, 3) }
""",
        """\
network A = sequential {
    Linear(2, 3)
}

# not a docstring: a blank line follows

# the docstring of B
network B = sequential {
    Linear(2, 3)  # after B: the Linear's (it ends its line)
}

# not a docstring: `network C` does not start its line

network C = sequential {
    Linear(2, 3)
}
""",
    ),
    "layer comments stay on their layer's line": (
        """\
network A {
    input x: Tensor[B, 2]
    layers { a = Linear(2, 2); b = Linear(2, 2) } forward { return b(a(x)) } } # both
network S = sequential { Linear(2,
    3), relu # not the Linear's: relu follows it on its line
    , Linear(3, 1) } # the last Linear's
""",
        """\
network A {
    input x: Tensor[B, 2]

    layers {
        a = Linear(2, 2)  # both
        b = Linear(2, 2)  # both
    }

    forward {
        return b(a(x))
    }
}

network S = sequential {
    Linear(2, 3), relu,  # not the Linear's: relu follows it on its line
    Linear(3, 1),  # the last Linear's
}
""",
    ),
    "empty blocks": (
        "network A { layers { } forward { } }  network B { # c\n } # d\n"
        "network C { forward { # e\n } # f\n }",
        """\
network A {
    layers {}

    forward {}
}

network B {  # c
}  # d

network C {
    forward {  # e
    }  # f
}
""",
    ),
}


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden(name: str) -> None:
    before, after = GOLDEN[name]
    assert check(before) == after
    assert check(after) == after


def test_empty_and_comment_only_files() -> None:
    assert format_source("") == ""
    assert format_source("  \n\n\t\n") == ""
    assert (
        format_source("# only\n\n\n#  a comment   \r\n") == "# only\n\n#  a comment\n"
    )


def test_trailing_comment_columns() -> None:
    # Aligned comments stay aligned where the code before them is unchanged
    # (spaces aside); where it changed (or after a tab) they follow two spaces
    # after the code.
    text = """\
network A {
    input x: Tensor[B, 2]

    layers {
        a   = Linear(2, 2)              # one
        bcd = Linear(2, 2)              # two
        e   =Linear(2,
                    2)                  # three
        f   = Linear(2, 2, prior=Gaussian(std=1.0), posterior=Gaussian(mu_init=0.0, rho_init=-5.0))  # four
    }

    forward {
        return f(e(bcd(a(x))))\t# five
    }
}
"""  # noqa: E501
    out = check(text)
    assert "        a   = Linear(2, 2)              # one\n" in out
    assert "        bcd = Linear(2, 2)              # two\n" in out
    assert "        e   = Linear(2, 2)  # three\n" in out
    assert (
        f"\n{' ' * 21}posterior=Gaussian(mu_init=0.0, rho_init=-5.0))  # four\n" in out
    )
    assert "        return f(e(bcd(a(x))))  # five\n" in out


def test_wrapped_lines_fit() -> None:
    before = GOLDEN["long argument lists"][0]
    for line in check(before).split("\n"):
        assert len(line) <= LINE_LENGTH


def test_layer_comments_and_docstrings_survive() -> None:
    before = GOLDEN["comments everywhere"][0]
    program = parse(format_source(before))
    net = program.networks[0]
    assert net.doc == "doc line 1\n\ndoc line 2"
    assert [layer.comment for layer in net.layers] == [
        "becomes the layer's comment",
        "out",
    ]


@pytest.mark.parametrize(
    "expression",
    [
        "f(" * 74 + "x  # deep\n" + ")" * 74,
        "x - (" * 148 + "x" + ")" * 148,
        "-" * 148 + "x",
        " + ".join(["x"] * 149),
    ],
    ids=["calls", "operators", "negations", "chain"],
)
def test_deepest_accepted_expressions(expression: str) -> None:
    # Nesting up to the front end's limit (BNN005) formats without overflowing
    # Python's stack.
    text = f"network A {{ input x: Tensor[B, 2]\n forward {{ return {expression} }} }}"
    out = check(text)
    if expression.startswith("x + "):  # a chain is wrapped like arguments
        assert all(len(line) <= LINE_LENGTH for line in out.split("\n"))


def test_documented_example() -> None:
    document = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    section = document.split("\n## Formatting\n", 1)[1].split("\n## ", 1)[0]
    before, after = re.findall(r"^```\n(.*?)^```$", section, re.S | re.M)
    assert check(before) == after


# --- the examples --------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_canonical(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert check(text) == text, f"{path.name} is not formatted (bnnc fmt)"
    result = format_file(path)
    assert result == FormatResult(str(path), text, text, changed=False)


# --- random re-spacing and re-commenting of the examples -----------------------------

_TOKEN = re.compile(
    r'"(?:[^"\\\n]|\\.)*"'
    r"|#[^\r\n]*"
    r"|(?:[0-9](?:_?[0-9])*)?\.[0-9](?:_?[0-9])*(?:[eE][+-]?[0-9](?:_?[0-9])*)?"
    r"|[0-9](?:_?[0-9])*[eE][+-]?[0-9](?:_?[0-9])*"
    r"|[0-9](?:_?[0-9])*"
    r"|[A-Za-z_][A-Za-z0-9_]*"
    r"|//"
    r"|\S"
)
_GLUE = set("()[]{},:=;")  # no space is needed next to these
_SEPARATORS = (
    " ",
    "",
    "",
    "\n",
    "\t",
    "   ",
    "\r\n",
    "\n\n",
    "\n\t\t",
    "  # note\n",
    " #\n",
    "\n# own line\n",
    "\t# after a tab\r\n",
    "\n\n# after a blank line\n\n",
)
_CORPUS = {
    **{path.name: path.read_text(encoding="utf-8") for path in EXAMPLES},
    **{name: before for name, (before, _) in GOLDEN.items()},
}
_TOKENS = {name: _TOKEN.findall(text) for name, text in _CORPUS.items()}
_GAPS = {name: re.split(_TOKEN, text)[1:-1] for name, text in _CORPUS.items()}


def respaced(name: str, seed: int, rate: float) -> str:
    """``_CORPUS[name]`` with some of its token gaps replaced at random."""
    rng = random.Random(seed)
    tokens = _TOKENS[name]
    out = [tokens[0]]
    for before, token, gap in zip(tokens[:-1], tokens[1:], _GAPS[name], strict=True):
        if rng.random() < rate:
            gap = rng.choice(_SEPARATORS)
            if not gap and before[-1] not in _GLUE and token[0] not in _GLUE:
                gap = " "
        if before.startswith("#") and not gap.startswith(("\n", "\r\n")):
            gap = "\n" + gap  # a comment ends at the end of its line
        out.append(gap)
        out.append(token)
    end = rng.choice(["", "\n", "\r\n", "\n\n  # the end"]) if rate else "\n"
    return "".join(out) + end


def test_respacing_without_changes_gives_the_example() -> None:
    for name, text in _CORPUS.items():
        assert respaced(name, 0, 0.0).strip() == text.strip()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    name=st.sampled_from(sorted(_TOKENS)),
    seed=st.integers(0, 2**32 - 1),
    rate=st.sampled_from([0.02, 0.1, 0.3, 1.0]),
)
def test_respaced_examples(name: str, seed: int, rate: float) -> None:
    text = respaced(name, seed, rate)
    check(text)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from([path.name for path in EXAMPLES]),
    seed=st.integers(0, 2**32 - 1),
)
def test_spacing_within_lines_is_canonical(name: str, seed: int) -> None:
    # Changing the spaces between tokens on a line (not the line breaks) makes
    # no difference once formatted, except to the column of a trailing comment.
    rng = random.Random(seed)
    tokens = _TOKENS[name]
    out = [tokens[0]]
    for before, token, gap in zip(tokens[:-1], tokens[1:], _GAPS[name], strict=True):
        if "\n" not in gap and not token.startswith("#") and rng.random() < 0.5:
            gap = rng.choice([" ", "  ", "\t", "", ""])
            if not gap and before[-1] not in _GLUE and token[0] not in _GLUE:
                gap = " "
        out.append(gap)
        out.append(token)
    original = (ROOT / "examples" / name).read_text(encoding="utf-8")

    def squeeze(text: str) -> str:
        return re.sub(r"(?m)(\S)[ \t]+#", r"\1  #", text)

    assert squeeze(check("".join(out) + "\n")) == squeeze(original)


# --- errors and files -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "network",
        "network A {",
        "network A { input x: Tensor[B, 2] forward { return x + } }",
        "network A = sequential { }",
        'network A = sequential { Linear(2, 3) } "unterminated',
        "network A { layers { a = Linear(2, 2) } layers { } }",
        "network A = sequential { Linear(2, 3) }\nnetwork A = sequential { Linear(2) }",
        "prior default = Gaussian(sigma=1.0)",
        "network input = sequential { Linear(2, 3) }",
        "\ufeffnetwork A = sequential { Linear(2, 3) }",
        "network A = sequential { Linear(2, 3) }\x00",
        "x" * (1 << 20) + "y",
    ],
)
def test_invalid_input_raises_compile_error(text: str) -> None:
    with pytest.raises(CompileError):
        format_source(text, "bad.bnn")


def test_format_file_and_write_atomic(tmp_path: Path) -> None:
    path = tmp_path / "m.bnn"
    path.write_bytes(b"\xef\xbb\xbfnetwork A = sequential {\r\n  Linear(2, 3)\r\n}\r\n")
    path.chmod(0o640)
    result = format_file(path)
    assert result.changed
    assert result.formatted == "network A = sequential {\n    Linear(2, 3)\n}\n"
    write_atomic(path, result.formatted)
    assert path.read_bytes() == result.formatted.encode()
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["m.bnn"]
    assert not format_file(path).changed

    bad = tmp_path / "bad.bnn"
    bad.write_bytes(b"network \xff")
    with pytest.raises(CompileError):
        format_file(bad)
    with pytest.raises(CompileError):
        format_file(tmp_path / "missing.bnn")
