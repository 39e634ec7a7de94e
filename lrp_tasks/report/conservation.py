"""Why an audit's explanations break conservation, read from the rules as assigned.

The store keeps the analyzer's printout (every step with its rule). A layer with a bias whose rule
keeps it (no ``zero_bias=True``; after BatchNorm fusion every convolution has one) absorbs
relevance, so a biased model explained with such rules never conserves exactly; the report says so
instead of suspecting an unsupported layer. ``LRP.conservation_breakdown(x)`` measures the share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ROW = re.compile(
    r"^\s*(?P<name>[^:\s][^:]*): (?P<layer>\w+)\((?P<args>.*)\)\s*=> (?P<rule>\w+)\((?P<rule_args>.*)\),?$"
)
#: rules that never let a bias absorb relevance (they zero it or do not use it)
_BIAS_FREE_RULES = frozenset({"PassRule", "GradientRule", "FlatRule", "WSquareRule"})


@dataclass(frozen=True)
class BiasTerms:
    """Weighted layers of the printout, and those whose bias the rule keeps."""

    weighted: list[str]
    keeping: list[str]


def bias_terms(composite: str) -> BiasTerms:
    """The weighted layers (Linear, convolutions) of an analyzer printout and those whose rules keep a bias."""
    weighted, keeping = [], []
    for line in composite.splitlines():
        row = _ROW.match(line)
        if row is None or not ("in_features" in row["args"] or "kernel_size" in row["args"]):
            continue
        weighted.append(row["name"].strip())
        has_bias = "bias=False" not in row["args"]
        keeps = row["rule"] not in _BIAS_FREE_RULES and "zero_bias=True" not in row["rule_args"]
        if has_bias and keeps:
            keeping.append(row["name"].strip())
    return BiasTerms(weighted, keeping)


def conservation_cause(composite: str) -> str:
    """One sentence on the likely cause of broken conservation, for the report's warning."""
    terms = bias_terms(composite)
    if terms.keeping:
        names = ", ".join(terms.keeping[:4]) + (", …" if len(terms.keeping) > 4 else "")
        return (
            f"Cause: {len(terms.keeping)} of {len(terms.weighted)} weighted layers have a bias that their rule keeps "
            f"({names}; a BatchNorm fused into a layer is a bias too), and biases absorb relevance — expected for "
            "this model and composite, not a sign of an unsupported layer. Rules with zero_bias=True conserve it; "
            "LRP(model, composite).conservation_breakdown(x) gives the biases' share per sample."
        )
    return (
        "No layer keeps a bias, so biases do not explain it: stabilizers absorb a little, but a large share "
        "suggests an unsupported layer or rule (LRP(model, composite).conservation_breakdown(x) names the steps "
        "where relevance is lost)."
    )
