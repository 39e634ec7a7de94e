"""Pure-PyTorch Layer-wise Relevance Propagation (a port of RelevancePropagation.jl's analyzer).

    from lrp_tasks.engine import LRP, EpsilonPlusFlat, canonize, strip_softmax
    analyzer = LRP(canonize(strip_softmax(model)), EpsilonPlusFlat())
    expl = analyzer(x)          # expl.val: relevance with the input's shape

This package imports only torch (and numpy through torch); never Prefect, Ray, Zarr or pandas.
"""

from .analyzer import LRP, ConservationBreakdown, ConservationWarning, analyze, inference_mode
from .canonize import canonize, canonize_graph, flatten_model, fuse_batchnorm, named_leaf_layers, strip_softmax
from .checks import LRP_CONFIG, LRPConfig, ModelCheckError, SoftmaxOutputError, check_model, check_plan
from .composites import (
    Composite,
    FirstLayerMap,
    FirstLayerTypeMap,
    FirstMatchTypeMap,
    FirstNTypeMap,
    GlobalMap,
    GlobalTypeMap,
    LastLayerMap,
    LastLayerTypeMap,
    LayerMap,
    NameMap,
    Primitive,
    RangeMap,
    RangeTypeMap,
    UnmatchedSelectorError,
)
from .context import LayerContext
from .crp import CRP, IndexedFeatures, TopNFeatures
from .explanation import Explanation
from .functional import (
    Activation,
    Add,
    AvgPooling,
    Cat,
    Function,
    FunctionStep,
    LayerNormFunction,
    MatMul,
    MaxPooling,
    Mul,
    Reshape,
    Route,
    Scale,
    Softmax,
)
from .plan import Plan, Step
from .presets import (
    CPLRP,
    PRESETS,
    AttnLRP,
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
)
from .rules import RULES, InvalidRuleError, LRPRule, RuleLayerMismatchError, register_rule, stabilize
from .selection import TopK
from .tracing import GraphTraceError, build_plan, trace

__all__ = [
    "CPLRP",
    "CRP",
    "LRP",
    "LRP_CONFIG",
    "PRESETS",
    "RULES",
    "Activation",
    "Add",
    "AttnLRP",
    "AvgPooling",
    "Cat",
    "Composite",
    "ConservationBreakdown",
    "ConservationWarning",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
    "EpsilonGammaBox",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "Explanation",
    "FirstLayerMap",
    "FirstLayerTypeMap",
    "FirstMatchTypeMap",
    "FirstNTypeMap",
    "Function",
    "FunctionStep",
    "GlobalMap",
    "GlobalTypeMap",
    "GraphTraceError",
    "IndexedFeatures",
    "InvalidRuleError",
    "LRPConfig",
    "LRPRule",
    "LastLayerMap",
    "LastLayerTypeMap",
    "LayerContext",
    "LayerMap",
    "LayerNormFunction",
    "MatMul",
    "MaxPooling",
    "ModelCheckError",
    "Mul",
    "NameMap",
    "Plan",
    "Primitive",
    "RangeMap",
    "RangeTypeMap",
    "Reshape",
    "Route",
    "RuleLayerMismatchError",
    "Scale",
    "Softmax",
    "SoftmaxOutputError",
    "Step",
    "TopK",
    "TopNFeatures",
    "UnmatchedSelectorError",
    "analyze",
    "build_plan",
    "canonize",
    "canonize_graph",
    "check_model",
    "check_plan",
    "flatten_model",
    "fuse_batchnorm",
    "inference_mode",
    "named_leaf_layers",
    "register_rule",
    "stabilize",
    "strip_softmax",
    "trace",
]

# every rule of the engine's table, under its class name (ZeroRule, EpsilonRule, ...): RULES is the
# one list of rules, so a rule added there is exported without another edit
globals().update({rule.__name__: rule for rule in RULES.values()})
__all__ += sorted(rule.__name__ for rule in RULES.values())
