"""Lowering a Lark parse tree of one ``.bnn`` file to an IR :class:`Program`.

Also the checks the front end can make on its own: reserved words, literal
values, distribution settings, parameter and input types, duplicate
definitions, and the desugaring of ``sequential`` networks.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from lark import Token, Tree

from bnnc.compiler import ir
from bnnc.compiler.diagnostics import DiagnosticSink, did_you_mean
from bnnc.compiler.registry import REGISTRY, Bound
from bnnc.compiler.symbolic import Size
from bnnc.dsl.parser import keywords

MAX_DEPTH = 150
"""Deepest accepted expression nesting, in IR levels (BNN005 beyond).

The IR's JSON form may nest at most :data:`IR_MAX_DEPTH` levels (the limit of
Pydantic's JSON parser), so expressions are measured as their JSON nests: an
operator is one level, a call or a tuple two (the node and its argument
list), a keyword argument one more, a literal or name two (the node and its
span). 150 leaves room for the statement around an expression and for
imported programs nested inside the importer's IR.
"""

IR_MAX_DEPTH = 200
"""Deepest JSON nesting of a whole program, imports included (BNN005 beyond)."""

INT_LIMIT = 2**63 - 1
"""Largest integer literal (BNN104 beyond)."""

PARAM_TYPES = ("int", "float", "bool")
DTYPES: dict[str, ir.DType] = {
    "float32": "float32",
    "float64": "float64",
    "int64": "int64",
    "int32": "int32",
    "bool": "bool",
    "int": "int64",
    "float": "float32",
}
PRIOR_KEYS = ("mu", "std")
POSTERIOR_KEYS = ("mu_init", "rho_init")
FAMILIES = ("Gaussian",)

_BINARY = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "floordiv": "//",
    "truediv": "/",
    "mod": "%",
}
_LEAVES = ("int", "float", "string", "true", "false", "none", "auto", "name")
_WEIGHTS = {
    **dict.fromkeys(_BINARY, 1),
    "neg": 1,
    "getattr": 2,
    "call": 2,
    "tuple": 2,
    "kwarg": 1,
    **dict.fromkeys(_LEAVES, 2),
}
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_COMMENT_OR_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')


@dataclass(frozen=True)
class _Comment:
    column: int
    text: str  # without the leading `#`
    whole_line: bool


@dataclass
class _Arguments:
    args: list[ir.Expr]
    kwargs: list[ir.Keyword]
    prior: ir.Distribution | None = None
    posterior: ir.Distribution | None = None
    estimator: ir.Estimator | None = None


_Defaults = dict[str, ir.Distribution | ir.Estimator | None]


def check_depth(tree: Tree) -> Tree | None:
    """The outermost expression nested deeper than :data:`MAX_DEPTH`, if any.

    Iterative, so that no input can exhaust Python's stack.
    """
    stack: list[tuple[Tree, int, Tree | None]] = [(tree, 0, None)]
    push = stack.append
    while stack:
        node, depth, outermost = stack.pop()
        weight = _WEIGHTS.get(node.data, 0)
        if weight:
            if outermost is None:
                outermost = node
            depth += weight
            if depth > MAX_DEPTH:
                return outermost
        else:
            outermost = None
        for child in node.children:
            if isinstance(child, Tree):  # tokens add no depth
                push((child, depth, outermost))
    return None


def json_depth(value: object) -> int:
    """How deeply ``value`` (made of dicts and lists) nests, found iteratively."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
    return deepest


def scan_comments(text: str) -> dict[int, _Comment]:
    """Every ``#`` comment by line number (strings are skipped)."""
    comments: dict[int, _Comment] = {}
    line, line_start, scanned = 1, 0, 0
    for match in _COMMENT_OR_STRING.finditer(text):
        if match.group().startswith('"'):
            continue
        start = match.start()
        newlines = text.count("\n", scanned, start)
        if newlines:
            line += newlines
            line_start = text.rfind("\n", 0, start) + 1
        scanned = start
        before = text[line_start:start]
        comments[line] = _Comment(
            column=start - line_start + 1,
            text=match.group()[1:].rstrip(),
            whole_line=not before.strip(),
        )
    return comments


class Lowering:
    """Turns the parse tree of one file into IR, reporting problems to ``sink``."""

    def __init__(self, text: str, path: str, sink: DiagnosticSink) -> None:
        self.path = path
        self.sink = sink
        self.comments = scan_comments(text)
        self.lines = text.split("\n")
        self.keywords = keywords()

    # --- positions ------------------------------------------------------------------
    def span(self, node: Tree | Token) -> ir.Span | None:
        """The source span of a tree node or token."""
        if isinstance(node, Token):
            if node.line is None or node.column is None:
                return None
            return ir.Span(
                file=self.path,
                line=node.line,
                column=node.column,
                end_line=node.end_line or node.line,
                end_column=node.end_column or node.column + len(node),
            )
        meta = node.meta
        if meta.empty:
            return None
        return ir.Span(
            file=self.path,
            line=meta.line,
            column=meta.column,
            end_line=meta.end_line,
            end_column=meta.end_column,
        )

    def error(self, code: str, message: str, node: Tree | Token, *hints: str) -> None:
        self.sink.error(code, message, self.span(node), *hints)

    # --- names ----------------------------------------------------------------------
    def ident(self, token: Token) -> str:
        """A name token's text; reserved words are reported (BNN209)."""
        name = str(token)
        if name in self.keywords:
            self.error(
                "BNN209",
                f"`{name}` is a reserved word and cannot be used as a name",
                token,
                "choose another name",
            )
        return name

    # --- program --------------------------------------------------------------------
    def program(self, tree: Tree, sha256: str) -> ir.Program:
        """The IR of a whole file."""
        defaults: _Defaults = {"prior": None, "posterior": None, "estimator": None}
        seen_defaults: set[str] = set()
        imports: list[ir.Import] = []
        networks: list[ir.Network] = []
        for child in _trees(tree.children):
            if child.data == "default_setting":
                self.default_setting(child, defaults, seen_defaults, "file")
            elif child.data == "import_stmt":
                imports.append(self.import_stmt(child))
            else:
                networks.append(self.network(child))
        self.check_top_level_names(imports, networks)
        return ir.Program(
            span=self.span(tree),
            source=self.path,
            source_sha256=sha256,
            prior=defaults["prior"],  # type: ignore[arg-type]
            posterior=defaults["posterior"],  # type: ignore[arg-type]
            estimator=defaults["estimator"],  # type: ignore[arg-type]
            imports=imports,
            networks=networks,
        )

    def check_top_level_names(
        self, imports: list[ir.Import], networks: list[ir.Network]
    ) -> None:
        where: dict[str, str] = {}
        for imp in imports:
            for name, span in zip(imp.names, imp.name_spans, strict=False):
                if name in where:
                    self.sink.error(
                        "BNN202", f"`{name}` is imported twice ({where[name]})", span
                    )
                else:
                    where[name] = f"imported on line {_line(span)}"
        for net in networks:
            if net.name in where:
                self.sink.error(
                    "BNN202",
                    f"network `{net.name}` is already defined ({where[net.name]})",
                    net.span,
                )
            else:
                where[net.name] = f"line {_line(net.span)}"

    def default_setting(
        self,
        tree: Tree,
        defaults: _Defaults,
        seen: set[str],
        level: str,
    ) -> None:
        kind_token, value = tree.children[0], tree.children[-1]
        kind = str(kind_token)
        dist = (
            self.estimator(value)
            if kind == "estimator"
            else self.distribution(value, kind)
        )
        if kind in seen:
            self.error(
                "BNN202",
                f"`{kind} default` is set twice at {level} level",
                tree,
                "merge the settings into one",
            )
            return
        seen.add(kind)
        defaults[kind] = dist

    def import_stmt(self, tree: Tree) -> ir.Import:
        path_token, *name_tokens = _tokens(tree.children)
        return ir.Import(
            span=self.span(tree),
            path=self.string(path_token),
            names=[self.ident(t) for t in name_tokens],
            name_spans=[self.span(t) for t in name_tokens],
        )

    # --- networks -------------------------------------------------------------------
    def network(self, tree: Tree) -> ir.Network:
        """A ``network`` declaration, either form."""
        name_token = tree.children[0]
        name = self.ident(name_token)
        params = [
            self.param(p)
            for c in _trees(tree.children, "param_list")
            for p in _trees(c.children)
        ]
        doc = self.docstring(tree)
        if tree.data == "sequential_network":
            body_tree = next(_trees(tree.children, "sequential_body"))
            net = self.sequential(tree, body_tree, name, doc, params)
        else:
            body_tree = next(_trees(tree.children, "network_body"))
            net = self.network_body(tree, body_tree, name, doc, params)
        self.check_member_names(net)
        return net

    def docstring(self, tree: Tree) -> str | None:
        """The comment lines directly above the ``network`` keyword."""
        lines: list[str] = []
        line = tree.meta.line - 1
        if self.lines[line][: tree.meta.column - 1].strip():
            return None  # `network` is not the first thing on its line
        while line in self.comments and self.comments[line].whole_line:
            text = self.comments[line].text
            lines.append(text[1:] if text.startswith(" ") else text)
            line -= 1
        lines.reverse()
        # Drop leading blank lines with one slice: pop(0) in a loop is quadratic
        # in the number of comment lines (seconds for a 1 MiB file of `#` lines).
        first = next((i for i, text in enumerate(lines) if text.strip()), len(lines))
        del lines[:first]
        while lines and not lines[-1].strip():
            lines.pop()
        return "\n".join(lines) if lines else None

    def trailing_comment(self, span: ir.Span | None) -> str | None:
        """A comment after the end of ``span`` on its last line."""
        if span is None:
            return None
        comment = self.comments.get(span.end_line)
        if comment is None or comment.column < span.end_column:
            return None
        return comment.text.strip() or None

    def param(self, tree: Tree) -> ir.Param:
        name_token, type_token = tree.children[0], tree.children[1]
        type_name = str(type_token)
        if type_name not in PARAM_TYPES:
            self.error(
                "BNN106",
                f"unknown parameter type `{type_name}`; use int, float or bool",
                type_token,
                *did_you_mean(type_name, PARAM_TYPES),
            )
            type_name = "int"
        default = self.expr(tree.children[2]) if len(tree.children) > 2 else None
        return ir.Param(
            span=self.span(tree),
            name=self.ident(name_token),
            type=type_name,  # type: ignore[arg-type]
            default=default,
        )

    def network_body(
        self,
        tree: Tree,
        body: Tree,
        name: str,
        doc: str | None,
        params: list[ir.Param],
    ) -> ir.Network:
        defaults: _Defaults = {"prior": None, "posterior": None, "estimator": None}
        seen_defaults: set[str] = set()
        inputs: list[ir.Input] = []
        layers: list[ir.Layer] = []
        statements: list[ir.Statement] = []
        blocks: set[str] = set()
        for member in _trees(body.children):
            if member.data == "default_setting":
                self.default_setting(member, defaults, seen_defaults, "network")
            elif member.data == "input_decl":
                inputs.append(self.input_decl(member))
            else:
                block = member.data.removesuffix("_block")
                if block in blocks:
                    self.error(
                        "BNN202",
                        f"network `{name}` has a second `{block}` block",
                        member,
                        f"a network has at most one `{block} {{ ... }}`",
                    )
                blocks.add(block)
                if member.data == "layers_block":
                    layers.extend(self.layer_decl(t) for t in _trees(member.children))
                else:
                    statements.extend(
                        self.statement(t) for t in _trees(member.children)
                    )
        return ir.Network(
            span=self.span(tree),
            name=name,
            doc=doc,
            params=params,
            inputs=inputs,
            layers=layers,
            body=statements,
            prior=defaults["prior"],  # type: ignore[arg-type]
            posterior=defaults["posterior"],  # type: ignore[arg-type]
            estimator=defaults["estimator"],  # type: ignore[arg-type]
        )

    def check_member_names(self, net: ir.Network) -> None:
        """Parameters, inputs and layers share one namespace per network."""
        where: dict[str, str] = {}
        members: list[tuple[str, str, ir.Span | None]] = [
            *(("parameter", p.name, p.span) for p in net.params),
            *(("input", i.name, i.span) for i in net.inputs),
            *(("layer", layer.name, layer.span) for layer in net.layers),
        ]
        for what, member, span in members:
            if member in where:
                self.sink.error(
                    "BNN202",
                    f"`{member}` is already defined in network `{net.name}` "
                    f"({where[member]})",
                    span,
                )
            else:
                where[member] = f"as {_article(what)} {what} on line {_line(span)}"

    def input_decl(self, tree: Tree) -> ir.Input:
        name_token, type_token, *items = tree.children
        if str(type_token) != "Tensor":
            self.error(
                "BNN106",
                f"unknown input type `{type_token}`; inputs are declared as "
                "`Tensor[dims...]`",
                type_token,
                *did_you_mean(str(type_token), ["Tensor"]),
            )
        dims: list[ir.Expr] = []
        dtype: ir.DType = "float32"
        seen_dtype = False
        for item in items:
            if isinstance(item, Tree) and item.data == "kwarg":
                key_token, value = item.children
                key = str(key_token)
                if key != "dtype":
                    self.error(
                        "BNN106",
                        f"unknown input option `{key}`; only `dtype=` can follow "
                        "the dimensions",
                        key_token,
                        *did_you_mean(key, ["dtype"]),
                    )
                    continue
                if seen_dtype:
                    self.error("BNN206", "`dtype` is given twice", item)
                seen_dtype = True
                dtype = self.dtype(value)
            else:
                if seen_dtype:
                    self.error("BNN106", "dimensions must come before `dtype=`", item)
                dims.append(self.expr(item))
        if not dims:
            self.error("BNN106", "an input needs at least one dimension", tree)
        return ir.Input(
            span=self.span(tree), name=self.ident(name_token), dims=dims, dtype=dtype
        )

    def dtype(self, value: Tree) -> ir.DType:
        names = ", ".join(DTYPES)
        if value.data == "name":
            text = str(value.children[0])
            if text in DTYPES:
                return DTYPES[text]
            self.error(
                "BNN106",
                f"unknown dtype `{text}`; use one of {names}",
                value,
                *did_you_mean(text, DTYPES),
            )
        else:
            self.error("BNN106", f"a dtype is one of {names}", value)
        return "float32"

    # --- layers ---------------------------------------------------------------------
    def layer_decl(self, tree: Tree) -> ir.Layer:
        name_token = tree.children[0]
        fixed = any(isinstance(c, Token) and c.type == "FIXED" for c in tree.children)
        op_token = next(
            c for c in tree.children[1:] if isinstance(c, Token) and c.type == "NAME"
        )
        arguments = self.arguments(tree.children, layer=True)
        span = self.span(tree)
        return ir.Layer(
            span=span,
            name=self.ident(name_token),
            op=self.ident(op_token),
            args=arguments.args,
            kwargs=arguments.kwargs,
            bayesian=not fixed,
            prior=arguments.prior,
            posterior=arguments.posterior,
            estimator=arguments.estimator,
            comment=self.trailing_comment(span),
        )

    def arguments(self, children: Iterable[Tree | Token], *, layer: bool) -> _Arguments:
        """The arguments among ``children`` (positional, keyword, distributions)."""
        result = _Arguments(args=[], kwargs=[])
        seen_keyword: Tree | None = None
        for child in _trees(children):
            if child.data != "kwarg":
                if seen_keyword is not None:
                    self.error(
                        "BNN101",
                        "positional argument follows keyword argument",
                        child,
                    )
                result.args.append(self.expr(child))
                continue
            seen_keyword = child
            key_token, value = child.children
            key = str(key_token)
            if key_token.type in ("PRIOR", "POSTERIOR", "ESTIMATOR"):
                if not layer:
                    self.error(
                        "BNN209",
                        f"`{key}=` is only accepted by layers (in `layers {{ ... }}` "
                        "or a sequential item)",
                        key_token,
                    )
                    continue
                dist = (
                    self.estimator(value)
                    if key == "estimator"
                    else self.distribution(value, key)
                )
                if getattr(result, key) is not None:
                    self.error("BNN206", f"`{key}` is given twice", child)
                setattr(result, key, dist)
                continue
            result.kwargs.append(
                ir.Keyword(span=self.span(child), name=key, value=self.expr(value))
            )
        return result

    def distribution(self, tree: Tree, kind: str) -> ir.Distribution | None:
        """A ``Gaussian(key=number, ...)`` prior or posterior setting (BNN105)."""
        allowed = PRIOR_KEYS if kind == "prior" else POSTERIOR_KEYS
        keys = " and ".join(f"`{k}`" for k in allowed)
        example = "Gaussian(std=0.1)" if kind == "prior" else "Gaussian(rho_init=-5.0)"
        if tree.data != "call":
            self.error(
                "BNN105",
                f"a {kind} is written as a distribution, e.g. `{example}`",
                tree,
            )
            return None
        family_token = tree.children[0]
        family = str(family_token)
        ok = True
        if family not in FAMILIES:
            self.error(
                "BNN105",
                f"unknown distribution family `{family}`; supported: "
                + ", ".join(FAMILIES),
                family_token,
                *did_you_mean(family, FAMILIES),
            )
            ok = False
        params: dict[str, float] = {}
        for item in _trees(tree.children):
            if item.data != "kwarg":
                self.error(
                    "BNN105",
                    f"{kind} settings are named, e.g. `{example}`",
                    item,
                )
                ok = False
                continue
            key_token, value_tree = item.children
            key = str(key_token)
            if key not in allowed:
                self.error(
                    "BNN105",
                    f"unknown {kind} setting `{key}`; a {kind} takes {keys}",
                    key_token,
                    *did_you_mean(key, allowed),
                )
                ok = False
                continue
            reported = len(self.sink.diagnostics)
            number = self.number(value_tree)
            if number is None:
                self.error("BNN105", f"`{key}` must be a number literal", value_tree)
                ok = False
                continue
            if len(self.sink.diagnostics) > reported:  # e.g. an out-of-range literal
                ok = False
                continue
            if key in params:
                self.error("BNN105", f"`{key}` is set twice", item)
                ok = False
            if key == "std" and not number > 0:
                self.error(
                    "BNN105", f"`std` must be positive, got {number!r}", value_tree
                )
                ok = False
            params[key] = number
        if not ok:
            return None
        return ir.Distribution(span=self.span(tree), family="Gaussian", params=params)

    def estimator(self, tree: Tree) -> ir.Estimator | None:
        """A gradient estimator: a name (``flipout``) or a string (``"flipout"``).

        Which names exist and which layers take them is the checker's
        business (BNN310), so that an IR built in Python is checked the same.
        """
        if tree.data == "name":
            return ir.Estimator(span=self.span(tree), name=str(tree.children[0]))
        if tree.data == "string":
            return ir.Estimator(
                span=self.span(tree), name=self.string(tree.children[0])
            )
        self.error(
            "BNN310",
            "an estimator is written as a name, e.g. `flipout`",
            tree,
            "estimators: reparameterization, local_reparameterization, flipout",
        )
        return None

    def number(self, tree: Tree) -> float | None:
        """The value of a signed number literal, or None."""
        sign = 1.0
        while tree.data == "neg":
            sign = -sign
            tree = tree.children[0]
            if not isinstance(tree, Tree):
                return None
        if tree.data not in ("int", "float"):
            return None
        value = self.expr(tree)
        assert isinstance(value, ir.Int | ir.Float)
        try:
            return sign * float(value.value)
        except OverflowError:  # reported as BNN104 already
            return 0.0

    # --- forward --------------------------------------------------------------------
    def statement(self, tree: Tree) -> ir.Statement:
        span = self.span(tree)
        if tree.data == "assign":
            target, value = tree.children
            return ir.Assign(
                span=span, target=self.ident(target), value=self.expr(value)
            )
        if tree.data == "return_stmt":
            value = tree.children[0]
            return ir.Return(
                span=span,
                outputs=[ir.Output(span=self.span(value), value=self.expr(value))],
            )
        outputs: list[ir.Output] = []
        seen: dict[str, ir.Span | None] = {}
        for item in _trees(tree.children):
            name_token, value = item.children
            name = self.ident(name_token)
            if name in seen:
                self.error(
                    "BNN202",
                    f"output `{name}` is returned twice "
                    f"(first on line {_line(seen[name])})",
                    name_token,
                )
            else:
                seen[name] = self.span(name_token)
            outputs.append(
                ir.Output(span=self.span(item), name=name, value=self.expr(value))
            )
        return ir.Return(span=span, outputs=outputs)

    # --- expressions ----------------------------------------------------------------
    def expr(self, tree: Tree) -> ir.Expr:
        """An expression (depth is bounded by :func:`check_depth` beforehand)."""
        span = self.span(tree)
        kind = tree.data
        children = tree.children
        if kind in _BINARY:
            return ir.BinOp(
                span=span,
                op=_BINARY[kind],  # type: ignore[arg-type]
                left=self.expr(children[0]),
                right=self.expr(children[1]),
            )
        if kind == "neg":
            return ir.Neg(span=span, operand=self.expr(children[0]))
        if kind == "int":
            return ir.Int(span=span, value=self.integer(children[0]))
        if kind == "float":
            return ir.Float(span=span, value=self.floating(children[0]))
        if kind == "string":
            return ir.Str(span=span, value=self.string(children[0]))
        if kind in ("true", "false"):
            return ir.Bool(span=span, value=kind == "true")
        if kind == "none":
            return ir.NoneLit(span=span)
        if kind == "auto":
            return ir.Auto(span=span)
        if kind == "name":
            return ir.Name(span=span, id=self.ident(children[0]))
        if kind == "tuple":
            return ir.Tuple(span=span, items=[self.expr(c) for c in _trees(children)])
        if kind == "getattr":
            target, attr = children
            return ir.Attribute(
                span=span,
                value=self.expr(target),
                name=self.ident(attr),
                name_span=self.span(attr),
            )
        assert kind == "call", kind
        arguments = self.arguments(children[1:], layer=False)
        return ir.Call(
            span=span,
            func=self.ident(children[0]),
            args=arguments.args,
            kwargs=arguments.kwargs,
        )

    def integer(self, token: Token) -> int:
        digits = str(token).replace("_", "")
        if len(digits.lstrip("0")) > 19 or int(digits) > INT_LIMIT:
            self.error(
                "BNN104",
                f"integer literal `{_clip(token)}` is too large "
                "(the largest is 2**63 - 1)",
                token,
            )
            return 0
        return int(digits)

    def floating(self, token: Token) -> float:
        value = float(str(token))
        if value in (float("inf"), float("-inf")):
            self.error(
                "BNN104", f"float literal `{_clip(token)}` is out of range", token
            )
            return 0.0
        return value

    def string(self, token: Token) -> str:
        body = str(token)[1:-1]
        out: list[str] = []
        index = 0
        while index < len(body):
            char = body[index]
            if char == "\\":
                escape = body[index + 1]
                if escape not in _ESCAPES:
                    self.error(
                        "BNN104",
                        f"unknown escape `\\{escape}` in string",
                        token,
                        'known escapes: \\\\ \\" \\n \\t \\r \\0',
                    )
                out.append(_ESCAPES.get(escape, escape))
                index += 2
            else:
                out.append(char)
                index += 1
        return "".join(out)

    # --- sequential -----------------------------------------------------------------
    def sequential(
        self,
        tree: Tree,
        body: Tree,
        name: str,
        doc: str | None,
        params: list[ir.Param],
    ) -> ir.Network:
        """Desugar ``= sequential { ... }`` into layers and a forward body."""
        items = list(_trees(body.children))
        counts: dict[str, int] = {}
        layers: list[ir.Layer] = []
        statements: list[ir.Statement] = []
        spans = [self.span(item) for item in items]
        # How many items start on each line after the current one (a look-ahead
        # over the remaining spans per item would be quadratic).
        starts_after = Counter(s.line for s in spans if s is not None)
        for index, item in enumerate(items):
            span = spans[index]
            if span is not None:
                starts_after[span.line] -= 1
            fixed_token = next(
                (
                    c
                    for c in item.children
                    if isinstance(c, Token) and c.type == "FIXED"
                ),
                None,
            )
            op_token = next(
                c for c in item.children if isinstance(c, Token) and c.type == "NAME"
            )
            op = self.ident(op_token)
            arguments = self.arguments(item.children, layer=True)
            x = ir.Name(span=span, id="x")
            registered = REGISTRY.get(op)
            if registered is not None and registered.kind in ("function", "head"):
                if fixed_token is not None:
                    self.error(
                        "BNN306",
                        f"`{op}` is a function without weights; it cannot be `fixed`",
                        fixed_token,
                    )
                if arguments.prior is not None or arguments.posterior is not None:
                    self.error(
                        "BNN306",
                        f"`{op}` is a function without weights; it takes no "
                        "prior or posterior",
                        item,
                    )
                if arguments.estimator is not None:
                    self.sink.error(
                        "BNN306",
                        f"`{op}` is a function without weights; it takes no estimator",
                        arguments.estimator.span or self.span(item),
                    )
                value = ir.Call(
                    span=span,
                    func=op,
                    args=[x, *arguments.args],
                    kwargs=arguments.kwargs,
                )
            else:
                counts[op] = counts.get(op, 0) + 1
                layer_name = f"{op.lower()}_{counts[op]}"
                later_on_same_line = (
                    span is not None and starts_after[span.end_line] > 0
                )
                layers.append(
                    ir.Layer(
                        span=span,
                        name=layer_name,
                        op=op,
                        args=arguments.args,
                        kwargs=arguments.kwargs,
                        bayesian=fixed_token is None,
                        prior=arguments.prior,
                        posterior=arguments.posterior,
                        estimator=arguments.estimator,
                        comment=None
                        if later_on_same_line
                        else self.trailing_comment(span),
                    )
                )
                value = ir.Call(span=span, func=layer_name, args=[x])
            statements.append(ir.Assign(span=span, target="x", value=value))
        inputs: list[ir.Input] = []
        if items:
            last = statements[-1] if statements else None
            if (
                isinstance(last, ir.Assign)
                and isinstance(last.value, ir.Call)
                and getattr(REGISTRY.get(last.value.func), "kind", None) == "head"
            ):
                # An output head ends the chain: `..., Linear(h, 2), Normal`
                # returns the head's distribution.
                statements.pop()
                returned: ir.Expr = last.value
            else:
                returned = ir.Name(span=spans[-1], id="x")
            statements.append(
                ir.Return(
                    span=spans[-1],
                    outputs=[ir.Output(span=spans[-1], value=returned)],
                )
            )
            first_input = self.sequential_input(
                items[0], layers, {p.name for p in params}
            )
            if first_input is not None:
                inputs.append(first_input)
        else:
            self.error("BNN303", _SEQUENTIAL_START, body)
        return ir.Network(
            span=self.span(tree),
            name=name,
            doc=doc,
            params=params,
            inputs=inputs,
            layers=layers,
            body=statements,
            sequential=True,
        )

    def sequential_input(
        self, item: Tree, layers: list[ir.Layer], taken: set[str]
    ) -> ir.Input | None:
        """The input ``x`` of a sequential network, from its first layer's sizes.

        Symbolic dims (``B``, ``T``, ...) get a trailing ``_`` while they would
        clash with a parameter name, so the batch axis never becomes a parameter.
        """
        span = self.span(item)
        op = next(c for c in item.children if isinstance(c, Token) and c.type == "NAME")
        registered = REGISTRY.get(str(op))
        first = layers[0] if layers else None
        if (
            registered is None
            or registered.kind != "layer"
            or registered.sequential_input is None
            or first is None
            or first.span != span
            or not registered.args
        ):
            self.error("BNN303", _SEQUENTIAL_START, item)
            return None
        arg_name = registered.args[0].name
        written: ir.Expr | None = first.args[0] if first.args else None
        if written is None:
            written = next((k.value for k in first.kwargs if k.name == arg_name), None)
        values: dict[str, object] = {}
        if isinstance(written, ir.Int):
            values[arg_name] = Size.of(written.value)
        elif isinstance(written, ir.Name):
            values[arg_name] = Size.of(written.id)
        try:
            dims, dtype = registered.sequential_input(Bound(values=values))
        except (KeyError, AssertionError, TypeError, ValueError):
            self.error("BNN303", _SEQUENTIAL_START, item)
            return None
        exprs: list[ir.Expr] = []
        for dim in dims:
            while isinstance(dim, str) and dim in taken:
                dim += "_"
            expr = _size_expr(dim, span)
            if expr is None:
                self.error("BNN303", _SEQUENTIAL_START, item)
                return None
            exprs.append(expr)
        if dtype not in DTYPES.values():
            self.error("BNN303", _SEQUENTIAL_START, item)
            return None
        return ir.Input(span=span, name="x", dims=exprs, dtype=dtype)  # type: ignore[arg-type]


_SEQUENTIAL_START = (
    "a sequential network must start with a layer whose input size is written out "
    "(Linear, Conv1d, Conv2d, Embedding or LSTM)"
)


def _size_expr(dim: str | Size, span: ir.Span | None) -> ir.Expr | None:
    if isinstance(dim, str):
        return ir.Name(span=span, id=dim)
    constant = dim.constant
    if constant is not None:
        return ir.Int(span=span, value=constant)
    symbols = dim.symbols()
    if len(symbols) == 1:
        (symbol,) = symbols
        if dim == Size.of(symbol):
            return ir.Name(span=span, id=symbol)
    return None


def _trees(children: Iterable[Tree | Token], data: str | None = None) -> Iterator[Tree]:
    for child in children:
        if isinstance(child, Tree) and (data is None or child.data == data):
            yield child


def _tokens(children: Iterable[Tree | Token]) -> list[Token]:
    return [c for c in children if isinstance(c, Token)]


def _line(span: ir.Span | None) -> str:
    return str(span.line) if span is not None else "?"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _clip(token: Token, limit: int = 40) -> str:
    text = str(token)
    return text if len(text) <= limit else text[: limit - 3] + "..."
