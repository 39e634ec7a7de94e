"""The LRP analyzer: one recorded forward pass over a model's plan, then one relevance pass back.

Any model is lowered onto a plan (``plan.py``: a chain for ``nn.Sequential``, the torch.fx graph
otherwise); every step gets its rule from the composite. The forward pass keeps, per step, what
its rule needs (the input, and an autograd graph only where no closed form exists). The relevance
pass walks the steps backwards, handing each step's relevance to the steps it consumed (a value
used twice sums what comes back), and can start or stop at any step (CRP). Model parameters never
get gradients, no hooks are registered, and the user's model is left as it was (eval mode is set
only for the duration of a call and restored; in-place layers run on copies)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .checks import LRP_CONFIG, LRPConfig, check_plan
from .composites import Composite
from .context import LayerContext
from .explanation import Explanation
from .functional import Add, Cat, FunctionRecord, FunctionStep, Ignored, record_function
from .plan import CONSTANT, FUNCTION, INPUT, LAYER, Plan, Step
from .rules import GradientRule, LRPRule, PassRule, RuleLayerMismatchError
from .selection import SeedMode, Selection, TopK, output_relevance, resolve_selection
from .tracing import build_plan


class ConservationWarning(UserWarning):
    """The input relevance of an analysis is far from what was seeded at the output."""


@dataclass
class ForwardRecord:
    """What one analysis recorded: per layer step its context, per function step its record."""

    contexts: dict[int, LayerContext]
    functions: dict[int, FunctionRecord]
    output: Tensor
    last: int
    """The last step recorded (the whole plan unless the pass was stopped early)."""
    values: dict[int, Any] = field(default_factory=dict)


@contextmanager
def inference_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm running stats, no dropout) for the duration of an analysis."""
    modes = [(m, m.training) for m in model.modules()]
    for module, _ in modes:  # not model.eval(): exported programs refuse it, their graph is fixed
        module.training = False
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def check_finite(x: Tensor, what: str) -> None:
    """Refuse NaN/inf with the index of the first offending sample.

    A single reduction decides the common case; the element-wise scan runs only on failure."""
    if bool(torch.isfinite(x.sum())):  # an overflowing sum of finite values falls through to the scan
        return
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = (~finite).flatten(start_dim=1).any(dim=1).nonzero().flatten()
        raise ValueError(f"{what} contains NaN or inf values (sample {bad[0].item()}, {bad.numel()} samples in all)")


class LRP:
    """Layer-wise Relevance Propagation analyzer for any model.

    ``LRP(model, composite)`` lowers the model onto a plan (an ``nn.Sequential`` is flattened;
    ``flatten=False`` keeps its top-level children as layers; other models are traced with
    torch.fx), assigns every step its rule, and runs the model checks (``skip_checks=True`` to opt
    out). Call it on a batch: ``analyzer(x)`` or ``analyze(x, analyzer, selection)``.

    An analysis whose input relevance differs from the seeded output relevance by more than
    `conservation_tolerance` (relative, per sample) warns with a :class:`ConservationWarning`
    that gives the figure (biases and stabilizers absorb relevance; rules with ``zero_bias=True``
    conserve); ``None`` turns the check off."""

    name = "LRP"

    def __init__(
        self,
        model: nn.Module,
        composite: Composite | None = None,
        *,
        flatten: bool = True,
        skip_checks: bool = False,
        config: LRPConfig = LRP_CONFIG,
        conservation_tolerance: float | None = 0.05,
    ) -> None:
        self.plan: Plan = build_plan(model, flatten=flatten, config=config)
        self.conservation_tolerance = conservation_tolerance
        self._warned_conservation = False
        self.model = model
        self.composite = composite if composite is not None else Composite(name="default: ZeroRule")
        targets = [i for i, s in enumerate(self.plan.steps) if s.kind in (LAYER, FUNCTION)]
        assigned = self.composite.assign([self.plan.steps[i] for i in targets])
        self.step_rules: list[LRPRule | None] = [None] * len(self.plan)
        for i, rule in zip(targets, assigned, strict=True):
            self.step_rules[i] = rule
        self._layer_steps = [i for i, s in enumerate(self.plan.steps) if s.is_layer]
        self._layer_position = {i: k for k, i in enumerate(self._layer_steps)}
        if not skip_checks:
            check_plan(self.plan, self.step_rules, config)
        self._check_rules()
        self._memos: dict[int, dict] = {i: {} for i in self._layer_steps}

    # -- what the analyzer sees -------------------------------------------------------------
    @property
    def named_layers(self) -> list[tuple[str, nn.Module]]:
        """(module name, module) of every layer step, in execution order."""
        return [(self.plan.steps[i].module_name, self.plan.steps[i].module) for i in self._layer_steps]

    @property
    def layer_names(self) -> list[str]:
        return [name for name, _ in self.named_layers]

    @property
    def rules(self) -> list[LRPRule]:
        """The rule of every layer step (``step_rules`` has those of every step)."""
        return [self.step_rules[i] for i in self._layer_steps]  # type: ignore[misc]

    def step_of(self, layer: int | str) -> int:
        """The plan step of a layer position, a step or module name, or a container (``layer2``:
        the step that gives its output)."""
        if isinstance(layer, int):
            n = len(self._layer_steps)
            if not -n <= layer < n:
                raise ValueError(f"layer index {layer} out of range for {n} layers")
            return self._layer_steps[layer]
        found = self.plan.output_of(layer)
        if found is None:
            raise ValueError(f"no layer named {layer!r}; layers are {self.layer_names}")
        return found

    def knows(self, name: str) -> bool:
        """Whether `name` is a step, a layer or a container of the model."""
        return self.plan.output_of(name) is not None

    # -- construction checks ----------------------------------------------------------------
    def _check_rules(self) -> None:
        for i, step in enumerate(self.plan.steps):
            rule = self.step_rules[i]
            if rule is None or isinstance(step.module, Ignored) or rule.is_compatible(step.module):
                continue
            if step.is_layer:
                position = self._layer_steps.index(i)
                where = f"layer {position} '{step.name}' ({type(step.module).__name__})"
                why = _why_incompatible(step.module)
            else:
                where = f"step '{step.name}' ({type(step.module).__name__}: {step.module.function_name})"
                why = "functional operations take rules without weights (Zero, Epsilon, Gradient, Pass)"
            raise RuleLayerMismatchError(
                f"{rule!r} cannot be applied to {where}: {why}. Assign another rule to it in the composite."
            )

    # -- passes -----------------------------------------------------------------------------
    def forward_record(self, x: Tensor, stop: int | None = None) -> ForwardRecord:
        """Run steps [0, stop] (all by default) keeping what each rule needs."""
        steps = self.plan.steps
        last = len(steps) - 1 if stop is None else stop
        env: list[Any] = [None] * len(steps)
        contexts: dict[int, LayerContext] = {}
        functions: dict[int, FunctionRecord] = {}
        with torch.no_grad():
            for i in range(last + 1):
                step = steps[i]
                if step.kind == INPUT:
                    env[i] = x
                elif step.kind == CONSTANT:
                    env[i] = _fetch(step)
                elif step.kind == LAYER:
                    env[i], contexts[i] = self._run_layer(i, step, env[step.inputs[0]])
                else:
                    keep = [steps[j].carries_relevance for j in step.inputs]
                    values = [env[j] for j in step.inputs]
                    rec = record_function(step.module, values, self.step_rules[i], keep)  # type: ignore[arg-type]
                    env[i], functions[i] = rec.output, rec
        output = env[self.plan.output] if stop is None else env[last]
        return ForwardRecord(contexts, functions, output, last)

    def _run_layer(self, i: int, step: Step, a: Tensor) -> tuple[Tensor, LayerContext]:
        layer, rule = step.module, self.step_rules[i]
        inplace = bool(getattr(layer, "inplace", False))  # never let a layer overwrite a recorded value
        ctx = LayerContext(
            layer,
            a,
            a,
            step.input_nonnegative,
            name=step.name,
            index=self._layer_position[i],
            memo=self._memos[i],
            output_nonnegative=step.output_nonnegative,
        )
        if rule.needs_graph(layer):  # type: ignore[union-attr]
            leaf = a.detach().requires_grad_(True)
            with torch.enable_grad():
                out = layer(leaf.clone() if inplace else leaf)
            ctx.input, ctx.graph_output = leaf, out
            out = out.detach()
        else:
            out = layer(a.clone() if inplace else a)
        ctx.output = out
        return out, ctx

    def propagate(
        self,
        record: ForwardRecord,
        pending: dict[int, Tensor],
        *,
        until: int = 0,
        kept: dict[str, Tensor] | None = None,
        gaps: dict[int, Tensor] | None = None,
    ) -> dict[int, Tensor]:
        """Hand relevance back through every step after `until`, from the last.

        `pending` maps steps to the relevance at their output; the result holds the relevance
        that reached steps at or before `until` (``result[until]`` is complete there, since every
        consumer of a step comes after it). `kept` collects the relevance at each step's output;
        `gaps` the relevance each step did not hand on, per sample (Σ R_out − Σ R_in: what its
        biases, constants and stabilizer absorbed), so the total conservation gap is their sum."""
        pending = dict(pending)
        batch = next(iter(pending.values())).shape[0]
        for i in range(max(pending), until, -1):
            relevance = pending.pop(i, None)
            if relevance is None:
                continue
            step = self.plan.steps[i]
            if kept is not None:
                kept[step.name] = relevance
            shares = self._distribute(i, step, record, relevance)
            if gaps is not None:
                gaps[i] = _gap(relevance, [share for _, share in shares], batch)
            for j, share in shares:
                pending[j] = share if j not in pending else pending[j] + share
        return pending

    def _distribute(self, i: int, step: Step, record: ForwardRecord, relevance: Tensor) -> list[tuple[int, Tensor]]:
        """Relevance handed from step i to each step it consumed."""
        rule = self.step_rules[i]
        if step.kind == LAYER:
            return [(step.inputs[0], rule.relevance(record.contexts[i], relevance))]  # type: ignore[union-attr]
        if step.kind != FUNCTION or not step.carries_relevance:
            return []
        fn: FunctionStep = step.module  # type: ignore[assignment]
        shares = fn.relevance(rule, record.functions[i], relevance)  # type: ignore[arg-type]
        return [
            (j, share)
            for j, share in zip(step.inputs, shares, strict=True)
            if share is not None and self.plan.steps[j].carries_relevance
        ]

    def relevance_pass(
        self,
        record: ForwardRecord,
        relevance: Tensor,
        *,
        keep_layerwise: bool = False,
        start: int | None = None,
        stop: int = 0,
        gaps: dict[int, Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Relevance at the output of step `stop` (default: the input) from relevance at the output
        of step `start` (default: the model output), and optionally at every step in between (and
        each step's conservation gap into `gaps`, see :meth:`propagate`)."""
        start = self.plan.output if start is None else start
        kept: dict[str, Tensor] | None = {} if keep_layerwise else None
        pending = self.propagate(record, {start: relevance}, until=stop, kept=kept, gaps=gaps)
        result = pending.get(stop)
        if result is None:
            raise RuntimeError(f"no relevance reached step {self.plan.steps[stop].name!r}")
        if kept is not None:
            kept[self.plan.steps[stop].name] = result
            kept = dict(reversed(list(kept.items())))
        return result, kept

    # -- public API -------------------------------------------------------------------------
    def analyze(
        self,
        x: Tensor,
        selection: Selection = None,
        *,
        layerwise_relevances: bool = False,
        seed: SeedMode = "one-hot",
    ) -> Explanation:
        """Explain a batch. See :func:`analyze`."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError("input must be a floating-point torch.Tensor (batch-first)")
        check_finite(x, "input")
        k = selection.k if isinstance(selection, TopK) else 1
        xin = x.repeat_interleave(k, dim=0) if k > 1 else x
        with inference_mode(self.model):
            record = self.forward_record(xin)
            logits = record.output
            if not isinstance(logits, Tensor) or logits.dim() != 2:
                shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
                raise ValueError(f"model output must be (batch, classes), got {shape}")
            check_finite(logits, "model output")
            if k > 1:
                index = logits[::k].topk(k, dim=1).indices.reshape(-1)
            else:
                index = resolve_selection(selection, logits)
            seed_relevance = output_relevance(logits.detach(), index, seed)
            checking = self.conservation_tolerance is not None and not self._warned_conservation
            gaps: dict[int, Tensor] | None = {} if checking else None
            val, layerwise = self.relevance_pass(
                record, seed_relevance, keep_layerwise=layerwise_relevances, gaps=gaps
            )
            if gaps is not None:
                self._check_conservation(val, seed_relevance, gaps)
        extras: dict[str, Any] = {"seed": seed}
        if layerwise is not None:
            extras["layerwise_relevances"] = {name: _unflatten_k(r, k) for name, r in layerwise.items()}
        output = logits.detach()[::k] if k > 1 else logits.detach()
        return Explanation(
            val=_unflatten_k(val.detach(), k),
            input=x,
            output=output,
            output_selection=index.reshape(-1, k) if k > 1 else index,
            analyzer=self.name,
            extras=extras,
        )

    __call__ = analyze

    def _check_conservation(self, val: Tensor, seeded: Tensor, gaps: dict[int, Tensor]) -> None:
        """Warn (once per analyzer), with the figure and its cause, when the input relevance is far
        from the seeded relevance."""
        if self.conservation_tolerance is None or self._warned_conservation:
            return
        want = seeded.sum(dim=1)
        got = val.detach().flatten(start_dim=1).sum(dim=1)
        gap = (got - want).abs() / want.abs().clamp_min(torch.finfo(want.dtype).tiny)
        bad = gap > self.conservation_tolerance
        if bool(bad.any()):
            self._warned_conservation = True
            worst = int(gap.argmax())
            warnings.warn(
                f"LRP conservation: the input relevance of {int(bad.sum())} of {len(gap)} samples differs from the "
                f"explained output by more than {self.conservation_tolerance:.0%} (worst: sample {worst}, "
                f"{got[worst].item():.4g} for {want[worst].item():.4g}, a gap of {gap[worst].item():.1%}). "
                f"{self.breakdown(gaps).explain()} "
                "Shown once per analyzer; LRP(..., conservation_tolerance=None) silences it.",
                ConservationWarning,
                stacklevel=3,
            )

    def absorbs_bias(self, i: int) -> bool:
        """Whether step i lets a bias or a constant absorb relevance: a layer with a non-zero bias
        (a convolution after BatchNorm fusion has one) whose rule keeps it, or an addition of a
        constant or a parameter."""
        step, rule = self.plan.steps[i], self.step_rules[i]
        if step.kind == LAYER:
            bias = getattr(step.module, "bias", None)
            keeps = not getattr(rule, "zero_bias", False) and not isinstance(rule, (PassRule, GradientRule))
            return isinstance(bias, Tensor) and keeps and bool(bias.detach().ne(0).any())
        if step.kind == FUNCTION and isinstance(step.module, (Add, Cat)):
            numbers = isinstance(step.module, Add) and any(
                isinstance(a, (int, float)) and a != 0 for a in step.module.args
            )
            return numbers or any(not self.plan.steps[j].from_input for j in step.inputs)
        return False

    def breakdown(self, gaps: dict[int, Tensor]) -> ConservationBreakdown:
        """The conservation gaps of :meth:`propagate`, split into what biases and constants absorbed
        and what other steps lost (stabilizers, gradients, rules that drop relevance)."""
        zero = next(iter(gaps.values())).new_zeros(()) if gaps else torch.zeros(())
        biased = [i for i in gaps if self.absorbs_bias(i)]
        others = {self.plan.steps[i].name: gaps[i] for i in gaps if i not in biased}
        return ConservationBreakdown(
            biases=sum((gaps[i] for i in biased), start=zero),
            other=sum(others.values(), start=zero),
            bias_steps=[self.plan.steps[i].name for i in sorted(biased)],
            other_steps=others,
        )

    def conservation_breakdown(
        self, x: Tensor, selection: Selection = None, *, seed: SeedMode = "one-hot"
    ) -> ConservationBreakdown:
        """Explain `x` and split each sample's conservation gap (seeded − Σ R_in) into the relevance
        absorbed by biases and constants and that lost elsewhere (:class:`ConservationBreakdown`)."""
        with inference_mode(self.model):
            record = self.forward_record(x)
            index = resolve_selection(selection, record.output)
            seeded = output_relevance(record.output.detach(), index, seed)
            gaps: dict[int, Tensor] = {}
            self.relevance_pass(record, seeded, gaps=gaps)
        return self.breakdown(gaps)

    def relevance_by_layer(self, expl: Explanation, names: list[str] | None = None) -> dict[str, Tensor]:
        """Relevance at the output of each layer by module name (a module used twice: its last
        use), from ``analyze(..., layerwise_relevances=True)``; with `names`, of those layers,
        steps or containers (``layer4``: the output of its last step)."""
        layerwise = expl.layerwise_relevances
        if layerwise is None:
            raise ValueError("the explanation has no layerwise relevances: analyze with layerwise_relevances=True")
        if names is not None:
            steps = {name: self.plan.steps[self.step_of(name)].name for name in names}
            return {name: layerwise[step] for name, step in steps.items() if step in layerwise}
        return {
            self.plan.steps[i].module_name: layerwise[self.plan.steps[i].name]
            for i in self._layer_steps
            if self.plan.steps[i].name in layerwise
        }

    def __repr__(self) -> str:
        rows = []
        for i, step in enumerate(self.plan.steps):
            if step.kind == LAYER:
                rows.append((f"{step.name}: {_short(step.module)}", self.step_rules[i]))
            elif step.kind == FUNCTION and not isinstance(step.module, Ignored):
                where = f" [{step.scope}]" if step.scope else ""
                rows.append((f"{step.name}: {step.module.function_name}{where}", self.step_rules[i]))
        width = max((len(label) for label, _ in rows), default=0)
        return "LRP(\n" + "\n".join(f"  {label:<{width}} => {rule!r}," for label, rule in rows) + "\n)"


@dataclass
class ConservationBreakdown:
    """Per sample, where the relevance missing at the input went (seeded − Σ R_in = biases + other)."""

    biases: Tensor
    """absorbed by the biases of layers whose rules keep them, and by constants added"""
    other: Tensor
    """lost at the other steps: stabilizers, gradient steps, rules that drop relevance"""
    bias_steps: list[str]
    other_steps: dict[str, Tensor]

    @property
    def bias_share(self) -> float:
        """The biases' share of the total absolute gap over the samples (0 … 1)."""
        total = float(self.biases.abs().sum() + self.other.abs().sum())
        return float(self.biases.abs().sum()) / total if total > 0 else 0.0

    def explain(self) -> str:
        """One sentence on the cause, for a warning or a report."""
        share = self.bias_share
        if self.bias_steps and share >= 0.5:
            names = ", ".join(self.bias_steps[:4]) + (", ..." if len(self.bias_steps) > 4 else "")
            return (
                f"{share:.0%} of the gap is relevance absorbed by bias terms ({len(self.bias_steps)} steps: {names}; "
                "a BatchNorm fused into a layer is a bias too): expected with biases, not a sign of an unsupported "
                "layer; rules with zero_bias=True conserve it."
            )
        worst = sorted(self.other_steps.items(), key=lambda kv: -float(kv[1].abs().sum()))[:3]
        names = ", ".join(name for name, _ in worst)
        return (
            f"Bias terms account for {share:.0%} of the gap; the rest is lost at {names} (stabilizers, a gradient "
            "step that passes less relevance, or a rule that drops it): check the rules assigned there."
        )


def _gap(relevance: Tensor, shares: list[Tensor], batch: int) -> Tensor:
    """Σ R_out − Σ R_in per sample. A step that moves the batch axis (the permute before timm's
    ``qkv.unbind(0)``) only routes relevance: its values are not per sample, and its gap is 0."""
    if any(t.dim() == 0 or t.shape[0] != batch for t in [relevance, *shares]):
        return relevance.new_zeros(batch)
    return _per_sample(relevance) - sum((_per_sample(share) for share in shares), start=0.0)


def _per_sample(t: Tensor) -> Tensor:
    return t.detach().flatten(start_dim=1).sum(dim=1)


def _fetch(step: Step) -> Any:
    owner, path = step.value
    obj: Any = owner
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj.detach() if isinstance(obj, Tensor) else obj


def _unflatten_k(t: Tensor, k: int) -> Tensor:
    return t.reshape(-1, k, *t.shape[1:]) if k > 1 else t


def _short(layer: nn.Module) -> str:
    text = repr(layer)
    return text if "\n" not in text else f"{type(layer).__name__}(...)"


def _why_incompatible(layer: nn.Module) -> str:
    if not isinstance(getattr(layer, "weight", None), Tensor):
        return "the rule modifies weights and this layer has none"
    return "the rule does not support this layer type"


def analyze(
    x: Tensor,
    analyzer: LRP,
    selection: Selection = None,
    *,
    layerwise_relevances: bool = False,
    seed: SeedMode = "one-hot",
) -> Explanation:
    """Explain a batch `x` (N, ...) with `analyzer`.

    selection: None (the max output per sample), an int (that class for every sample), a
    sequence/tensor of ints (one class per sample) or ``TopK(k)`` (k explanations per sample).
    seed: "one-hot" puts relevance 1 at the selected output (relevances sum to ≈1); "logit"
    puts the logit's value there (zennit-crp, captum). Returns an :class:`Explanation`."""
    return analyzer.analyze(x, selection, layerwise_relevances=layerwise_relevances, seed=seed)

