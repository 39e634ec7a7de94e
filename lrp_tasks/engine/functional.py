"""Functional operations of a traced model as steps, and how relevance flows through them.

torch.fx gives a model's additions, concatenations, reshapes, poolings and activations as
functions (``out += identity``, ``torch.cat``, ``F.relu``). Each becomes a :class:`FunctionStep`
of one family; the family is a class, so composites address it like a layer type
(``GlobalTypeMap({Add: GradientRule()})``), and it gives the rule used when the composite says
nothing (``default_rule``). How relevance moves through a function step depends on its rule:

- ``GradientRule``: the vector-Jacobian product (exact routing for indexing and max pooling; a
  plain gradient through additions);
- ``PassRule``: the relevance reshaped to the step's data input (activations, reshapes, scaling
  by a constant); size arguments (``x.view(x.size(0), -1)``) get none;
- any other rule that works without weights (``ZeroRule``, ``EpsilonRule``): LRP-0/ε through the
  function, ``R_i = x_i ⊙ J_iᵀ (R / stab(out))`` — for an addition the proportional split
  ``R_i = x_i R / stab(Σx)`` (zennit's Norm on its Sum layer); constants absorb their share like
  a bias.

Size arithmetic (``x.size(0)``, ``x.shape[0]``, ``n // 2``, ``h ** 2``) is recognised when the
model is traced (``tracing.py``) and becomes :class:`Ignored` steps: replayed on every batch, never
given relevance. A product with (or a division by) a constant or a parameter is :class:`Scale`, a
linear step: relevance passes unchanged (LRP-SPEC: "a product with a parameter or a constant is
linear: R_x = R_y"); adding a constant is an :class:`Add`, where the constant absorbs its share
like a bias.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .rules import (
    GateRule,
    GradientRule,
    LayerNormRule,
    LRPRule,
    PassRule,
    SoftmaxRule,
    StopRule,
    UniformRule,
    ZeroRule,
    layer_norm_relevance,
    stabilize,
)


@dataclass(frozen=True)
class Ref:
    """Placeholder in a function step's argument template: the step's i-th input value."""

    index: int


def _substitute(template: Any, values: list[Any]) -> Any:
    if isinstance(template, Ref):
        return values[template.index]
    if isinstance(template, tuple):
        return tuple(_substitute(t, values) for t in template)
    if isinstance(template, list):
        return [_substitute(t, values) for t in template]
    if isinstance(template, dict):
        return {k: _substitute(v, values) for k, v in template.items()}
    if isinstance(template, slice):
        return slice(
            _substitute(template.start, values), _substitute(template.stop, values), _substitute(template.step, values)
        )
    return template


def _no_dropout(x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    return x


class FunctionStep(nn.Module):
    """A functional operation of a traced model (a function or tensor method and its arguments).

    ``forward(*inputs)`` replays the operation on the values of the step's inputs, always out of
    place, so recorded activations are never overwritten."""

    #: whether relevance reaching the step is handed on (False: size(), getattr...)
    carries_relevance = True
    #: whether PassRule applies (one input of the output's size)
    pass_compatible = True

    def __init__(self, op: str, target: Any, args: Any, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.op = op
        if op == "call_method":
            target = OUT_OF_PLACE_METHODS.get(target, target)
        else:
            target = OUT_OF_PLACE.get(target, target)
        if target is F.dropout:  # an analysis runs in eval mode, whatever the trace captured
            target = _no_dropout
        self.target = target
        self.args = args
        self.kwargs = {k: v for k, v in kwargs.items() if k != "inplace"}
        first = _first_ref(self.args)
        #: the input PassRule hands the relevance to (the tensor being reshaped or scaled)
        self.data_input: int = 0 if first is None else first

    def forward(self, *values: Any) -> Any:
        args = _substitute(self.args, list(values))
        kwargs = _substitute(self.kwargs, list(values))
        if self.op == "call_method":
            first, *rest = args
            return getattr(first, self.target)(*rest, **kwargs)
        return self.target(*args, **kwargs)

    @property
    def function_name(self) -> str:
        return describe(self.op, self.target)

    def default_rule(self, stabilizer: float) -> LRPRule:
        """The rule of this step when the composite assigns none."""
        return GradientRule()

    def extra_repr(self) -> str:
        return self.function_name

    def relevance(self, rule: LRPRule, record: FunctionRecord, relevance: Tensor) -> list[Tensor | None]:
        """Relevance handed to each input of the step (None: an input that receives none)."""
        if isinstance(rule, PassRule):
            shares: list[Tensor | None] = [None] * len(record.inputs)
            value = record.inputs[self.data_input]
            if relevance.numel() != value.numel():
                raise RuntimeError(
                    f"PassRule on {self.function_name} needs equal input and output sizes, got "
                    f"{tuple(value.shape)} -> {tuple(relevance.shape)}"
                )
            shares[self.data_input] = relevance.reshape(value.shape)
            return shares
        if isinstance(rule, GradientRule):
            return record.vjp(relevance)
        s = relevance / rule.modify_denominator(record.output)
        grads = record.vjp(s)
        return [None if g is None else g * x for g, x in zip(grads, record.inputs, strict=True)]

    def needs_graph(self, rule: LRPRule) -> bool:
        """Whether the recorded forward must keep an autograd graph for this rule."""
        return not isinstance(rule, PassRule)


class Add(FunctionStep):
    """Additions and subtractions (``a + b``, ``out += identity``, ``torch.add``, ``a - b``).
    Default: the proportional split with the composite's stabilizer (zennit's Norm on Sum); the
    summands that are parameters or constants (a position embedding) absorb their share like a
    bias. ``PassRule`` on an addition of one activation and constants hands that activation all of
    the relevance."""

    #: positions of the operands that are parameters or constants (set when the plan is built)
    constant_inputs: frozenset[int] = frozenset()

    @property
    def pass_compatible(self) -> bool:  # type: ignore[override]
        return self._activation_input() is not None

    def _activation_input(self) -> int | None:
        refs = [a.index for a in self.args if isinstance(a, Ref)]
        active = [i for i in refs if i not in self.constant_inputs]
        return active[0] if len(active) == 1 and self.target not in NEGATING_FUNCTIONS else None

    def default_rule(self, stabilizer: float) -> LRPRule:
        return ZeroRule(stabilizer=stabilizer)

    def _plain(self, record: FunctionRecord) -> bool:
        """Two tensors of the output's shape added without scaling: closed forms apply."""
        return (
            self.target in (operator.add, torch.add, "add", "__add__")
            and "alpha" not in self.kwargs
            and len(self.args) == 2
            and all(isinstance(a, Ref) for a in self.args)
            and all(x.shape == record.output.shape for x in record.inputs)
        )

    def needs_graph(self, rule: LRPRule) -> bool:
        return not isinstance(rule, PassRule)  # decided per call; cheap for additions

    def relevance(self, rule: LRPRule, record: FunctionRecord, relevance: Tensor) -> list[Tensor | None]:
        if isinstance(rule, PassRule):
            active = self._activation_input()
            if active is None:
                raise ValueError("PassRule cannot split relevance between the summands of an addition")
            self.data_input = active
            return super().relevance(rule, record, relevance)
        if self._plain(record) and not isinstance(rule, GradientRule):
            s = relevance / rule.modify_denominator(record.output)
            return [x * s for x in record.inputs]
        if self._plain(record):
            return [relevance, relevance]
        return super().relevance(rule, record, relevance)


class Cat(FunctionStep):
    """Concatenation (``torch.cat``): relevance split by slice (the gradient); the slice of a
    parameter (a class token) is absorbed like a bias."""

    pass_compatible = False
    #: positions of the operands that are parameters or constants (set when the plan is built)
    constant_inputs: frozenset[int] = frozenset()


class Reshape(FunctionStep):
    """Flatten, view, reshape, (un)squeeze, contiguous: the same relevance, reshaped."""

    def default_rule(self, stabilizer: float) -> LRPRule:
        return PassRule()


class Scale(FunctionStep):
    """A product with, or a division by, a constant or a parameter (``x * 2.0``, ``x / 2``,
    ``-x``, ``x * self.scale``): linear, so relevance passes unchanged by default (LRP-0 gives
    the same). `data_input` is the scaled operand."""

    def __init__(self, op: str, target: Any, args: Any, kwargs: dict[str, Any], data_input: int | None = None):
        super().__init__(op, target, args, kwargs)
        if data_input is not None:
            self.data_input = data_input

    def default_rule(self, stabilizer: float) -> LRPRule:
        return PassRule()


class Route(FunctionStep):
    """Permutations and indexing (permute, transpose, ``x[...]``): relevance follows the gradient."""


class Activation(FunctionStep):
    """Element-wise activations (``F.relu``, ``x.relu()``, ``F.gelu``, ``F.silu``, ``F.mish``,
    ``F.hardswish``, dropout, registered activations): relevance passes unchanged (the identity
    rule, as AttnLRP and LXT do for GELU and SiLU)."""

    def default_rule(self, stabilizer: float) -> LRPRule:
        return PassRule()


class MaxPooling(FunctionStep):
    """Functional max pooling: winner takes all (the gradient)."""


class AvgPooling(FunctionStep):
    """Functional average pooling, mean and sum: LRP-0 with the composite's stabilizer."""

    def default_rule(self, stabilizer: float) -> LRPRule:
        return ZeroRule(stabilizer=stabilizer)


class Function(FunctionStep):
    """A function registered with ``LRP_CONFIG.supports_layer``: the gradient by default."""


class Unknown(Function):
    """A function the engine does not know: refused by the model check (the gradient when
    checks are skipped)."""


class Ignored(FunctionStep):
    """Operations whose result carries no relevance (``x.size()``, ``getattr``)."""

    carries_relevance = False

    def needs_graph(self, rule: LRPRule) -> bool:
        return False


FAMILIES: tuple[type[FunctionStep], ...] = (
    Add, Cat, Reshape, Scale, Route, Activation, MaxPooling, AvgPooling, Function
)

GATE_FUNCTIONS: tuple[Any, ...] = (torch.sigmoid, F.sigmoid, F.hardsigmoid, "sigmoid")
"""Sigmoid and hard sigmoid as functions and methods: gates when they only multiply an activation."""

ELEMENTWISE_FUNCTIONS: tuple[Callable[..., Any], ...] = (F.gelu, F.silu, F.mish, F.hardswish)
"""The functional forms of GELU, SiLU, Mish and Hardswish (accepted by the model check)."""

FUNCTION_FAMILIES: dict[Callable[..., Any], type[FunctionStep]] = {
    operator.add: Add,
    operator.iadd: Add,
    torch.add: Add,
    operator.sub: Add,
    operator.isub: Add,
    torch.sub: Add,
    torch.cat: Cat,
    torch.concat: Cat,
    torch.flatten: Reshape,
    torch.unflatten: Reshape,
    torch.ravel: Reshape,
    torch.reshape: Reshape,
    torch.squeeze: Reshape,
    torch.unsqueeze: Reshape,
    operator.mul: Scale,
    operator.imul: Scale,
    operator.truediv: Scale,
    operator.itruediv: Scale,
    operator.neg: Scale,
    torch.mul: Scale,
    torch.multiply: Scale,
    torch.div: Scale,
    torch.divide: Scale,
    torch.true_divide: Scale,
    torch.neg: Scale,
    torch.permute: Route,
    torch.transpose: Route,
    torch.swapaxes: Route,
    torch.movedim: Route,
    operator.getitem: Route,
    F.relu: Activation,
    torch.relu: Activation,
    F.relu6: Activation,
    F.leaky_relu: Activation,
    F.dropout: Activation,
    **dict.fromkeys(ELEMENTWISE_FUNCTIONS, Activation),
    F.max_pool1d: MaxPooling,
    F.max_pool2d: MaxPooling,
    F.max_pool3d: MaxPooling,
    F.adaptive_max_pool1d: MaxPooling,
    F.adaptive_max_pool2d: MaxPooling,
    F.adaptive_max_pool3d: MaxPooling,
    F.avg_pool1d: AvgPooling,
    F.avg_pool2d: AvgPooling,
    F.avg_pool3d: AvgPooling,
    F.adaptive_avg_pool1d: AvgPooling,
    F.adaptive_avg_pool2d: AvgPooling,
    F.adaptive_avg_pool3d: AvgPooling,
    torch.mean: AvgPooling,
    torch.sum: AvgPooling,
    getattr: Ignored,
}

METHOD_FAMILIES: dict[str, type[FunctionStep]] = {
    "add": Add,
    "add_": Add,
    "__add__": Add,
    "sub": Add,
    "sub_": Add,
    "mul": Scale,
    "mul_": Scale,
    "div": Scale,
    "div_": Scale,
    "true_divide": Scale,
    "neg": Scale,
    "view": Reshape,
    "reshape": Reshape,
    "flatten": Reshape,
    "unflatten": Reshape,
    "ravel": Reshape,
    "squeeze": Reshape,
    "unsqueeze": Reshape,
    "contiguous": Reshape,
    "view_as": Reshape,
    "reshape_as": Reshape,
    "permute": Route,
    "transpose": Route,
    "t": Route,
    "swapaxes": Route,
    "swapdims": Route,
    "movedim": Route,
    "relu": Activation,
    "relu_": Activation,
    "mean": AvgPooling,
    "sum": AvgPooling,
    "size": Ignored,
    "dim": Ignored,
    "numel": Ignored,
    "nelement": Ignored,
    "ndimension": Ignored,
}

# -- transformers (issue 21): products of activations and softmax inside a model -----------------


class MatMul(FunctionStep):
    """A matrix product (``@``, ``torch.matmul``, ``bmm``, ``einsum``): AttnLRP's uniform ε-rule by
    default (:class:`~.rules.UniformRule`: each operand that carries relevance gets an equal
    share). `softmax_inputs` are the positions of operands computed from a softmax (set when the
    plan is built), the constants of CP-LRP."""

    pass_compatible = False
    bilinear = True

    def __init__(self, op: str, target: Any, args: Any, kwargs: dict[str, Any]) -> None:
        super().__init__(op, target, args, kwargs)
        self.softmax_inputs: frozenset[int] = frozenset()

    def default_rule(self, stabilizer: float) -> LRPRule:
        return UniformRule(stabilizer)

    def relevance(self, rule: LRPRule, record: FunctionRecord, relevance: Tensor) -> list[Tensor | None]:
        if not isinstance(rule, UniformRule):
            return super().relevance(rule, record, relevance)
        constants = self.softmax_inputs if rule.softmax_constant else frozenset()
        return uniform_shares(record, relevance, rule.stabilizer, constants)


def uniform_shares(
    record: FunctionRecord,
    relevance: Tensor,
    stabilizer: float,
    constants: frozenset[int] | set[int],
    split: bool = True,
) -> list[Tensor | None]:
    """The ε-rule of a product, ``x_i ⊙ J_iᵀ (R / stab(y))`` for each operand that carries relevance and
    is not in `constants`, divided by their number when `split` (AttnLRP's uniform rule)."""
    carriers = [i for i, leaf in enumerate(record.leaves) if leaf is not None and i not in constants]
    shares: list[Tensor | None] = [None] * len(record.inputs)
    if not carriers:
        return shares
    grads = record.vjp(relevance / stabilize(record.output, stabilizer))
    for i in carriers:
        g = grads[i]
        shares[i] = None if g is None else g * record.inputs[i] / (len(carriers) if split else 1)
    return shares


class Softmax(FunctionStep):
    """A softmax inside a model (attention probabilities): AttnLRP's rule by default
    (:class:`~.rules.SoftmaxRule`); CP-LRP stops relevance here (:class:`~.rules.StopRule`).
    A softmax at the model's output is refused by the model check (explain logits)."""

    pass_compatible = False
    softmax = True

    def default_rule(self, stabilizer: float) -> LRPRule:
        return SoftmaxRule()

    @property
    def dim(self) -> int:
        if "dim" in self.kwargs:
            return int(self.kwargs["dim"])
        if len(self.args) > 1 and isinstance(self.args[1], int):
            return self.args[1]
        raise ValueError(f"{self.function_name} without an explicit dim cannot be explained (give dim=...)")

    def needs_graph(self, rule: LRPRule) -> bool:
        return not isinstance(rule, (SoftmaxRule, StopRule, PassRule))

    def relevance(self, rule: LRPRule, record: FunctionRecord, relevance: Tensor) -> list[Tensor | None]:
        shares: list[Tensor | None] = [None] * len(record.inputs)
        if isinstance(rule, StopRule):
            return shares
        if not isinstance(rule, SoftmaxRule):
            return super().relevance(rule, record, relevance)
        x = record.inputs[self.data_input]
        s = record.output.to(relevance.dtype)
        x = torch.where(torch.isfinite(x), x, torch.zeros((), dtype=x.dtype, device=x.device)).to(relevance.dtype)
        shares[self.data_input] = x * (relevance - s * relevance.sum(dim=self.dim, keepdim=True))
        return shares


class Mul(FunctionStep):
    """An element-wise product of two activations (``x * scale`` in squeeze-and-excitation, gated
    MLPs; a product with a constant or a parameter is :class:`Scale`). By default the gate — the
    operand computed through a sigmoid or hard sigmoid (`gate_inputs`, set when the plan is built) —
    is held constant (:class:`~.rules.GateRule`); without one, AttnLRP's uniform split
    (:class:`~.rules.UniformRule`)."""

    pass_compatible = False
    bilinear = True
    elementwise_product = True

    def __init__(self, op: str, target: Any, args: Any, kwargs: dict[str, Any]) -> None:
        super().__init__(op, target, args, kwargs)
        self.gate_inputs: frozenset[int] = frozenset()

    def default_rule(self, stabilizer: float) -> LRPRule:
        return GateRule(stabilizer) if self.gate_inputs else UniformRule(stabilizer)

    def relevance(self, rule: LRPRule, record: FunctionRecord, relevance: Tensor) -> list[Tensor | None]:
        if isinstance(rule, UniformRule):
            return uniform_shares(record, relevance, rule.stabilizer, frozenset())
        if not isinstance(rule, GateRule):
            return super().relevance(rule, record, relevance)
        gates = {rule.gate} if rule.gate is not None else set(self.gate_inputs)
        if not gates:
            raise RuntimeError(
                f"GateRule on {self.function_name}: no operand is computed through a sigmoid or hard sigmoid; "
                "name the gate with GateRule(gate=0 or 1)"
            )
        return uniform_shares(record, relevance, rule.stabilizer, gates, split=False)


class LayerNormFunction(FunctionStep):
    """``F.layer_norm`` called by a model's own code (ConvNeXt's and timm's LayerNorm2d, which permute
    channels last first): :class:`~.rules.LayerNormRule` by default, over the normalized shape's
    dimensions, as for an ``nn.LayerNorm`` module."""

    pass_compatible = False
    layernorm = True

    def default_rule(self, stabilizer: float) -> LRPRule:
        return LayerNormRule(stabilizer=stabilizer or 1e-9)

    @property
    def normalized_ndim(self) -> int:
        shape = self.kwargs.get("normalized_shape", self.args[1] if len(self.args) > 1 else None)
        if isinstance(shape, int):
            return 1
        if isinstance(shape, (tuple, list)):
            return len(shape)
        raise ValueError(f"{self.function_name}: the normalized shape must be given as numbers, got {shape!r}")

    def needs_graph(self, rule: LRPRule) -> bool:
        return not isinstance(rule, (LayerNormRule, PassRule))

    def relevance(self, rule: LRPRule, record: FunctionRecord, relevance: Tensor) -> list[Tensor | None]:
        if not isinstance(rule, LayerNormRule):
            return super().relevance(rule, record, relevance)
        shares: list[Tensor | None] = [None] * len(record.inputs)
        shares[self.data_input] = layer_norm_relevance(
            record.inputs[self.data_input].detach(), relevance, self.normalized_ndim, rule
        )
        return shares


TRANSFORMER_FAMILIES: dict[Callable[..., Any], type[FunctionStep]] = {
    operator.matmul: MatMul,
    torch.matmul: MatMul,
    torch.bmm: MatMul,
    torch.einsum: MatMul,
    F.softmax: Softmax,
    torch.softmax: Softmax,
    F.layer_norm: LayerNormFunction,
    torch.layer_norm: LayerNormFunction,
}
TRANSFORMER_METHODS: dict[str, type[FunctionStep]] = {
    "matmul": MatMul,
    "bmm": MatMul,
    "__matmul__": MatMul,
    "softmax": Softmax,
    "expand": Route,
    "expand_as": Route,
    "to": Reshape,
    "type_as": Reshape,
    "float": Reshape,
}
FUNCTION_FAMILIES.update(TRANSFORMER_FAMILIES)
METHOD_FAMILIES.update(TRANSFORMER_METHODS)
FAMILIES = (*FAMILIES, MatMul, Softmax, LayerNormFunction, Mul)


# In-place forms are run out of place so recorded activations are never overwritten.
OUT_OF_PLACE: dict[Any, Any] = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
}
OUT_OF_PLACE_METHODS = {"add_": "add", "sub_": "sub", "mul_": "mul", "div_": "div", "relu_": "relu"}
# Functions whose output is non-negative whatever the input.
NONNEGATIVE_FUNCTIONS: tuple[Any, ...] = (F.relu, torch.relu, F.relu6, "relu", "relu_")
NEGATING_FUNCTIONS: tuple[Any, ...] = (operator.sub, operator.isub, torch.sub, "sub", "sub_")


def _first_ref(template: Any) -> int | None:
    """Index of the first input placeholder in an argument template (the tensor operated on)."""
    if isinstance(template, Ref):
        return template.index
    if isinstance(template, (tuple, list)):
        for t in template:
            found = _first_ref(t)
            if found is not None:
                return found
    return None


#: functions of other libraries, by module and name (never imported here), that are the identity in
#: eval mode like dropout: torchvision's stochastic depth (ConvNeXt, EfficientNet), traced as a call
DROPOUT_LIKE_FUNCTIONS = frozenset({("torchvision.ops.stochastic_depth", "stochastic_depth")})


def family_of(op: str, target: Any) -> type[FunctionStep] | None:
    """Family of a call_function target or call_method name; None when unsupported."""
    if op == "call_method":
        return METHOD_FAMILIES.get(target)
    family = FUNCTION_FAMILIES.get(target)
    if family is None and (getattr(target, "__module__", None), getattr(target, "__name__", None)) in (
        DROPOUT_LIKE_FUNCTIONS
    ):
        return Activation
    return family


def describe(op: str, target: Any) -> str:
    """``torch.cat``, ``Tensor.view``, ``operator.add``: how a function is named in tables."""
    if op == "call_method":
        return f"Tensor.{target}"
    module = getattr(target, "__module__", "") or ""
    name = getattr(target, "__name__", repr(target))
    module = {"_operator": "operator", "torch._C._nn": "F", "torch.nn.functional": "F"}.get(module, module)
    return f"{module}.{name}" if module and module != "builtins" else name


class FunctionRecord:
    """What the relevance pass needs of one function step: its inputs and output, and (for rules
    that need it) an autograd graph from the tensor inputs to the output."""

    __slots__ = ("graph_output", "inputs", "leaves", "output")

    def __init__(self, inputs: list[Any], output: Any, leaves: list[Tensor | None], graph_output: Tensor | None):
        self.inputs = inputs
        self.output = output
        self.leaves = leaves
        self.graph_output = graph_output

    def vjp(self, grad_output: Tensor) -> list[Tensor | None]:
        """Jᵢᵀ grad_output for every input (None for non-tensor inputs or unused ones)."""
        pairs = [(i, leaf) for i, leaf in enumerate(self.leaves) if leaf is not None]
        if self.graph_output is None or not pairs:
            return [None] * len(self.inputs)
        grads = torch.autograd.grad(
            self.graph_output, [leaf for _, leaf in pairs], grad_output, allow_unused=True, retain_graph=True
        )
        out: list[Tensor | None] = [None] * len(self.inputs)
        for (i, _), g in zip(pairs, grads, strict=True):
            out[i] = g
        return out


def record_function(step: FunctionStep, values: list[Any], rule: LRPRule, keep: list[bool]) -> FunctionRecord:
    """Run `step` on `values`; with an autograd graph from the inputs flagged in `keep` when the
    rule needs one."""
    if not step.needs_graph(rule):
        with torch.no_grad():
            out = step(*values)
        return FunctionRecord(values, out, [None] * len(values), None)
    leaves: list[Tensor | None] = []
    args = []
    for value, wanted in zip(values, keep, strict=True):
        if wanted and isinstance(value, Tensor) and value.is_floating_point():
            leaf = value.detach().requires_grad_(True)
            leaves.append(leaf)
            args.append(leaf)
        else:
            leaves.append(None)
            args.append(value)
    with torch.enable_grad():
        out = step(*args)
    graph_output = out if isinstance(out, Tensor) and out.requires_grad else None
    if isinstance(out, Tensor):
        out = out.detach()
    return FunctionRecord(values, out, leaves, graph_output)
