"""Pure-PyTorch Layer-wise Relevance Propagation (a port of RelevancePropagation.jl's analyzer).

    from lrp_tasks.engine import LRP, EpsilonPlusFlat, canonize, strip_softmax
    analyzer = LRP(canonize(strip_softmax(model)), EpsilonPlusFlat())
    expl = analyzer(x)          # expl.val: relevance with the input's shape

This package imports only torch (and numpy through torch); never Prefect, Ray, Zarr or pandas.
"""

from .analyzer import LRP, analyze, inference_mode
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
    MaxPooling,
    Reshape,
    Route,
)
from .plan import Plan, Step
from .presets import (
    PRESETS,
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
)
from .rules import (
    RULES,
    AlphaBetaRule,
    EpsilonRule,
    FlatRule,
    GammaRule,
    GeneralizedGammaRule,
    GradientRule,
    InvalidRuleError,
    LayerNormRule,
    LRPRule,
    PassRule,
    RuleLayerMismatchError,
    WSquareRule,
    ZBoxRule,
    ZeroRule,
    ZPlusRule,
    stabilize,
)
from .selection import TopK
from .tracing import GraphTraceError, build_plan, trace

__all__ = [
    "CRP",
    "LRP",
    "LRP_CONFIG",
    "PRESETS",
    "RULES",
    "Activation",
    "Add",
    "AlphaBetaRule",
    "AvgPooling",
    "Cat",
    "Composite",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
    "EpsilonGammaBox",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "EpsilonRule",
    "Explanation",
    "FirstLayerMap",
    "FirstLayerTypeMap",
    "FirstMatchTypeMap",
    "FirstNTypeMap",
    "FlatRule",
    "Function",
    "FunctionStep",
    "GammaRule",
    "GeneralizedGammaRule",
    "GlobalMap",
    "GlobalTypeMap",
    "GradientRule",
    "GraphTraceError",
    "IndexedFeatures",
    "InvalidRuleError",
    "LRPConfig",
    "LRPRule",
    "LastLayerMap",
    "LastLayerTypeMap",
    "LayerContext",
    "LayerMap",
    "LayerNormRule",
    "MaxPooling",
    "ModelCheckError",
    "NameMap",
    "PassRule",
    "Plan",
    "Primitive",
    "RangeMap",
    "RangeTypeMap",
    "Reshape",
    "Route",
    "RuleLayerMismatchError",
    "SoftmaxOutputError",
    "Step",
    "TopK",
    "TopNFeatures",
    "UnmatchedSelectorError",
    "WSquareRule",
    "ZBoxRule",
    "ZPlusRule",
    "ZeroRule",
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
    "stabilize",
    "strip_softmax",
    "trace",
]
