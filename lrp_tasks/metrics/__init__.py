"""Faithfulness of explanations: region perturbation / pixel flipping with AOPC, and the Efficient
MPRT model-randomisation sanity check. Pure torch and numpy (no Prefect, Ray, Zarr or pandas): the
shard task and the flow call these on the worker's device.

rp = RegionPerturbation(patch_size=2, steps=16, orders=("morf", "random"))
curves = rp.curves(model, x, relevance, target, keys=sample_index)   # {"morf": (m, 17), "random": ...}
aopc(curves["morf"]) - aopc(curves["random"])                         # > 0: MoRF beats random
"""

from .mprt import MPRTResult, discrete_entropy, efficient_mprt, randomize_parameters
from .perturbation import BASELINES, ORDERS, RegionPerturbation, aopc, padding, pixel_flipping

__all__ = [
    "BASELINES",
    "ORDERS",
    "MPRTResult",
    "RegionPerturbation",
    "aopc",
    "discrete_entropy",
    "efficient_mprt",
    "padding",
    "pixel_flipping",
    "randomize_parameters",
]
