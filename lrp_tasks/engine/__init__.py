"""Pure-PyTorch Layer-wise Relevance Propagation (a port of RelevancePropagation.jl's analyzer).

    from lrp_tasks.engine import LRP, EpsilonPlusFlat, canonize, strip_softmax
    analyzer = LRP(canonize(strip_softmax(model)), EpsilonPlusFlat())
    expl = analyzer(x)          # expl.val: relevance with the input's shape

This package imports only torch (and numpy through torch); never Prefect, Ray, Zarr or pandas.
"""

from .analyzer import LRP, analyze, inference_mode
from .canonize import canonize, flatten_model, fuse_batchnorm, named_leaf_layers, strip_softmax
from .checks import LRP_CONFIG, LRPConfig, ModelCheckError, SoftmaxOutputError, check_model
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
)
from .context import LayerContext
from .crp import CRP, IndexedFeatures, TopNFeatures
from .explanation import Explanation
from .graph import GraphLRP, GraphTraceError, canonize_graph, trace
from .presets import (
    PRESETS,
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
)
from .rules import (
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

__all__ = [
    "CRP",
    "LRP",
    "LRP_CONFIG",
    "PRESETS",
    "AlphaBetaRule",
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
    "GammaRule",
    "GeneralizedGammaRule",
    "GlobalMap",
    "GlobalTypeMap",
    "GradientRule",
    "GraphLRP",
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
    "ModelCheckError",
    "NameMap",
    "PassRule",
    "Primitive",
    "RangeMap",
    "RangeTypeMap",
    "RuleLayerMismatchError",
    "SoftmaxOutputError",
    "TopK",
    "TopNFeatures",
    "WSquareRule",
    "ZBoxRule",
    "ZPlusRule",
    "ZeroRule",
    "analyze",
    "canonize",
    "canonize_graph",
    "check_model",
    "flatten_model",
    "fuse_batchnorm",
    "inference_mode",
    "named_leaf_layers",
    "stabilize",
    "strip_softmax",
    "trace",
]
