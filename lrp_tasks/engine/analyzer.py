"""The LRP analyzer: one recorded forward pass, then one relevance pass from the output down.

Per layer, the forward pass keeps the input (and, only where a rule needs the plain layer's
Jacobian and no closed form exists, an autograd graph). The relevance pass hands each layer's
rule its context and the relevance at its output. Model parameters never get gradients, no
hooks are registered, and the user's model is left as it was (eval mode is set only for the
duration of a call and restored)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .canonize import named_leaf_layers
from .checks import LRP_CONFIG, LRPConfig, ModelCheckError, check_model
from .composites import Composite
from .context import LayerContext
from .explanation import Explanation
from .layers import NONNEGATIVE_OUTPUT_TYPES, SIGN_PRESERVING_TYPES, has_weight
from .rules import GeneralizedGammaRule, LRPRule, RuleLayerMismatchError
from .selection import SeedMode, Selection, TopK, output_relevance, resolve_selection

RelevanceHook = Callable[[Tensor], Tensor]


@dataclass
class ForwardRecord:
    """Activations of one analysis: per-layer contexts and the model output."""

    contexts: list[LayerContext]
    output: Tensor


@contextmanager
def inference_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm running stats, no dropout) for the duration of an analysis."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
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
    """Layer-wise Relevance Propagation analyzer for a (nested) ``nn.Sequential`` model.

    ``LRP(model, composite)`` flattens the model (``flatten=False`` to keep the top-level
    children as layers), assigns each layer its rule, and runs the model checks
    (``skip_checks=True`` to opt out). Call it on a batch: ``analyzer(x)`` or
    ``analyze(x, analyzer, selection)``."""

    name = "LRP"

    def __new__(cls, model: nn.Module, *args: object, **kwargs: object) -> LRP:
        """Models that are not ``nn.Sequential`` are analyzed on their torch.fx graph."""
        if cls is LRP and not isinstance(model, nn.Sequential):
            from .graph import GraphLRP

            return super().__new__(GraphLRP)
        return super().__new__(cls)

    def __init__(
        self,
        model: nn.Module,
        composite: Composite | None = None,
        *,
        flatten: bool = True,
        skip_checks: bool = False,
        config: LRPConfig = LRP_CONFIG,
    ) -> None:
        if flatten:
            self.named_layers = list(named_leaf_layers(model))
        else:
            self.named_layers = list(model.named_children())
        self.model = nn.Sequential(*(layer for _, layer in self.named_layers))
        self._assign_rules(composite)
        if not skip_checks:
            check_model(list(named_leaf_layers(model)), config)
            self._check_leaky_relu()
        self._check_rules()
        self._nonnegative_inputs = self._static_signs()
        self._nonnegative_outputs = [*self._nonnegative_inputs[1:], self._output_sign()]
        self._memos: list[dict] = [{} for _ in self.named_layers]

    # -- construction checks ----------------------------------------------------------------
    def _assign_rules(self, composite: Composite | None) -> None:
        """The composite's rule for each of ``self.named_layers`` (ZeroRule everywhere by default)."""
        self.composite = composite if composite is not None else Composite(name="default: ZeroRule")
        self.rules = self.composite.assign(self.named_layers)

    @property
    def layer_names(self) -> list[str]:
        return [name for name, _ in self.named_layers]

    def _check_rules(self) -> None:
        for i, ((name, layer), rule) in enumerate(zip(self.named_layers, self.rules, strict=True)):
            if not rule.is_compatible(layer):
                raise RuleLayerMismatchError(
                    f"{rule!r} cannot be applied to layer {i} '{name}' ({type(layer).__name__}): "
                    f"{_why_incompatible(rule, layer)}. Assign another rule to this layer in the composite."
                )

    def _check_leaky_relu(self) -> None:
        for i, (name, layer) in enumerate(self.named_layers):
            if not isinstance(layer, nn.LeakyReLU):
                continue
            nxt = next((j for j in range(i + 1, len(self.named_layers)) if has_weight(self.named_layers[j][1])), None)
            if nxt is not None and not isinstance(self.rules[nxt], GeneralizedGammaRule):
                raise ModelCheckError(
                    f"LeakyReLU at layer {i} '{name}' lets negative activations through; the next weighted layer "
                    f"{nxt} '{self.named_layers[nxt][0]}' must use GeneralizedGammaRule (got {self.rules[nxt]!r}), "
                    "or skip checks with skip_checks=True."
                )

    def _static_signs(self) -> list[bool]:
        """Which layer inputs are non-negative by construction (after ReLU, pooling of ReLU...)."""
        flags, nonnegative = [], False
        for _, layer in self.named_layers:
            flags.append(nonnegative)
            if isinstance(layer, NONNEGATIVE_OUTPUT_TYPES):
                nonnegative = True
            elif not isinstance(layer, SIGN_PRESERVING_TYPES):
                nonnegative = False
        return flags

    def _output_sign(self) -> bool:
        if not self.named_layers:
            return False
        last = self.named_layers[-1][1]
        if isinstance(last, NONNEGATIVE_OUTPUT_TYPES):
            return True
        return isinstance(last, SIGN_PRESERVING_TYPES) and self._nonnegative_inputs[-1]

    # -- passes -----------------------------------------------------------------------------
    def forward_record(self, x: Tensor, stop: int | None = None) -> ForwardRecord:
        """Run layers [0, stop) keeping what each rule needs."""
        contexts: list[LayerContext] = []
        a = x
        layers = self.named_layers[:stop] if stop is not None else self.named_layers
        with torch.no_grad():
            for i, (name, layer) in enumerate(layers):
                rule = self.rules[i]
                if getattr(layer, "inplace", False):
                    a = a.clone()
                ctx = LayerContext(
                    layer, a, a, self._nonnegative_inputs[i], name=name, index=i, memo=self._memos[i],
                    output_nonnegative=self._nonnegative_outputs[i],
                )
                if rule.needs_graph(layer):
                    leaf = a.detach().requires_grad_(True)
                    with torch.enable_grad():
                        out = layer(leaf)
                    ctx.input, ctx.graph_output = leaf, out
                    a = out.detach()
                else:
                    a = layer(a)
                ctx.output = a
                contexts.append(ctx)
        return ForwardRecord(contexts, a)

    def relevance_pass(
        self,
        record: ForwardRecord,
        relevance: Tensor,
        *,
        keep_layerwise: bool = False,
        start: int | None = None,
        stop: int = 0,
        hooks: dict[int, RelevanceHook] | None = None,
    ) -> tuple[Tensor, list[Tensor] | None]:
        """Relevance at boundary `stop` from relevance at boundary `start` (default: the output).

        Boundary i is the input of layer i; hooks[i] may rewrite the relevance there (CRP)."""
        start = len(record.contexts) if start is None else start
        kept: list[Tensor] = [relevance] if keep_layerwise else []
        hooks = hooks or {}
        for i in range(start - 1, stop - 1, -1):
            relevance = self.rules[i].relevance(record.contexts[i], relevance)
            if i in hooks:
                relevance = hooks[i](relevance)
            if keep_layerwise:
                kept.append(relevance)
        return relevance, (kept[::-1] if keep_layerwise else None)

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
            if logits.dim() != 2:
                raise ValueError(f"model output must be (batch, classes), got shape {tuple(logits.shape)}")
            check_finite(logits, "model output")
            if k > 1:
                index = logits[::k].topk(k, dim=1).indices.reshape(-1)
            else:
                index = resolve_selection(selection, logits)
            seed_relevance = output_relevance(logits.detach(), index, seed)
            val, layerwise = self.relevance_pass(record, seed_relevance, keep_layerwise=layerwise_relevances)
        extras = {"seed": seed}
        if isinstance(layerwise, dict):
            extras["layerwise_relevances"] = {name: _unflatten_k(r, k) for name, r in layerwise.items()}
        elif layerwise is not None:
            extras["layerwise_relevances"] = [_unflatten_k(r, k) for r in layerwise]
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

    def relevance_by_layer(self, expl: Explanation) -> dict[str, Tensor]:
        """Relevance at the output of each named layer, from ``analyze(..., layerwise_relevances=True)``."""
        layerwise = expl.layerwise_relevances
        if layerwise is None:
            raise ValueError("the explanation has no layerwise relevances: analyze with layerwise_relevances=True")
        return {name: layerwise[i + 1] for i, name in enumerate(self.layer_names)}

    def __repr__(self) -> str:
        width = max((len(f"{n}: {_short(layer)}") for n, layer in self.named_layers), default=0)
        lines = [
            f"  {f'{name}: {_short(layer)}':<{width}} => {rule!r},"
            for (name, layer), rule in zip(self.named_layers, self.rules, strict=True)
        ]
        return "LRP(\n" + "\n".join(lines) + "\n)"


def _unflatten_k(t: Tensor, k: int) -> Tensor:
    return t.reshape(-1, k, *t.shape[1:]) if k > 1 else t


def _short(layer: nn.Module) -> str:
    text = repr(layer)
    return text if "\n" not in text else f"{type(layer).__name__}(...)"


def _why_incompatible(rule: LRPRule, layer: nn.Module) -> str:
    if not has_weight(layer):
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


def named_layers_of(model: nn.Module) -> Sequence[tuple[str, nn.Module]]:
    """The flattened, named layers an analyzer of `model` would see."""
    return list(named_leaf_layers(model))
