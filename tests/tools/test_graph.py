"""``bnnc.compiler.graph``: networks as Graphviz DOT, and rendering with ``dot``.

The DOT text is always checked by parsing it back with a small parser of the
subset ``to_dot`` writes (quoted IDs, attribute lists, clusters, ``rank=same``
groups): braces balance, every node is declared once, every edge joins declared
nodes, and labels carry the shapes the checker inferred. Rendering to SVG/PNG
is tested only where Graphviz's ``dot`` is installed.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import bnnc
from bnnc import dsl
from bnnc.compiler import ir
from bnnc.compiler.check import check_program
from bnnc.compiler.graph import (
    GraphvizError,
    GraphvizMissing,
    quote,
    render,
    to_dot,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.bnn"))
HAS_DOT = shutil.which("dot") is not None


# --------------------------------------------------------------------------------------
# A parser for the DOT subset to_dot writes
# --------------------------------------------------------------------------------------

_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(->)|([{}\[\];=,])|([A-Za-z_0-9.#]+))')


def _unquote(token: str) -> str:
    body = token[1:-1]
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append("\n" if nxt == "n" else nxt)
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def _tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        assert match and match.end() > pos, f"bad DOT at {text[pos : pos + 40]!r}"
        tokens.append(match.group(match.lastindex or 0))
        pos = match.end()
    return tokens


@dataclass
class Dot:
    name: str = ""
    graph: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    edges: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    clusters: dict[str, dict[str, str]] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)  # cluster -> nodes
    ranks: list[list[str]] = field(default_factory=list)


def _id(token: str) -> str:
    return _unquote(token) if token.startswith('"') else token


def parse_dot(text: str) -> Dot:
    """Parse ``to_dot`` output; fails on anything outside the subset."""
    tokens = _tokens(text)
    dot = Dot()
    pos = 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        assert pos < len(tokens), "unexpected end of DOT"
        token = tokens[pos]
        pos += 1
        if expected is not None:
            assert token == expected, f"expected {expected!r}, got {token!r}"
        return token

    def attrs() -> dict[str, str]:
        found: dict[str, str] = {}
        take("[")
        while tokens[pos] != "]":
            key = _id(take())
            take("=")
            found[key] = _id(take())
            if tokens[pos] == ",":
                take(",")
        take("]")
        return found

    def body(cluster: str | None) -> None:
        while tokens[pos] != "}":
            token = take()
            if token in ("graph", "node", "edge"):
                (dot.graph if token == "graph" else {}).update(attrs())
                take(";")
            elif token == "subgraph":
                name = _id(take())
                assert name.startswith("cluster_"), name
                assert name not in dot.clusters, f"cluster {name} twice"
                dot.clusters[name], dot.members[name] = {}, []
                take("{")
                body(name)
                take("}")
            elif token == "{":
                take("rank")
                take("=")
                take("same")
                take(";")
                group = []
                while tokens[pos] != "}":
                    group.append(_id(take()))
                    take(";")
                take("}")
                dot.ranks.append(group)
            elif tokens[pos] == "=":  # a cluster attribute
                assert cluster is not None
                take("=")
                dot.clusters[cluster][_id(token)] = _id(take())
                take(";")
            elif tokens[pos] == "->":
                take("->")
                target = _id(take())
                dot.edges.append((_id(token), target, attrs()))
                take(";")
            else:
                name = _id(token)
                assert name not in dot.nodes, f"node {name} declared twice"
                dot.nodes[name] = attrs()
                if cluster is not None:
                    dot.members[cluster].append(name)
                take(";")

    take("digraph")
    dot.name = _id(take())
    take("{")
    body(None)
    take("}")
    assert pos == len(tokens), "text after the graph"
    return dot


def _check_structure(dot: Dot) -> None:
    for source, target, attrs in dot.edges:
        assert source in dot.nodes, f"edge from undeclared node {source}"
        assert target in dot.nodes, f"edge to undeclared node {target}"
        assert attrs.get("label"), f"edge {source} -> {target} has no label"
    for group in dot.ranks:
        assert all(n in dot.nodes for n in group)


def _edge_labels(dot: Dot) -> list[str]:
    return [attrs["label"] for _, _, attrs in dot.edges]


def _check(text: str, path: str = "t.bnn") -> bnnc.compiler.check.CheckedProgram:
    return check_program(dsl.parse(text, path))


# --------------------------------------------------------------------------------------
# Every example
# --------------------------------------------------------------------------------------


def _layer_calls(expr: ir.Expr, layers: set[str]) -> int:
    if isinstance(expr, ir.Call):
        own = 1 if expr.func in layers else 0
        inner = [*expr.args, *(k.value for k in expr.kwargs)]
        return own + sum(_layer_calls(e, layers) for e in inner)
    if isinstance(expr, ir.BinOp):
        return _layer_calls(expr.left, layers) + _layer_calls(expr.right, layers)
    if isinstance(expr, ir.Attribute):
        return _layer_calls(expr.value, layers)
    return 0


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_gives_well_formed_dot(path: Path) -> None:
    checked = bnnc.check(path)
    text = to_dot(checked)
    assert text == to_dot(bnnc.check(path)), "DOT output is not deterministic"
    assert text.endswith("}\n")
    dot = parse_dot(text)
    _check_structure(dot)
    assert dot.graph["label"] == path.name
    mains = checked.main_networks()
    assert set(dot.clusters) == {f"cluster_{info.name}" for info in mains}
    for info in mains:
        members = dot.members[f"cluster_{info.name}"]
        labels = [dot.nodes[n]["label"] for n in members]
        for decl in info.network.inputs:
            assert f"{info.name}/input/{decl.name}" in members
        outputs = [n for n in members if "/output" in n]
        assert len(outputs) == len(info.outputs)
        names = set(info.layers)
        calls = sum(
            _layer_calls(s.value, names)
            if isinstance(s, ir.Assign)
            else sum(_layer_calls(o.value, names) for o in s.outputs)
            for s in info.network.body
        )
        layer_nodes = [
            label for label in labels if label.split("\n")[0].split(" ")[0] in names
        ]
        assert len(layer_nodes) == calls
        for name, layer in info.layers.items():
            node = next(
                dot.nodes[n]
                for n in members
                if dot.nodes[n]["label"].split("\n")[0].split(" ")[0] == name
            )
            if layer.network is not None:
                assert node["shape"] == "component"
            elif layer.layer.bayesian:
                assert "Bayesian" in node["label"] and node["peripheries"] == "2"
            else:
                assert "fixed" in node["label"] and "peripheries" not in node
        # Every edge inside the network is labelled with a shape or a head.
        for source, _target, attrs in dot.edges:
            if source in members:
                assert re.search(
                    r"\[B(, [^\]]*)?\]|Normal|Categorical|Bernoulli", attrs["label"]
                ), attrs


EXPECTED_LABELS = {
    "digits": [
        "[B, 1, 8, 8]",
        "[B, 16, 8, 8]",
        "[B, 16, 4, 4]",
        "[B, 32, 2, 2]",
        "[B, 128]",
        "[B, 10]",
    ],
    "composed": [
        "[B, 2, 32]",
        "[B, 8, 16]",
        "[B, 128]",
        "[B, 160]",
        "mean: [B, 1]",
        "log_std: [B, 1]",
    ],
    "multimodal": ["[B, T]: int64", "[B, T, 16]", "[B, 144]", "[B, 3]"],
    "diabetes": ["[B, 10]", "[B, 2]", "Normal[B, 1]"],
    "sequence": ["[B, T]: int64", "[B, 64]", "[B, 4]", "[B, 3]"],
    "residual": ["[B, 8, 8, 8]", "[B, 8, 64]", "[B, 5]"],
    "regression": ["[B, 10]", "[B, 64]", "[B, 1]"],
    "blocks": ["[B, d_in]", "[B, c_out, L]", "[B, 64]"],
}


@pytest.mark.parametrize("stem", sorted(EXPECTED_LABELS))
def test_example_edges_carry_the_inferred_shapes(stem: str) -> None:
    dot = parse_dot(to_dot(bnnc.check(ROOT / "examples" / f"{stem}.bnn")))
    labels = _edge_labels(dot)
    for expected in EXPECTED_LABELS[stem]:
        assert expected in labels, (expected, labels)


def test_digits_graph_in_detail() -> None:
    dot = parse_dot(to_dot(bnnc.check(ROOT / "examples" / "digits.bnn")))
    nodes = dot.nodes
    assert nodes["DigitsCNN/input/image"]["label"] == "input image\n[B, 1, 8, 8]"
    labels = {n: a["label"] for n, a in nodes.items()}
    conv1 = next(n for n, label in labels.items() if label.startswith("conv1\n"))
    conv2 = next(n for n, label in labels.items() if label.startswith("conv2\n"))
    head = next(n for n, label in labels.items() if label.startswith("head\n"))
    assert labels[conv1] == "conv1\nfixed Conv2d"
    assert labels[conv2] == "conv2\nConv2d (Bayesian)"
    assert labels[head] == "head\nLinear (Bayesian)"
    assert "prior Gaussian(mu=0.0, std=1.0)" in nodes[head]["tooltip"]
    assert nodes[conv1]["shape"] == "box" and nodes[conv2]["shape"] == "box"
    assert nodes[conv1]["style"] == "filled"
    assert nodes[conv2]["style"] == "rounded,filled,bold"
    assert sorted(
        labels[n] for n in labels if "/n" in n and nodes[n]["shape"] == "ellipse"
    ) == [
        "flatten",
        "max_pool2d(2)",
        "max_pool2d(2)",
        "relu",
        "relu",
    ]
    edges = {(s, t): a["label"] for s, t, a in dot.edges}
    assert edges[("DigitsCNN/input/image", conv1)] == "[B, 1, 8, 8]"
    assert edges[(head, "DigitsCNN/output")] == "[B, 10]"
    assert len(dot.edges) == 9
    assert dot.clusters["cluster_DigitsCNN"]["label"] == (
        "network DigitsCNN(classes: int = 10, width: int = 16)"
    )


def test_symbolic_shapes() -> None:
    checked = bnnc.check(ROOT / "examples" / "digits.bnn")
    labels = _edge_labels(parse_dot(to_dot(checked, symbolic=True)))
    assert "[B, width, 4, 4]" in labels
    assert "[B, 2 * width, 2, 2]" in labels
    assert "[B, classes]" in labels


def test_one_network_may_be_imported() -> None:
    checked = bnnc.check(ROOT / "examples" / "composed.bnn")
    dot = parse_dot(to_dot(checked, "MLPBlock"))
    _check_structure(dot)
    assert set(dot.clusters) == {"cluster_MLPBlock"}
    assert "[B, 64]" in _edge_labels(dot)
    with pytest.raises(ValueError, match="no network 'Nope'; the program has"):
        to_dot(checked, "Nope")


# --------------------------------------------------------------------------------------
# Small specs
# --------------------------------------------------------------------------------------

HEADS = """
network Enc(d: int = 4) {
    input x: Tensor[B, d]
    layers { f = Linear(d, 6) }
    forward { return Normal(f(x)) }
}

network Tagger(d: int = 4) {
    input x: Tensor[B, d]
    layers {
        enc = Enc(d)
        g = fixed Linear(d, 6)
        h = Linear(3, 3)
    }
    forward {
        z = enc(x)
        y = h(h(z.mean))
        return (y=y, tags=Categorical(g(x), groups=3), raw=x)
    }
}
"""


def test_heads_fields_repeated_calls_and_passthrough() -> None:
    text = to_dot(_check(HEADS))
    dot = parse_dot(text)
    _check_structure(dot)
    labels = {n: a["label"] for n, a in dot.nodes.items()}
    assert labels["Enc/n2"] == "Normal\nhead"
    assert dot.nodes["Enc/n2"]["shape"] == "hexagon"
    assert labels["Tagger/n1"] == "enc\nEnc"
    assert labels["Tagger/n2"] == "h\nLinear (Bayesian)"
    assert labels["Tagger/n3"] == "h (call 2)\nLinear (Bayesian)"
    assert labels["Tagger/n5"] == "Categorical(groups=3)\nhead"
    edges = {(s, t): a["label"] for s, t, a in dot.edges}
    assert edges[("Enc/n2", "Enc/output")] == "Normal[B, 3]"
    assert edges[("Tagger/n1", "Tagger/n2")] == "mean: [B, 3]"
    assert edges[("Tagger/n2", "Tagger/n3")] == "[B, 3]"
    assert edges[("Tagger/n5", "Tagger/output/tags")] == "Categorical[B, 6]"
    assert edges[("Tagger/input/x", "Tagger/output/raw")] == "[B, 4]"
    assert dot.ranks == [
        ["Tagger/output/y", "Tagger/output/tags", "Tagger/output/raw"],
    ]


def test_labels_are_escaped() -> None:
    doc = 'A "quoted" doc with a back\\slash \\n and {braces} -> [brackets];'
    text = f"# {doc}\nnetwork Q(d: int = 3) {{\n    input x: Tensor[B, d]\n"
    text += '    layers { f = Linear(d, 2) }   # say "hi" \\\n'
    text += "    forward { return f(x) }\n}\n"
    checked = _check(text, 'dir/we"ird \\ name.bnn')
    dot = parse_dot(to_dot(checked))
    _check_structure(dot)
    assert dot.clusters["cluster_Q"]["tooltip"] == doc
    assert dot.graph["label"] == 'we"ird \\ name.bnn'
    (tooltip,) = [a["tooltip"] for n, a in dot.nodes.items() if n == "Q/n1"]
    assert tooltip.endswith('# say "hi" \\')


@pytest.mark.parametrize(
    "text",
    ["plain", 'a "b"', "back\\slash", "new\nline", "ends with \\", "tab\tcr\r", ""],
)
def test_quote_round_trips(text: str) -> None:
    quoted = quote(text)
    assert _tokens(quoted) == [quoted]
    assert _unquote(quoted) == text.replace("\r", "\n")


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def test_render_without_graphviz_raises_graphviz_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bnnc.compiler.graph.shutil.which", lambda name: None)
    with pytest.raises(GraphvizMissing, match="Graphviz's `dot` is not installed"):
        render("digraph {}", "svg")
    assert issubclass(GraphvizMissing, GraphvizError)


def test_render_rejects_unknown_formats() -> None:
    with pytest.raises(ValueError, match="unknown graph format 'pdf'"):
        render("digraph {}", "pdf")  # type: ignore[arg-type]


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz's `dot` is not installed")
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_render_svg(path: Path) -> None:
    svg = render(to_dot(bnnc.check(path)), "svg").decode("utf-8")
    assert "<svg" in svg and svg.rstrip().endswith("</svg>")


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz's `dot` is not installed")
def test_render_png_and_errors() -> None:
    png = render(to_dot(bnnc.check(ROOT / "examples" / "digits.bnn")), "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(GraphvizError, match="Graphviz's `dot` failed"):
        render("digraph { -> }", "svg")
