"""What the checker hands to backends: every layer resolved, every value typed."""

from __future__ import annotations

from dataclasses import dataclass, field

from bnnc.compiler import ir
from bnnc.compiler.diagnostics import Diagnostic
from bnnc.compiler.registry import DEFAULT_ESTIMATOR, Op
from bnnc.compiler.symbolic import Size
from bnnc.compiler.types import TensorType, ValueType

# Runtime defaults of GaussianDistribution (reference API).
PRIOR_DEFAULTS = {"mu": 0.0, "std": 0.1}
POSTERIOR_DEFAULTS = {"mu_init": 0.0, "rho_init": -7.0}


@dataclass(frozen=True)
class LayerInfo:
    """A checked layer: its op or network and its resolved ``auto`` sizes."""

    layer: ir.Layer
    op: Op | None  # registry op; None when the layer is a network
    network: str | None  # qualified name of the network used as a layer
    auto: dict[str, Size]
    prior: dict[str, float]  # effective prior (mu, std)
    posterior: dict[str, float]  # effective posterior (mu_init, rho_init)
    estimator: str = DEFAULT_ESTIMATOR  # effective gradient estimator


@dataclass(frozen=True)
class HeadInfo:
    """An output head: the attribute holding it, its op, options and in_dim."""

    attribute: str  # e.g. `_head` or `_mean_head`
    op: Op
    call: ir.Call
    in_dim: Size
    span: ir.Span | None


@dataclass
class NetworkInfo:
    """A checked network: layers, value types, outputs."""

    network: ir.Network
    program: ir.Program
    layers: dict[str, LayerInfo] = field(default_factory=dict)
    inputs: dict[str, TensorType] = field(default_factory=dict)
    values: dict[str, ValueType] = field(default_factory=dict)
    outputs: list[tuple[str | None, ValueType]] = field(default_factory=list)
    forward_params: list[str] = field(default_factory=list)  # params read in forward
    heads: dict[int, HeadInfo] = field(default_factory=dict)  # by id() of the call
    # Types of every expression node in forward, by id(), for emitters that need them.
    expression_types: dict[int, ValueType] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The network's name."""
        return self.network.name

    @property
    def record_name(self) -> str | None:
        """Name of the generated output record when outputs are named."""
        if len(self.outputs) > 1 or (self.outputs and self.outputs[0][0]):
            return f"{self.network.name}Output"
        return None


@dataclass
class CheckedProgram:
    """A program with every network reachable from it checked."""

    program: ir.Program
    networks: dict[str, NetworkInfo]  # in emission order: dependencies first
    warnings: list[Diagnostic] = field(default_factory=list)

    def main_networks(self) -> list[NetworkInfo]:
        """Networks defined in the program itself (not imported)."""
        return [info for info in self.networks.values() if info.program is self.program]
