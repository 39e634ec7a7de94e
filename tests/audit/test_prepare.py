"""``lrp-audit validate`` makes every check ``run`` makes (one function, ``prepare_audit``), and
``run`` makes them before any Prefect server or Ray starts: a refused config is one clean message
naming the config file, exit status 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from flows.cli import main
from lrp_tasks.audit.prepare import audit_digest, prepare_audit
from lrp_tasks.config import ConfigError, parse_config
from tests.digits_audit import digits_audit_config


def write(tmp_path: Path, **overrides: Any) -> Path:
    cfg = digits_audit_config(tmp_path / "audit", "checks", **overrides)
    path = tmp_path / "conf" / "audit.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"storage": {"layerwise": ["conv9"]}}, "storage.layerwise[0]", "the model has no layer named 'conv9'"),
        ({"storage": {"crp": {"layer": "conv2", "features": 99}}}, "storage.crp.features", "has 32 channels"),
        ({"target": {"kind": "top_k", "k": 11}}, "target.k", "exceeds the model's 10 classes"),
        ({"target": {"kind": "class", "index": 10}}, "target.index", "the model has 10 classes"),
        ({"composite": {"rules": [{"type": "ReLU", "rule": "Flat"}]}}, "composite", "cannot be applied to layer 1"),
    ],
)
def test_validate_refuses_what_run_would_refuse(tmp_path, capsys, overrides, field, reason) -> None:
    path = write(tmp_path, **overrides)
    code, out, err = cli(capsys, "validate", str(path))
    assert code == 2, out
    assert f"{path}: {field}" in err and reason in err
    assert "Traceback" not in err
    assert not (tmp_path / "audit").exists()  # nothing written


def test_validate_accepts_what_runs_and_says_what_it_checked(tmp_path, capsys) -> None:
    path = write(tmp_path, storage={"layerwise": ["conv2"], "crp": {"layer": "conv2", "features": 2}})
    code, out, _ = cli(capsys, "validate", str(path))
    assert code == 0
    assert "valid audit 'checks'" in out and "10 classes" in out and "360 samples of shape (1, 8, 8)" in out
    assert "layerwise ['conv2']" in out and "CRP at conv2" in out
    assert not (tmp_path / "audit").exists()  # validate never creates the store


def test_model_that_cannot_take_the_datasets_samples_is_refused(tmp_path, capsys) -> None:
    np.save(tmp_path / "rgb.npy", np.zeros((4, 3, 16, 16), dtype=np.float32))
    path = write(tmp_path, dataset={"kind": "array", "path": "../rgb.npy"})  # relative to conf/
    code, _, err = cli(capsys, "validate", str(path))
    assert code == 2 and f"{path}: model: explaining the first sample (shape (3, 16, 16)) fails" in err


def test_run_refuses_a_bad_config_before_prefect_starts_in_one_message(tmp_path, capsys) -> None:
    path = write(tmp_path, model={"kind": "builder", "builder": "no_such_module_4711:build"})
    code, out, err = cli(capsys, "run", str(path), "--no-progress")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"lrp-audit: preparing {path}: checking the config and its files, loading the model, explaining one sample",
        "lrp-audit: invalid configuration",
        f"{path}: model: cannot import the builder module 'no_such_module_4711' (looked in {path.parent} and the "
        "installed packages): No module named 'no_such_module_4711'",
    ]


def test_missing_files_name_the_config_file_not_a_placeholder(tmp_path, capsys) -> None:
    path = write(tmp_path, dataset={"kind": "array", "path": "data/x.npy"})
    code, _, err = cli(capsys, "run", str(path), "--no-progress")
    assert code == 2
    assert f"{path}: dataset.path: file not found: data/x.npy (resolved to {path.parent / 'data' / 'x.npy'})" in err
    assert "<config>" not in err


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_run_refuses_bad_overrides_naming_the_option(tmp_path, capsys, workers) -> None:
    path = write(tmp_path)
    code, _, err = cli(capsys, "run", str(path), "--workers", workers, "--no-progress")
    assert code == 2
    assert f"{path} (command line): --workers (ray.workers): Input should be greater than 0" in err


def test_prepare_audit_is_the_store_preparation_of_a_run(tmp_path) -> None:
    """The same function, with a store mode, creates the store run resumes (digest without ray)."""
    cfg = parse_config(digits_audit_config(tmp_path / "audit", "checks"))
    checked = prepare_audit(cfg)
    assert checked.store is None and not (tmp_path / "audit").exists()
    opened = prepare_audit(cfg, store_mode="resume")
    assert opened.store is not None and opened.spec == checked.spec
    more_workers = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"workers": 5})})
    assert audit_digest(more_workers) == audit_digest(cfg)
    prepare_audit(more_workers, store_mode="resume")  # resumes: execution settings are not in the digest
    with pytest.raises(ConfigError, match=r"audit config 'checks': target\.k"):
        prepare_audit(parse_config(digits_audit_config(tmp_path / "a2", "checks", target={"kind": "top_k", "k": 12})))


def test_validate_prints_rules_probe_range_store_outcome_and_estimate(tmp_path, capsys) -> None:
    path = write(tmp_path)
    code, out, _ = cli(capsys, "validate", str(path))
    assert code == 0
    lines = out.splitlines()
    table = lines.index("  model: 10 classes; rules (step => rule):")
    rules = [line.split("=>") for line in lines[table + 1 : table + 11]]
    assert [(step.split(":")[0].strip(), rule.strip()) for step, rule in rules[:3]] == [
        ("conv1", "FlatRule()"),  # EpsilonPlusFlat: Flat on the first layer, ZPlus on convolutions
        ("relu1", "PassRule()"),
        ("conv2", "ZPlusRule()"),
    ]
    rest = lines[table + 11 :]
    assert rest[0].startswith("  dataset: 360 samples")
    assert rest[1].startswith("  probe (first sample): relevance from ") and rest[1].endswith("stored as float32")
    assert rest[2] == f"  store: would be created: {tmp_path / 'audit'}"
    assert rest[3].startswith("  estimate: explaining 360 samples takes about ") and "timed on one batch of" in rest[3]
    assert not (tmp_path / "audit").exists()

    prepare_audit(parse_config(yaml.safe_load(path.read_text())), root=path.parent, store_mode="resume").store.close()
    _, out, _ = cli(capsys, "validate", str(path))
    assert f"  store: would be resumed: {tmp_path / 'audit'} (0 of 2 shards committed)" in out.splitlines()
    path.write_text(yaml.safe_dump(digits_audit_config(tmp_path / "audit", "checks", composite="EpsilonPlus")))
    code, out, _ = cli(capsys, "validate", str(path))
    store = next(line for line in out.splitlines() if line.startswith("  store: "))
    assert code == 0 and store.startswith("  store: refused: ") and "composite" in store and "--fresh" in store


def test_validate_refuses_a_float16_store_the_probe_overflows(tmp_path, capsys) -> None:
    np.save(tmp_path / "loud.npy", np.full((4, 1, 8, 8), 1e6, dtype=np.float32))  # huge inputs, huge logits
    path = write(tmp_path, dataset={"kind": "array", "path": "../loud.npy"}, seed="logit", storage={"dtype": "float16"})
    code, _, err = cli(capsys, "validate", str(path))
    assert code == 2 and f"{path}: storage.dtype: the first sample's relevance reaches" in err
    assert "beyond float16's range" in err and "use storage.dtype: float32" in err
    path.write_text(path.read_text().replace("float16", "float32"))
    assert cli(capsys, "validate", str(path))[0] == 0
