"""Checking one network: names, layer arguments, and shapes through ``forward``.

A network is checked standalone (its parameters symbolic, its inputs as
declared) to produce the :class:`NetworkInfo` backends use, and again each time
another network uses it as a layer, with the caller's argument values and input
shapes, so that errors that only show with those values are found too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bnnc.compiler import ir
from bnnc.compiler.check.results import HeadInfo, LayerInfo, NetworkInfo
from bnnc.compiler.check.values import (
    AUTO,
    MAX_SIZE,
    EvalError,
    Evaluator,
    Value,
    bind_arguments,
    reserved_reason,
)
from bnnc.compiler.diagnostics import DiagnosticSink, did_you_mean
from bnnc.compiler.registry import (
    ESTIMATORS,
    REGISTRY,
    REQUIRED,
    Arg,
    Bound,
    Op,
    ShapeError,
    head_event_size,
    layers,
)
from bnnc.compiler.symbolic import Size
from bnnc.compiler.types import DistType, RecordType, TensorType, ValueType

if TYPE_CHECKING:
    from bnnc.compiler.check.program import Scope

Outputs = list[tuple[str | None, ValueType]]


@dataclass
class _LayerState:
    """A layer during checking: bound arguments, resolved auto sizes, uses."""

    layer: ir.Layer
    op: Op | None
    network: tuple[ir.Network, ir.Program] | None
    values: dict[str, Value] | None  # None after argument errors
    auto: dict[str, Size] = field(default_factory=dict)
    calls: int = 0


class _HintedSink(DiagnosticSink):
    """Adds a 'while checking ...' hint to what an instantiation reports."""

    def __init__(self, target: DiagnosticSink, hint: str) -> None:
        super().__init__(target.diagnostics)
        self.hint = hint

    def error(self, code: str, message: str, span: ir.Span | None, *hints: str) -> None:
        super().error(code, message, span, *hints, self.hint)


class NetworkChecker:
    """Checks one network with given parameter values and input types."""

    def __init__(
        self,
        scope: Scope,
        network: ir.Network,
        program: ir.Program,
        sink: DiagnosticSink,
        *,
        params: dict[str, Value],
        known_values: dict[str, int],
        info: NetworkInfo | None,
        stack: tuple[str, ...],
    ) -> None:
        self.scope = scope
        self.network = network
        self.program = program
        self.sink = sink
        self.params = params
        runtime_dims = {
            name: decl.name
            for decl in reversed(network.inputs)
            for dim in decl.dims
            for name in _names_in(dim)
            if name not in params
        }
        self.evaluate = Evaluator(
            params, known_values, runtime_dims=runtime_dims, network=network.name
        )
        self.info = info  # filled only in standalone mode
        self.stack = stack
        self.layers: dict[str, _LayerState] = {}
        self.env: dict[str, ValueType] = {}
        self.uses: dict[str, int] = {}
        self.assigned_at: dict[str, ir.Span | None] = {}
        self._failed: set[str] = set()  # values whose expression had errors
        self._pending: set[str] = set()  # values assigned somewhere in forward

    @property
    def standalone(self) -> bool:
        """Whether this check records results for the backends."""
        return self.info is not None

    # ------------------------------------------------------------------------------
    def run(self, inputs: list[TensorType]) -> Outputs | None:
        """Check layers and forward given the input types; return the outputs."""
        for decl, tensor in zip(self.network.inputs, inputs, strict=True):
            self.env[decl.name] = tensor
            self.uses[decl.name] = 0
            if self.info is not None:
                self.info.inputs[decl.name] = tensor
        self._declare_layers()
        outputs = self._forward()
        self._report_unused()
        if self.info is not None:
            self._record_layers()
            if outputs is not None:
                self.info.outputs = outputs
        return outputs

    # ------------------------------------------------------------------------------
    def _declare_layers(self) -> None:
        names = {p.name for p in self.network.params} | {
            i.name for i in self.network.inputs
        }
        for layer in self.network.layers:
            if layer.name in names:
                self.sink.error(
                    "BNN202",
                    f"`{layer.name}` is already defined in network "
                    f"`{self.network.name}`",
                    layer.span,
                )
            names.add(layer.name)
            if self.standalone and (reason := reserved_reason(layer.name)):
                self.sink.error(
                    "BNN209",
                    f"`{layer.name}` cannot name a layer: {reason}",
                    layer.span,
                )
            self.layers[layer.name] = self._declare_layer(layer)

    def _declare_layer(self, layer: ir.Layer) -> _LayerState:
        op = REGISTRY.get(layer.op)
        what = f"layer `{layer.name}` ({layer.op})"
        if op is not None and op.kind == "layer":
            if (
                self.standalone
                and not layer.bayesian
                and (layer.prior or layer.posterior)
            ):
                self.sink.error(
                    "BNN306",
                    f"fixed layer `{layer.name}` cannot have a prior or posterior",
                    layer.span,
                    "remove `fixed` to make the layer Bayesian",
                )
            if self.standalone and layer.estimator is not None:
                self._check_layer_estimator(layer, op)
            values = bind_arguments(
                what,
                op.args,
                layer.args,
                layer.kwargs,
                layer.span,
                self.evaluate,
                self.sink,
                auto_allowed=lambda name: name in op.auto,
            )
            state = _LayerState(layer, op, None, values)
            if values is not None and op.validate is not None:
                self._validate(state, values)
            return state
        target = self.scope.lookup(self.program, layer.op)
        if target is not None:
            if self.standalone and (
                not layer.bayesian or layer.prior or layer.posterior
            ):
                self.sink.error(
                    "BNN306",
                    f"layer `{layer.name}` is a network: it cannot be `fixed` or take "
                    "a prior or posterior",
                    layer.span,
                    f"set `prior default` / `fixed` inside network `{layer.op}`",
                )
            if self.standalone and layer.estimator is not None:
                self.sink.error(
                    "BNN306",
                    f"layer `{layer.name}` is a network: it cannot take an estimator",
                    layer.estimator.span or layer.span,
                    f"set `estimator default` inside network `{layer.op}`, or "
                    "`estimator=` on its layers",
                )
            net = target[0]
            specs = [_param_arg(p) for p in net.params]
            values = bind_arguments(
                f"network `{net.name}`",
                specs,
                layer.args,
                layer.kwargs,
                layer.span,
                self.evaluate,
                self.sink,
            )
            return _LayerState(layer, None, target, values)
        if op is not None:  # a functional op
            self.sink.error(
                "BNN203",
                f"`{layer.op}` is a function, not a layer",
                layer.span,
                f"call it in forward instead, e.g. `x = {layer.op}(x)`",
            )
        else:
            candidates = [o.name for o in REGISTRY.values() if o.kind == "layer"]
            candidates += self.scope.visible_names(self.program)
            self.sink.error(
                "BNN203",
                f"unknown layer type `{layer.op}`",
                layer.span,
                *did_you_mean(layer.op, candidates),
            )
        return _LayerState(layer, None, None, None)

    def _check_layer_estimator(self, layer: ir.Layer, op: Op) -> None:
        """BNN306 on a fixed layer; BNN310 for an unknown or unsupported name."""
        assert layer.estimator is not None
        name, span = layer.estimator.name, layer.estimator.span or layer.span
        if not layer.bayesian:
            self.sink.error(
                "BNN306",
                f"fixed layer `{layer.name}` has no gradient estimator",
                span,
                "remove `fixed` to make the layer Bayesian, or remove `estimator=`",
            )
        elif name not in ESTIMATORS:
            self.sink.error(
                "BNN310",
                f"unknown estimator `{name}`",
                span,
                *estimator_hints(name),
            )
        elif name not in op.estimators:
            supported = [o.name for o in layers() if name in o.estimators]
            takes = (
                f"{op.name} takes only `{op.estimators[0]}`, the default"
                if len(op.estimators) == 1
                else f"{op.name} takes " + ", ".join(f"`{e}`" for e in op.estimators)
            )
            self.sink.error(
                "BNN310",
                f"{op.name} does not support the estimator `{name}`",
                span,
                f"{takes}; `{name}` applies to {', '.join(supported)}",
            )

    def _validate(self, state: _LayerState, values: dict[str, Value]) -> bool:
        assert state.op is not None and state.op.validate is not None
        try:
            state.op.validate(Bound(values, self.evaluate.known_values))
        except ShapeError as error:
            span = _arg_span(state.layer, state.op, error.arg) or state.layer.span
            self.sink.error(error.code, error.message, span, *error.hints)
            return False
        return True

    # ------------------------------------------------------------------------------
    def _forward(self) -> Outputs | None:
        outputs: Outputs | None = None
        returned = False
        self._pending = {
            s.target for s in self.network.body if isinstance(s, ir.Assign)
        }
        for statement in self.network.body:
            if returned:
                self.sink.error(
                    "BNN308",
                    "statement after `return` is never run",
                    statement.span,
                )
                break
            if isinstance(statement, ir.Assign):
                value = self._tensor_expression(statement.value)
                target = statement.target
                if self.standalone and (reason := reserved_reason(target)):
                    self.sink.error(
                        "BNN209",
                        f"`{target}` cannot name a value: {reason}",
                        statement.span,
                    )
                if target in self.layers or target in self.params:
                    kind = "layer" if target in self.layers else "parameter"
                    self.sink.error(
                        "BNN202",
                        f"`{target}` is already a {kind} of network "
                        f"`{self.network.name}`",
                        statement.span,
                        "choose another name for the value",
                    )
                if value is not None:
                    self.env[target] = value
                    if self.info is not None:
                        self.info.values[target] = value
                else:
                    self.env.pop(target, None)
                    self._failed.add(target)
                self.uses.setdefault(target, 0)
                self.assigned_at[target] = statement.span
            else:
                returned = True
                outputs = self._return(statement)
        if not returned:
            self.sink.error(
                "BNN307",
                f"network `{self.network.name}` has no `return` in its forward",
                self.network.span,
                "end forward with `return <value>`",
            )
        return outputs

    def _return(self, statement: ir.Return) -> Outputs | None:
        outputs: Outputs = []
        seen: set[str] = set()
        ok = True
        for output in statement.outputs:
            if output.name is not None:
                if output.name in seen:
                    self.sink.error(
                        "BNN202", f"output `{output.name}` returned twice", output.span
                    )
                    ok = False
                seen.add(output.name)
                if self.standalone and (reason := reserved_reason(output.name)):
                    self.sink.error(
                        "BNN209",
                        f"`{output.name}` cannot name an output: {reason}",
                        output.span,
                    )
            if isinstance(output.value, ir.Tuple) and output.name is None:
                self._touch(output.value)
                self.sink.error(
                    "BNN301",
                    "a network returns one tensor or named outputs, not a tuple",
                    output.value.span,
                    "name each output, e.g. `return (mean=..., scale=...)`",
                )
                ok = False
                continue
            head = self._head_op(output.value)
            if head is not None:
                value = self._head(head, output.value, output.name)  # type: ignore[arg-type]
            else:
                value = self._tensor_expression(output.value)
            if value is None:
                ok = False
            elif isinstance(value, RecordType):
                self.sink.error(
                    "BNN301",
                    "cannot return a network's named outputs as one value",
                    output.value.span,
                    "return one of them, e.g. `out.mean`",
                )
                ok = False
            else:
                outputs.append((output.name, value))
        return outputs if ok else None

    def _head_op(self, expr: ir.Expr) -> Op | None:
        """The head op ``expr`` calls, if it is a call of an output head."""
        if isinstance(expr, ir.Call) and expr.func not in self.layers:
            op = REGISTRY.get(expr.func)
            if op is not None and op.kind == "head":
                return op
        return None

    def _head(self, op: Op, expr: ir.Call, output: str | None) -> ValueType | None:
        """Check an output head in ``return`` and record it for the backends."""
        if not expr.args:
            self.sink.error(
                "BNN205",
                f"`{op.name}` head needs the features to turn into a distribution",
                expr.span,
                f"e.g. `return {op.name}(h)`",
            )
            return None
        features = self._expression(expr.args[0])
        values = bind_arguments(
            f"`{op.name}` head",
            op.args,
            expr.args[1:],
            expr.kwargs,
            expr.span,
            self.evaluate,
            self.sink,
        )
        if features is None or values is None:
            return None
        if not isinstance(features, TensorType):
            self.sink.error(
                "BNN301",
                f"`{op.name}` head takes a tensor of features",
                expr.args[0].span or expr.span,
            )
            return None
        result = self._infer(op, values, [features], expr)
        # The head is built with its feature count, like an `auto` size: it must
        # not depend on run-time dims (generated code would name them).
        unfixed = sorted(features.dims[-1].symbols() - set(self.params))
        if result is not None and self.info is not None and unfixed:
            self.sink.error(
                "BNN403",
                f"cannot size the `{op.name}` head: its features depend on input "
                f"dim(s) {', '.join(unfixed)}, which are not fixed",
                expr.args[0].span or expr.span,
                "give the input a fixed size, or put a layer with a fixed output "
                "size before the head",
            )
            return None
        if result is not None and self.info is not None:
            attribute = "_head" if output is None else f"_{output}_head"
            self.info.heads[id(expr)] = HeadInfo(
                attribute, op, expr, head_event_size(op, features.dims[-1]), expr.span
            )
        return result

    # ------------------------------------------------------------------------------
    def _tensor_expression(self, expr: ir.Expr) -> ValueType | None:
        """Type of a forward expression that must be a tensor (or record)."""
        result = self._expression(expr)
        if result is None or isinstance(result, TensorType | RecordType | DistType):
            return result
        self.sink.error(
            "BNN301",
            "forward values must be tensors, not compile-time numbers",
            expr.span,
        )
        return None

    def _expression(self, expr: ir.Expr) -> ValueType | Value | None:
        result = self._expression_inner(expr)
        if self.info is not None and isinstance(result, TensorType | RecordType):
            self.info.expression_types[id(expr)] = result
        return result

    def _expression_inner(self, expr: ir.Expr) -> ValueType | Value | None:
        if isinstance(expr, ir.Name):
            return self._name(expr)
        if isinstance(expr, ir.Call):
            return self._call(expr)
        if isinstance(expr, ir.BinOp):
            return self._binop(expr)
        if isinstance(expr, ir.Attribute):
            return self._attribute(expr)
        if isinstance(expr, ir.Neg | ir.Tuple) and self._mentions_tensors(expr):
            self._touch(expr)
            self.sink.error(
                "BNN301",
                "`-` (negation) is not defined for tensors"
                if isinstance(expr, ir.Neg)
                else "tuples of tensors are not values",
                expr.span,
                "tensors support `+` (elementwise add); other arithmetic is for sizes"
                if isinstance(expr, ir.Neg)
                else "pass tensors to a function such as `concat(a, b)`",
            )
            return None
        if isinstance(expr, ir.NoneLit):
            # Its value, None, would read as "already reported" to every caller.
            self.sink.error(
                "BNN301",
                "`none` is not a value in forward",
                expr.span,
                "`none` only stands for an absent optional argument, e.g. "
                "`padding_idx=none`",
            )
            return None
        try:
            return self.evaluate(expr)
        except EvalError as error:
            self.sink.error(error.code, error.message, error.span, *error.hints)
            return None

    def _name(self, expr: ir.Name) -> ValueType | Value | None:
        name = expr.id
        if name in self.env:
            self.uses[name] = self.uses.get(name, 0) + 1
            return self.env[name]
        if name in self._failed:
            self.uses[name] = self.uses.get(name, 0) + 1
            return None  # already reported
        if name in self.params:
            self._use_param(name)
            return self.params[name]
        if name in self.layers:
            self.layers[name].calls += 1
            self.sink.error(
                "BNN301",
                f"layer `{name}` must be called, e.g. `{name}(x)`",
                expr.span,
            )
            return None
        if name in self._pending:
            self.sink.error(
                "BNN208", f"`{name}` is used before it is assigned", expr.span
            )
            return None
        self.sink.error(
            "BNN201",
            f"unknown name `{name}`",
            expr.span,
            *did_you_mean(name, [*self.env, *self.params]),
        )
        return None

    def _use_param(self, name: str) -> None:
        if self.info is not None and name not in self.info.forward_params:
            self.info.forward_params.append(name)

    def _binop(self, expr: ir.BinOp) -> ValueType | Value | None:
        left = self._expression(expr.left)
        right = self._expression(expr.right)
        if left is None or right is None:
            return None
        tensors = [isinstance(v, TensorType | RecordType) for v in (left, right)]
        if not any(tensors):
            try:
                return self.evaluate(expr)
            except EvalError as error:
                self.sink.error(error.code, error.message, error.span, *error.hints)
                return None
        if not all(tensors) or expr.op != "+":
            self.sink.error(
                "BNN301",
                f"`{expr.op}` is not defined between these values"
                if expr.op != "+"
                else "`+` adds two tensors; one side is a compile-time number",
                expr.span,
                "tensors support `+` (elementwise add); other arithmetic is for sizes",
            )
            return None
        return self._apply(REGISTRY["add"], [left, right], {}, expr)

    def _call(self, expr: ir.Call) -> ValueType | Value | None:
        func = expr.func
        if func in self.env or func in self._failed:
            self.uses[func] = self.uses.get(func, 0) + 1
            self._touch(expr, include_callee=False)
            if func in self.env:
                self.sink.error(
                    "BNN203",
                    f"`{func}` is a value, not a layer or function",
                    name_span(expr.span, func),
                    "only layers declared in `layers { }` and functional ops such as "
                    "`relu` can be called",
                )
            return None
        if func in self.layers:
            return self._layer_call(self.layers[func], expr)
        op = REGISTRY.get(func)
        if op is not None and op.kind == "function":
            return self._function_call(op, expr)
        if op is not None and op.kind == "head":
            self._touch(expr, include_callee=False)
            self.sink.error(
                "BNN301",
                f"`{func}` is an output head: it can only be returned",
                name_span(expr.span, func),
                f"e.g. `return {func}(h)` or `return (y={func}(h), ...)`",
            )
            return None
        if op is not None or self.scope.lookup(self.program, func) is not None:
            self._touch(expr, include_callee=False)
            self.sink.error(
                "BNN203",
                f"`{func}` is a layer type; declare it in `layers {{ }}` and call it "
                "by name",
                expr.span,
                f"e.g. `layers {{ {func.lower()}_1 = {func}(...) }}`",
            )
            return None
        for arg in expr.args:
            self._expression(arg)
        functions = [o.name for o in REGISTRY.values() if o.kind == "function"]
        hints = did_you_mean(func, [*self.layers, *functions])
        if func == "getattr" and expr.args:
            hints = ("pick a named output with `.`, e.g. `enc(x).mean`",)
        for layer in self.layers:
            if hints and f"`{layer}`" in hints[0]:
                self.layers[layer].calls += 1  # a typo is not also "unused layer"
        self.sink.error(
            "BNN201",
            f"unknown layer or function `{func}`",
            name_span(expr.span, func),
            *hints,
        )
        return None

    def _attribute(self, expr: ir.Attribute) -> ValueType | None:
        target = self._expression(expr.value)
        if target is None:
            return None
        if isinstance(target, DistType):
            found = target.field(expr.name)
            if found is None:
                names = [n for n, _ in target.fields]
                self.sink.error(
                    "BNN201",
                    f"a `{target.kind}` head has no field `{expr.name}`",
                    expr.name_span or expr.span,
                    *(
                        did_you_mean(expr.name, names)
                        or (f"fields: {', '.join(names)}",)
                    ),
                )
            return found
        if not isinstance(target, RecordType):
            self.sink.error(
                "BNN301",
                f"`.{expr.name}` needs a network's named outputs",
                expr.name_span or expr.span,
            )
            return None
        found = target.field(expr.name)
        if found is None:
            self.sink.error(
                "BNN201",
                f"network `{target.network}` has no output `{expr.name}`",
                expr.name_span or expr.span,
                *did_you_mean(expr.name, [n for n, _ in target.fields]),
            )
        return found

    def _tensor_args(self, expr: ir.Call) -> list[ValueType] | None:
        values = [self._expression(arg) for arg in expr.args]
        if any(v is None for v in values):
            return None
        for arg, value in zip(expr.args, values, strict=True):
            if not isinstance(value, TensorType):
                self.sink.error(
                    "BNN301",
                    f"`{expr.func}` takes tensors, got a compile-time value"
                    if not isinstance(value, RecordType)
                    else f"`{expr.func}` takes tensors, got named outputs",
                    arg.span,
                )
                return None
        return values  # type: ignore[return-value]

    def _layer_call(self, state: _LayerState, expr: ir.Call) -> ValueType | None:
        state.calls += 1
        if expr.kwargs:
            self._touch(expr, include_callee=False)
            self.sink.error(
                "BNN204",
                f"layer `{state.layer.name}` takes only tensors, no keyword arguments",
                expr.kwargs[0].span or expr.span,
                "layer options belong in its declaration in `layers { }`",
            )
            return None
        inputs = self._tensor_args(expr)
        if inputs is None or state.values is None:
            return None
        if state.network is not None:
            return self._instantiate(state, expr, inputs)  # type: ignore[arg-type]
        assert state.op is not None
        expected = state.op.tensor_inputs or 1
        if len(inputs) != expected:
            self.sink.error(
                "BNN207",
                f"layer `{state.layer.name}` takes {expected} input(s), got "
                f"{len(inputs)}",
                expr.span,
            )
            return None
        values = dict(state.values)
        for name, rule in state.op.auto.items():
            if values.get(name) is AUTO:
                try:
                    resolved = rule(inputs)  # type: ignore[arg-type]
                except IndexError:  # too few dims: the shape rule says so below
                    continue
                previous = state.auto.get(name)
                if previous is not None and previous != resolved:
                    self.sink.error(
                        "BNN402",
                        f"layer `{state.layer.name}` is called with inputs of "
                        f"different sizes ({previous} and {resolved}), so `{name}` = "
                        "auto is ambiguous",
                        expr.span,
                    )
                    return None
                state.auto[name] = resolved
                values[name] = resolved
        if (
            state.auto
            and state.op.validate is not None
            and not self._validate(state, values)
        ):
            return None
        return self._infer(
            state.op,
            values,
            inputs,
            expr,
            f"layer `{state.layer.name}`: ",  # type: ignore[arg-type]
        )

    def _infer(
        self,
        op: Op,
        values: dict[str, Value],
        inputs: Sequence[TensorType],
        expr: ir.Expr,
        who: str = "",
    ) -> TensorType | None:
        try:
            result = op.infer(Bound(values, self.evaluate.known_values), inputs)
        except ShapeError as error:
            self.sink.error(error.code, who + error.message, expr.span, *error.hints)
            return None
        # Shape rules multiply sizes (flatten, reshape, concat); keep every size a
        # backend emits within the limit the evaluator applies to written sizes.
        tensors = result.fields if isinstance(result, DistType) else (("", result),)
        for _, tensor in tensors:
            for dim in tensor.dims:
                known = self.evaluate.known(dim)
                if known is not None and abs(known) > MAX_SIZE:
                    self.sink.error(
                        "BNN104",
                        f"{who}{op.name} gives a dimension of {known}, too large "
                        "(sizes are limited to 2**40)",
                        expr.span,
                    )
                    return None
        return result

    def _function_call(self, op: Op, expr: ir.Call) -> ValueType | None:
        tensor_exprs: list[ir.Expr] = []
        rest: list[ir.Expr] = list(expr.args)
        while rest and self._is_tensor_expression(rest[0]):
            tensor_exprs.append(rest.pop(0))
        inputs = [self._expression(e) for e in tensor_exprs]
        if any(v is None for v in inputs):
            # Still check the options: their errors are independent of the inputs.
            if not any(self._mentions_tensors(a) for a in rest):
                bind_arguments(
                    f"`{op.name}`",
                    op.args,
                    rest,
                    expr.kwargs,
                    expr.span,
                    self.evaluate,
                    self.sink,
                )
            return None
        wanted = op.tensor_inputs
        if (wanted is None and not inputs) or (
            wanted is not None and len(inputs) != wanted
        ):
            count = "one or more" if wanted is None else str(wanted)
            self.sink.error(
                "BNN207",
                f"`{op.name}` takes {count} tensor input(s), got {len(inputs)}",
                expr.span,
            )
            return None
        for arg in [*rest, *(kw.value for kw in expr.kwargs)]:
            for name in _names_in(arg):
                if name in self.params:
                    self._use_param(name)
                elif name in self.env or name in self.layers:
                    self._touch(expr, include_callee=False)
                    self.sink.error(
                        "BNN301",
                        f"`{op.name}` options are compile-time values; `{name}` is a "
                        "tensor",
                        arg.span,
                        "tensor inputs come first in the call",
                    )
                    return None
        values = bind_arguments(
            f"`{op.name}`",
            op.args,
            rest,
            expr.kwargs,
            expr.span,
            self.evaluate,
            self.sink,
        )
        if values is None:
            return None
        return self._apply(op, inputs, values, expr)  # type: ignore[arg-type]

    def _apply(
        self, op: Op, inputs: list[ValueType], values: dict[str, Value], expr: ir.Expr
    ) -> ValueType | None:
        for value in inputs:
            if isinstance(value, DistType):
                self.sink.error(
                    "BNN301",
                    f"`{op.name}` takes tensors, got a `{value.kind}` distribution",
                    expr.span,
                    f"pick a tensor, e.g. `.{value.fields[0][0]}` or `.stoch`",
                )
                return None
            if isinstance(value, RecordType):
                self.sink.error(
                    "BNN301",
                    f"`{op.name}` takes tensors, got named outputs of "
                    f"`{value.network}`",
                    expr.span,
                    "pick one output, e.g. `out.mean`",
                )
                return None
        return self._infer(op, values, inputs, expr)  # type: ignore[arg-type]

    def _is_tensor_expression(self, expr: ir.Expr) -> bool:
        if isinstance(expr, ir.Name):
            return expr.id not in self.params
        if isinstance(expr, ir.Call | ir.Attribute):
            return True
        if isinstance(expr, ir.BinOp):
            return self._is_tensor_expression(expr.left) or self._is_tensor_expression(
                expr.right
            )
        return False

    def _instantiate(
        self, state: _LayerState, expr: ir.Call, inputs: list[TensorType]
    ) -> ValueType | None:
        assert state.network is not None and state.values is not None
        net, program = state.network
        outputs = self.scope.instantiate(
            net,
            program,
            state.values,
            self.evaluate.known_values,
            inputs,
            expr,
            state.layer,
            self.network,
            self.stack,
            self.sink,
        )
        if outputs is None:
            return None
        if len(outputs) == 1 and outputs[0][0] is None:
            return outputs[0][1]
        return RecordType(net.name, tuple((n or "", t) for n, t in outputs))  # type: ignore[misc]

    def _mentions_tensors(self, expr: ir.Expr) -> bool:
        """Whether ``expr`` refers to a tensor value or calls a layer/function."""
        return any(
            name in self.env
            or name in self._failed
            or name in self.layers
            or (name in REGISTRY and name not in self.params)
            for name in _names_in(expr)
        )

    def _touch(self, expr: ir.Expr, *, include_callee: bool = True) -> None:
        """Count the names in ``expr`` as used without checking it.

        Used where an expression is rejected as a whole, so that the values
        and layers it mentions are not also reported as unused.
        """
        names = _names_in(expr)
        if not include_callee and isinstance(expr, ir.Call):
            names = names[1:]  # the callee comes first
        for name in names:
            if name in self.layers:
                self.layers[name].calls += 1
            elif name in self.env or name in self._failed:
                self.uses[name] = self.uses.get(name, 0) + 1

    # ------------------------------------------------------------------------------
    def _report_unused(self) -> None:
        if not self.standalone:
            return
        for state in self.layers.values():
            if state.calls == 0 and state.values is not None:
                self.sink.error(
                    "BNN210",
                    f"layer `{state.layer.name}` is never used in forward",
                    state.layer.span,
                    "call it in forward or remove it",
                )
        for decl in self.network.inputs:
            if self.uses.get(decl.name, 0) == 0:
                self.sink.warning(
                    "BNN210", f"input `{decl.name}` is never used", decl.span
                )
        for name, span in self.assigned_at.items():
            if self.uses.get(name, 0) == 0:
                self.sink.warning("BNN210", f"value `{name}` is never used", span)

    def _record_layers(self) -> None:
        assert self.info is not None
        for name, state in self.layers.items():
            if state.values is None:
                continue
            for arg, size in state.auto.items():
                bad = sorted(size.symbols() - set(self.params))
                if bad:
                    self.sink.error(
                        "BNN403",
                        f"cannot infer `{arg}` of layer `{name}`: it depends on input "
                        f"dim(s) {', '.join(bad)}, which are not fixed",
                        _arg_span(state.layer, state.op, arg) or state.layer.span,
                        "give the input a fixed size or write the size explicitly",
                    )
            if state.op is not None:
                missing = [
                    a
                    for a, v in state.values.items()
                    if v is AUTO and a not in state.auto
                ]
                if missing and state.calls:
                    continue
            prior, posterior = self.scope.effective_distributions(
                self.program, self.network, state.layer
            )
            self.info.layers[name] = LayerInfo(
                layer=state.layer,
                op=state.op,
                network=state.network[0].name if state.network else None,
                auto=dict(state.auto),
                prior=prior,
                posterior=posterior,
                estimator=self.scope.effective_estimator(
                    self.program, self.network, state.layer, state.op
                ),
            )


# Common short names of the estimators, for a "did you mean" hint.
_ESTIMATOR_ALIASES = {
    "lrt": "local_reparameterization",
    "local": "local_reparameterization",
    "local_reparam": "local_reparameterization",
    "reparam": "reparameterization",
    "flip": "flipout",
}


def estimator_hints(name: str) -> tuple[str, ...]:
    """Hints for an unknown estimator name: the closest one, and every one."""
    alias = _ESTIMATOR_ALIASES.get(name.lower())
    close = (f"did you mean `{alias}`?",) if alias else did_you_mean(name, ESTIMATORS)
    return (*close, "estimators: " + ", ".join(ESTIMATORS))


def _param_arg(param: ir.Param) -> Arg:
    # A parameter left out by the caller binds to None: the network's own default.
    default = None if param.default is not None else REQUIRED
    return Arg(param.name, param.type, default=default)


def _arg_span(layer: ir.Layer, op: Op | None, arg: str | None) -> ir.Span | None:
    if arg is None or op is None:
        return None
    for kw in layer.kwargs:
        if kw.name == arg:
            return kw.span or kw.value.span
    names = [a.name for a in op.args]
    if arg in names and names.index(arg) < len(layer.args):
        return layer.args[names.index(arg)].span
    return None


def _names_in(expr: ir.Expr) -> list[str]:
    """Every name an expression mentions, callees included."""
    if isinstance(expr, ir.Name):
        return [expr.id]
    if isinstance(expr, ir.BinOp):
        return _names_in(expr.left) + _names_in(expr.right)
    if isinstance(expr, ir.Neg):
        return _names_in(expr.operand)
    if isinstance(expr, ir.Attribute):
        return _names_in(expr.value)
    if isinstance(expr, ir.Tuple):
        return [n for item in expr.items for n in _names_in(item)]
    if isinstance(expr, ir.Call):
        inner = [*expr.args, *(kw.value for kw in expr.kwargs)]
        return [expr.func, *(n for arg in inner for n in _names_in(arg))]
    return []


def name_span(span: ir.Span | None, name: str) -> ir.Span | None:
    """The span of ``name`` at the start of ``span`` (a call's callee)."""
    if span is None:
        return None
    return span.model_copy(
        update={"end_line": span.line, "end_column": span.column + len(name)}
    )
