"""xarray conveniences: per-sample coordinates and consolidated metadata (xr.open_zarr, no warning)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from lrp_tasks.store import open_audit


def test_relevance_carries_label_prediction_probability_and_class_names(demo_audit: Path) -> None:
    audit = open_audit(str(demo_audit))
    rel = audit.relevance
    top = audit.summaries[audit.summaries["target_rank"] == 0]
    for coord, column in [("label", "label"), ("predicted", "predicted"), ("probability", "predicted_probability")]:
        assert rel[coord].dims == ("sample",)
        np.testing.assert_array_equal(rel[coord].values, top[column].to_numpy())
    assert audit.class_names == [str(d) for d in range(10)]
    assert rel["label_name"].values[0] == str(top["label"].iloc[0])
    wrong = rel.where(rel["label"] != rel["predicted"], drop=True)  # selection by coordinate works
    assert 0 < wrong.sizes["sample"] < rel.sizes["sample"]
    assert audit.dataset["logits"]["class"].values.tolist() == [str(d) for d in range(10)]


def test_xr_open_zarr_opens_the_store_without_warnings(demo_audit: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(demo_audit / "relevance.zarr")
    assert ds["relevance"].shape == (360, 1, 8, 8)
    np.testing.assert_array_equal(ds["relevance"].values, open_audit(str(demo_audit)).relevance.values)


def test_stores_written_before_consolidation_still_open_without_warnings(demo_audit: Path, tmp_path: Path) -> None:
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(demo_audit, old)
    meta_path = old / "relevance.zarr" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("consolidated_metadata", None)
    meta["attributes"].pop("class_names", None)  # as written before class names were recorded
    meta_path.write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audit = open_audit(str(old))
        rel = audit.relevance
    assert audit.class_names is None and "label_name" not in rel.coords
    np.testing.assert_array_equal(rel.values, open_audit(str(demo_audit)).relevance.values)
    np.testing.assert_array_equal(rel["predicted"].values, open_audit(str(demo_audit)).relevance["predicted"].values)
