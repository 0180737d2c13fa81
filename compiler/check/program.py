"""Checking a whole program: scopes across imports, instantiation, emission order."""

from __future__ import annotations

import keyword
import math

from bnnc.compiler import ir
from bnnc.compiler.check.network import (
    NetworkChecker,
    Outputs,
    _HintedSink,
    estimator_hints,
)
from bnnc.compiler.check.results import (
    POSTERIOR_DEFAULTS,
    PRIOR_DEFAULTS,
    CheckedProgram,
    NetworkInfo,
)
from bnnc.compiler.check.values import EvalError, Evaluator, Value, reserved_reason
from bnnc.compiler.diagnostics import (
    CompileError,
    Diagnostic,
    DiagnosticSink,
    did_you_mean,
)
from bnnc.compiler.registry import DEFAULT_ESTIMATOR, ESTIMATORS, Op
from bnnc.compiler.symbolic import Size
from bnnc.compiler.types import TensorType, Unknown

MAX_NESTING = 64  # networks inside networks; deeper is surely a mistake
MAX_LAYERS = 10_000  # layers of one network (BNN005 beyond), to bound checking time


class Scope:
    """Which networks each program can see, and how to instantiate them."""

    def __init__(self, root: ir.Program, sink: DiagnosticSink) -> None:
        self.root = root
        self.sink = sink
        self._visible: dict[int, dict[str, tuple[ir.Network, ir.Program]]] = {}
        self._programs: dict[int, ir.Program] = {}
        # Instantiation results by network, argument values, input types and
        # stack: a network using another twice, nested n deep, would otherwise
        # be checked 2**n times (seconds for a 1.5 KB spec at n = 16).
        self._instances: dict[object, Outputs | None] = {}
        self._collect(root, ())

    # ------------------------------------------------------------------------------
    def _collect(self, program: ir.Program, chain: tuple[int, ...]) -> None:
        if id(program) in self._visible:
            return
        visible: dict[str, tuple[ir.Network, ir.Program]] = {}
        self._visible[id(program)] = visible
        self._programs[id(program)] = program
        for imp in program.imports:
            if imp.program is None:
                self.sink.error(
                    "BNN003",
                    f'import of "{imp.path}" was not loaded',
                    imp.span,
                    "load files with bnnc.dsl.load(), which resolves imports",
                )
                continue
            self._collect(imp.program, (*chain, id(program)))
            spans = list(imp.name_spans) + [None] * len(imp.names)
            for name, span in zip(imp.names, spans, strict=False):
                found = imp.program.network(name)
                if found is None:
                    self.sink.error(
                        "BNN211",
                        f'"{imp.path}" defines no network `{name}`',
                        span or imp.span,
                        *did_you_mean(name, [n.name for n in imp.program.networks]),
                    )
                elif name in visible and visible[name][0] is not found:
                    self.sink.error(
                        "BNN202",
                        f"network `{name}` is imported twice",
                        span or imp.span,
                    )
                else:
                    visible[name] = (found, imp.program)
        for network in program.networks:
            if network.name in visible and visible[network.name][0] is not network:
                self.sink.error(
                    "BNN202",
                    f"network `{network.name}` is already defined"
                    + (
                        " by an import"
                        if visible[network.name][1] is not program
                        else ""
                    ),
                    network.span,
                )
                continue
            visible[network.name] = (network, program)

    def lookup(
        self, program: ir.Program, name: str
    ) -> tuple[ir.Network, ir.Program] | None:
        """The network ``name`` as seen from ``program``."""
        return self._visible.get(id(program), {}).get(name)

    def visible_names(self, program: ir.Program) -> list[str]:
        """Every network name ``program`` can use."""
        return list(self._visible.get(id(program), {}))

    # ------------------------------------------------------------------------------
    def effective_distributions(
        self, program: ir.Program, network: ir.Network, layer: ir.Layer
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Prior and posterior of a layer: runtime < file < network < layer."""
        prior = dict(PRIOR_DEFAULTS)
        posterior = dict(POSTERIOR_DEFAULTS)
        for level in (program, network, layer):
            if level.prior is not None:
                prior.update(level.prior.params)
            if level.posterior is not None:
                posterior.update(level.posterior.params)
        return prior, posterior

    @staticmethod
    def effective_estimator(
        program: ir.Program, network: ir.Network, layer: ir.Layer, op: Op | None
    ) -> str:
        """A layer's gradient estimator: layer < network < file < runtime default.

        A default (network or file level) applies to the layers whose op
        supports it; the others keep the runtime default. Fixed layers and
        networks used as layers have none.
        """
        if op is None or not layer.bayesian or not op.estimators:
            return DEFAULT_ESTIMATOR
        if layer.estimator is not None:
            return layer.estimator.name
        for level in (network, program):
            if level.estimator is not None:
                name = level.estimator.name
                return name if name in op.estimators else DEFAULT_ESTIMATOR
        return DEFAULT_ESTIMATOR

    # ------------------------------------------------------------------------------
    def parameters(
        self,
        network: ir.Network,
        given: dict[str, Value] | None,
        outer_known: dict[str, int],
        sink: DiagnosticSink,
    ) -> tuple[dict[str, Value], dict[str, int]]:
        """Parameter bindings and known values for checking ``network``.

        Standalone (``given`` is None): int parameters are symbols, and their
        defaults are the known values used for checks. Instantiated: values come
        from the caller, defaults fill the gaps.
        """
        params: dict[str, Value] = {}
        known: dict[str, int] = dict(outer_known) if given is not None else {}
        for param in network.params:
            default: Value = None
            if param.default is not None:
                try:
                    default = Evaluator(params, known).evaluate(param.default)
                except EvalError as error:
                    if given is None:
                        sink.error(error.code, error.message, error.span, *error.hints)
                    default = Unknown(param.type)
                if given is None and not _matches(param.type, default):
                    sink.error(
                        "BNN301",
                        f"default of `{param.name}` must be {_type_text(param.type)}",
                        param.default.span or param.span,
                    )
                    default = Unknown(param.type)
                elif (
                    given is None
                    and isinstance(default, Size)
                    and (default.constant is None)
                ):
                    sink.error(
                        "BNN301",
                        f"default of `{param.name}` must be a constant",
                        param.default.span or param.span,
                        "defaults cannot depend on other parameters",
                    )
                    default = Unknown(param.type)
            if given is not None and given.get(param.name) is not None:
                value = given[param.name]
            elif given is not None and default is not None:
                value = default
            elif given is not None:
                value = Unknown(param.type)
            elif param.type == "int":
                value = Size.of(param.name)
                if isinstance(default, Size):
                    number = default.evaluate(known)
                    if number is not None:
                        known[param.name] = number
            else:
                value = default if default is not None else Unknown(param.type)
            if param.type == "float" and isinstance(value, Size):
                number = value.evaluate(known)
                value = float(number) if number is not None else Unknown("float")
            params[param.name] = value
        return params, known

    def input_types(
        self,
        network: ir.Network,
        params: dict[str, Value],
        known: dict[str, int],
        sink: DiagnosticSink,
    ) -> list[TensorType] | None:
        """Declared input types; names that are not parameters become symbols."""
        types: list[TensorType] = []
        ok = True
        for decl in network.inputs:
            dims: list[Size] = []
            for dim in decl.dims:
                symbols = {n: Size.of(n) for n in _names(dim) if n not in params}
                try:
                    value = Evaluator({**params, **symbols}, known).evaluate(dim)
                except EvalError as error:
                    sink.error(error.code, error.message, error.span, *error.hints)
                    ok = False
                    continue
                if not isinstance(value, Size):
                    sink.error(
                        "BNN106",
                        f"dimension of input `{decl.name}` must be an int or a symbol",
                        dim.span or decl.span,
                    )
                    ok = False
                    continue
                number = value.evaluate(known)
                if number is not None and number < 1:
                    sink.error(
                        "BNN302",
                        f"dimension of input `{decl.name}` must be positive, got "
                        f"{number}",
                        dim.span or decl.span,
                    )
                    ok = False
                dims.append(value)
            types.append(TensorType(tuple(dims), decl.dtype))
        return types if ok else None

    def instantiate(
        self,
        network: ir.Network,
        program: ir.Program,
        given: dict[str, Value],
        outer_known: dict[str, int],
        inputs: list[TensorType],
        call: ir.Call,
        layer: ir.Layer,
        caller: ir.Network,
        stack: tuple[str, ...],
        sink: DiagnosticSink,
    ) -> Outputs | None:
        """Check ``network`` used as ``layer`` with the caller's values and inputs."""
        if network.name in stack:
            sink.error(
                "BNN212",
                f"network `{network.name}` contains itself: "
                + " -> ".join([*stack, network.name]),
                layer.span,
            )
            return None
        if len(stack) >= MAX_NESTING:
            sink.error("BNN005", "networks are nested too deeply", layer.span)
            return None
        where = f"{caller.name}.{layer.name}"
        hinted = _HintedSink(sink, f"while checking `{network.name}` as `{where}`")
        params, known = self.parameters(network, given, outer_known, hinted)
        if any(isinstance(v, Unknown) and v.type == "int" for v in params.values()):
            # An int default that did not evaluate (the standalone check of
            # `network` reports it); shape rules need sizes, not unknowns.
            return None
        declared = self.input_types(network, params, known, hinted)
        if declared is None:
            return None
        if len(inputs) != len(declared):
            sink.error(
                "BNN207",
                f"network `{network.name}` takes {len(declared)} input(s), got "
                f"{len(inputs)}",
                call.span,
            )
            return None
        bound = self._bind_inputs(network, declared, inputs, known, call, sink)
        if bound is None:
            return None
        key = (
            id(network),
            id(program),
            tuple(sorted(params.items(), key=lambda item: item[0])),
            tuple(sorted(known.items())),
            tuple(bound),
            stack,
        )
        if key in self._instances:  # its errors, if any, are reported already
            return self._instances[key]
        checker = NetworkChecker(
            self,
            network,
            program,
            hinted,
            params=params,
            known_values=known,
            info=None,
            stack=(*stack, network.name),
        )
        outputs = checker.run(bound)
        self._instances[key] = outputs
        return outputs

    def _bind_inputs(
        self,
        network: ir.Network,
        declared: list[TensorType],
        actual: list[TensorType],
        known: dict[str, int],
        call: ir.Call,
        sink: DiagnosticSink,
    ) -> list[TensorType] | None:
        # Symbolic dims of the declared inputs bind to the caller's sizes; a
        # symbol shared by several inputs must get the same size each time.
        symbols: dict[str, tuple[Size, str]] = {}
        param_names = {p.name for p in network.params}
        for decl, want, got in zip(network.inputs, declared, actual, strict=True):
            detail = ""
            ok = want.rank == got.rank and want.is_float == got.is_float
            for w, g in zip(want.dims, got.dims, strict=False):
                if not ok:
                    break
                names = w.symbols() - param_names
                if w == Size.of(next(iter(names))) if len(names) == 1 else False:
                    symbol = next(iter(names))
                    if symbol not in symbols:
                        symbols[symbol] = (g, decl.name)
                    elif _differs(symbols[symbol][0], g, known):
                        size, source = symbols[symbol]
                        detail = f" with {symbol} = {size} (from input `{source}`)"
                        ok = False
                else:
                    bound = {name: size for name, (size, _) in symbols.items()}
                    ok = not _differs(w.substitute(bound), g, known)
            if not ok:
                sink.error(
                    "BNN402",
                    f"input `{decl.name}` of network `{network.name}` expects "
                    f"{want.describe()}{detail}, got {got.describe()}",
                    call.span,
                )
                return None
        return list(actual)


def _differs(a: Size, b: Size, known: dict[str, int]) -> bool:
    if a == b:
        return False
    ka, kb = a.evaluate(known), b.evaluate(known)
    return ka is not None and kb is not None and ka != kb


def _names(expr: ir.Expr) -> list[str]:
    if isinstance(expr, ir.Name):
        return [expr.id]
    if isinstance(expr, ir.BinOp):
        return _names(expr.left) + _names(expr.right)
    if isinstance(expr, ir.Neg):
        return _names(expr.operand)
    return []


def _matches(type_: str, value: Value) -> bool:
    if isinstance(value, Unknown):
        return True
    if type_ == "int":
        return isinstance(value, Size)
    if type_ == "float":
        return isinstance(value, float | Size) and not isinstance(value, bool)
    return isinstance(value, bool)


def _type_text(type_: str) -> str:
    return {"int": "an int", "float": "a number", "bool": "true or false"}[type_]


# ------------------------------------------------------------------------------------


def check_program(program: ir.Program) -> CheckedProgram:
    """Check ``program`` and everything it imports.

    Returns the checked program (with warnings); raises :class:`CompileError`
    with every error found.
    """
    try:
        return _check_program(program)
    except RecursionError:
        # Networks used as layers are checked recursively, each with its own
        # expression nesting (bounded for parsed specs, not for an IR built in
        # Python); together they can exhaust the stack.
        diagnostic = Diagnostic(
            "BNN005",
            "networks or expressions nest too deeply to check",
            program.span,
            hints=("use fewer levels of networks inside networks",),
            file=program.source,
        )
        raise CompileError([diagnostic], {}) from None


def _check_program(program: ir.Program) -> CheckedProgram:
    sink = DiagnosticSink()
    scope = Scope(program, sink)
    order = _emission_order(program, scope, sink)
    networks: dict[str, NetworkInfo] = {}
    for network, owner in order:
        info = NetworkInfo(network=network, program=owner)
        _check_standalone(scope, network, owner, info, sink)
        networks[network.name] = info
    if not program.networks:
        sink.diagnostics.append(
            Diagnostic(
                "BNN307",
                "the file defines no network",
                program.span,
                "warning",
                file=program.source,
            )
        )
    errors = [d for d in sink.diagnostics if d.severity == "error"]
    if errors:
        raise CompileError(sink.diagnostics, {})
    return CheckedProgram(
        program, networks, [d for d in sink.diagnostics if d.severity == "warning"]
    )


def _check_standalone(
    scope: Scope,
    network: ir.Network,
    program: ir.Program,
    info: NetworkInfo,
    sink: DiagnosticSink,
) -> None:
    if len(network.layers) > MAX_LAYERS:
        sink.error(
            "BNN005",
            f"network `{network.name}` has {len(network.layers)} layers; bnnc "
            f"accepts at most {MAX_LAYERS} per network",
            network.layers[MAX_LAYERS].span or network.span,
            "split it into networks used as layers of each other",
        )
        return
    for owner in (program, network, *network.layers):
        _check_distributions(owner, sink)
    for level in (program, network):
        _check_estimator_default(level, sink)
    names: set[str] = set()
    # Networks built in this network's constructor, where parameters are locals.
    constructed = {
        layer.op for layer in network.layers if scope.lookup(program, layer.op)
    }
    for param in network.params:
        if reason := reserved_reason(param.name):
            sink.error(
                "BNN209",
                f"`{param.name}` cannot name a parameter: {reason}",
                param.span,
            )
        elif param.name in constructed:
            sink.error(
                "BNN209",
                f"`{param.name}` cannot name a parameter: it would hide network "
                f"`{param.name}`, a layer of `{network.name}`, in generated code",
                param.span,
            )
        if param.name in names:
            sink.error(
                "BNN202", f"parameter `{param.name}` is defined twice", param.span
            )
        names.add(param.name)
    for decl in network.inputs:
        if reason := reserved_reason(decl.name):
            sink.error(
                "BNN209", f"`{decl.name}` cannot name an input: {reason}", decl.span
            )
        for dim in decl.dims:  # an IR built in Python or JSON may hold any text
            for symbol in _names(dim):
                if not (symbol.isascii() and symbol.isidentifier()) or (
                    keyword.iskeyword(symbol)
                ):
                    sink.error(
                        "BNN209",
                        f"{symbol!r} cannot name a dimension of input `{decl.name}`: "
                        "names must be ASCII identifiers",
                        dim.span or decl.span,
                    )
        if decl.name in names:
            sink.error("BNN202", f"`{decl.name}` is already defined", decl.span)
        names.add(decl.name)
    if reason := _class_name_problem(network.name):
        sink.error(
            "BNN209", f"`{network.name}` cannot name a network: {reason}", network.span
        )
    if not network.inputs:
        sink.error(
            "BNN106",
            f"network `{network.name}` declares no input",
            network.span,
            "add e.g. `input x: Tensor[B, 16]`",
        )
    params, known = scope.parameters(network, None, {}, sink)
    inputs = scope.input_types(network, params, known, sink)
    if inputs is None:
        return
    checker = NetworkChecker(
        scope,
        network,
        program,
        sink,
        params=params,
        known_values=known,
        info=info,
        stack=(network.name,),
    )
    checker.run(inputs)
    record = info.record_name
    if record is not None:  # forward's locals must not hide the output record
        locals_ = [(decl.name, decl.span, "an input") for decl in network.inputs]
        locals_ += [
            (s.target, s.span, "a value")
            for s in network.body
            if isinstance(s, ir.Assign)
        ]
        for name, span, what in locals_:
            if name == record:
                sink.error(
                    "BNN209",
                    f"`{name}` cannot name {what}: generated code uses it for the "
                    f"named outputs of `{network.name}`",
                    span,
                )


def _check_distributions(
    owner: ir.Program | ir.Network | ir.Layer, sink: DiagnosticSink
) -> None:
    """BNN105 for settings the front end would have refused (an IR from JSON)."""
    for kind, defaults in (
        ("prior", PRIOR_DEFAULTS),
        ("posterior", POSTERIOR_DEFAULTS),
    ):
        setting: ir.Distribution | None = getattr(owner, kind)
        if setting is None:
            continue
        for key, value in setting.params.items():
            problem = (
                f"unknown {kind} setting {key!r}"
                if key not in defaults
                else f"`{key}` must be a finite number"
                if not math.isfinite(value)
                else f"`{key}` must be positive"
                if key == "std" and value <= 0
                else None
            )
            if problem:
                sink.error("BNN105", problem, setting.span or owner.span)


def _check_estimator_default(
    owner: ir.Program | ir.Network, sink: DiagnosticSink
) -> None:
    """BNN310 for an ``estimator default`` that names no estimator."""
    setting = owner.estimator
    if setting is None or setting.name in ESTIMATORS:
        return
    sink.error(
        "BNN310",
        f"unknown estimator `{setting.name}`",
        setting.span or owner.span,
        *estimator_hints(setting.name),
    )


def _class_name_problem(name: str) -> str | None:
    reason = reserved_reason(name)
    if reason:
        return reason
    if name.endswith("Output"):
        return "names ending in `Output` are used for generated output records"
    return None


def _emission_order(
    program: ir.Program, scope: Scope, sink: DiagnosticSink
) -> list[tuple[ir.Network, ir.Program]]:
    """Reachable networks, each after the networks it uses; names unique."""
    order: list[tuple[ir.Network, ir.Program]] = []
    placed: dict[str, ir.Network] = {}
    visiting: set[int] = set()

    def visit(network: ir.Network, owner: ir.Program, via: ir.Layer | None) -> None:
        if network.name in placed:
            if placed[network.name] is not network:
                sink.error(
                    "BNN202",
                    f"two different networks are called `{network.name}`; generated "
                    "code needs unique names",
                    network.span,
                    "rename one of them",
                )
            return
        if id(network) in visiting:
            return  # the cycle is reported where the network instantiates itself
        visiting.add(id(network))
        for layer in network.layers:
            target = scope.lookup(owner, layer.op)
            if target is not None:
                visit(*target, layer)
        visiting.discard(id(network))
        placed[network.name] = network
        order.append((network, owner))

    for network in program.networks:
        visit(network, program, None)
    return order
