"""Dataset-level analysis of an audit: SpRAy (spectral relevance analysis) per class.

numpy, scipy and scikit-learn only: a flow or a worker calls it, it never imports Prefect or Ray.

    from lrp_tasks.analysis import run_spray, read_spray
    run_spray("audits/planted", SpraySpec())            # results in audits/planted/analysis/spray/
    spray = read_spray("audits/planted")                 # .samples, .clusters, .eigenvalues, .mean_maps(c)
"""

from lrp_tasks.config.analysis import AnalysisSpec, SpraySpec

from .results import SprayConfigMismatchError, SprayResults, SprayStoreError, read_spray, spray_dir
from .run import NoCommittedShardsError, SprayPlan, plan_spray, run_spray, spray_class
from .spray import SprayRequestError, SprayResult, spray_maps

__all__ = [
    "AnalysisSpec",
    "NoCommittedShardsError",
    "SprayConfigMismatchError",
    "SprayPlan",
    "SprayRequestError",
    "SprayResult",
    "SprayResults",
    "SpraySpec",
    "SprayStoreError",
    "plan_spray",
    "read_spray",
    "run_spray",
    "spray_class",
    "spray_dir",
    "spray_maps",
]
