"""Labels outside the model's classes are refused, at validate and on the worker, naming the first bad
sample; ``dataset.ignore_label`` marks unlabelled samples (issue 25 item 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from flows.cli import main
from lrp_tasks.audit.explainer import LabelError
from lrp_tasks.audit.prepare import open_shard_explainer
from lrp_tasks.config import parse_config
from lrp_tasks.config.dataset_spec import ArraySpec
from lrp_tasks.sources import digits_split
from lrp_tasks.sources.datasets import open_source
from lrp_tasks.sources.digits import digits_arrays
from tests.digits_audit import digits_audit_config


def arrays(tmp_path: Path, bad: dict[int, int]) -> dict[str, str]:
    images, labels = digits_arrays()
    chosen = digits_split("test")[:20]
    np.save(tmp_path / "x.npy", images[chosen].astype(np.float32))
    y = labels[chosen].copy()
    for index, label in bad.items():
        y[index] = label
    np.save(tmp_path / "y.npy", y)
    return {"kind": "array", "path": str(tmp_path / "x.npy"), "labels_path": str(tmp_path / "y.npy")}


def config_file(tmp_path: Path, dataset: dict) -> Path:
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(digits_audit_config(tmp_path / "audit", "labels", dataset=dataset, shard_size=10)))
    return path


@pytest.mark.parametrize("label", [99, 10, -5])
def test_validate_names_the_first_sample_with_a_label_outside_the_classes(tmp_path, capsys, label) -> None:
    path = config_file(tmp_path, arrays(tmp_path, {3: label, 7: 42}))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: dataset: sample '3' has label {label}, not one of the model's 10 classes" in err
    assert "2 such sample(s)" in err and "(sample index 3)" in err and "Traceback" not in err


def test_ignore_label_stores_those_samples_as_unlabelled(tmp_path) -> None:
    dataset = {**arrays(tmp_path, {3: 255, 7: 255}), "ignore_label": 255}
    shards = open_shard_explainer(parse_config(digits_audit_config(tmp_path / "audit", "labels", dataset=dataset)))
    shards.explain_shard(0, 0, 20)
    frame = pd.read_parquet(tmp_path / "audit" / "summaries")
    assert frame.set_index("sample_index")["label"].loc[[3, 7]].tolist() == [-1, -1]
    assert (frame["label"] >= 0).sum() == 18


def test_the_worker_refuses_a_bad_label_it_reads(tmp_path) -> None:
    """Labels replaced after the audit was prepared: the shard fails naming the sample, nothing is committed."""
    good = arrays(tmp_path, {})
    shards = open_shard_explainer(parse_config(digits_audit_config(tmp_path / "audit", "labels", dataset=good)))
    np.save(tmp_path / "y2.npy", np.where(np.arange(20) == 12, 99, np.load(tmp_path / "y.npy")))
    shards.explainer.dataset = open_source(ArraySpec(**{**good, "labels_path": str(tmp_path / "y2.npy")}))
    with pytest.raises(LabelError, match=r"sample '12' has label 99, not one of the model's 10 classes"):
        shards.explain_shard(1, 10, 20)
    assert not shards.store.is_committed(1)
