"""What a user sees when a command fails (issue 25 items 4 and 5, issue 20's Ray Client failure): the real
``lrp-audit`` in a subprocess, stderr is one ``lrp-audit:`` line (besides progress lines) and never a
traceback, with the documented exit status; a builder without weights runs on several workers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from lrp_tasks.sources.models import state_dict_digest
from lrp_tasks.store import open_audit
from tests.disk_helpers import files_under, fill, tmpfs

from .audit_helpers import ROOT, result_json, run_cli, write_config

pytestmark = pytest.mark.integration

WEIGHTS = ROOT / "models" / "digits_cnn.safetensors"


def message_lines(stderr: str) -> list[str]:
    """stderr without the progress and stage lines a run prints while it works (the first two say
    what is being prepared and that the checks passed)."""
    stages = ("lrp-audit: preparing ", "lrp-audit: checked in ")
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and " shards (" not in line and not line.startswith(stages)
    ]


def assert_one_line(proc: subprocess.CompletedProcess, status: int, *needles: str) -> str:
    assert proc.returncode == status, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = message_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("lrp-audit: "), proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def without_weights(tmp: Path, name: str = "random") -> Path:
    path = write_config(tmp, name)
    cfg = yaml.safe_load(path.read_text())
    del cfg["model"]["weights"]
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def random_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A builder without weights, run on two workers: each builds the model itself."""
    tmp = tmp_path_factory.mktemp("random")
    proc = run_cli("run", str(without_weights(tmp)), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result_json(proc.stdout)["samples_explained"] == 360
    return tmp / "audit"


def test_builder_without_weights_runs_on_two_workers(random_baseline: Path) -> None:
    from lrp_tasks.models.digits import build_digits_cnn

    audit = open_audit(str(random_baseline))
    assert sorted(audit.summaries["sample_index"]) == list(range(360))
    torch.manual_seed(0)  # model.seed's default: what every worker built
    expected = state_dict_digest(build_digits_cnn().state_dict())
    assert audit.attrs["weights_digest"] == expected


def test_error_raised_inside_the_flow_is_one_line(random_baseline: Path, tmp_path: Path) -> None:
    """The store refuses another config inside the flow (prepare-store): no Prefect traceback."""
    other = write_config(tmp_path, "other")
    cfg = yaml.safe_load(other.read_text())
    other.write_text(yaml.safe_dump({**cfg, "output": str(random_baseline)}))
    proc = run_cli("run", str(other))
    assert_one_line(proc, 1, "config digest mismatch", "details: ")


def test_the_runs_report_on_a_full_disk_is_one_line(random_baseline: Path, tmp_path: Path) -> None:
    """A finished audit on a full disk: the run has nothing to explain, its report cannot be
    written; one line naming the file, exit 1, the committed audit as it was and no temporary."""
    with tmpfs(tmp_path / "disk", "8m") as mnt:
        shutil.copytree(random_baseline, mnt / "audit")
        (mnt / "audit" / "report.html").unlink()
        config = without_weights(tmp_path)
        cfg = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**cfg, "output": str(mnt / "audit")}))
        fill(mnt)
        before = files_under(mnt)
        proc = run_cli("run", str(config), "--no-progress")
        assert_one_line(proc, 1, f"could not write {mnt / 'audit' / 'report.html'}", "No space left on device")
        assert files_under(mnt) == before
        assert sorted(open_audit(str(mnt / "audit")).summaries["sample_index"]) == list(range(360))


def test_unreachable_ray_client_address_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("run", str(write_config(tmp_path)), "--ray-address", "ray://127.0.0.1:1")
    assert_one_line(proc, 1, "cannot join the Ray cluster at ray://127.0.0.1:1")


def test_closed_stdout_ends_quietly(random_baseline: Path) -> None:
    """``lrp-audit summary | head``: the reader is gone before anything is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows", "summary", str(random_baseline)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, stderr
    assert stderr == ""


def test_empty_dataset_is_refused_in_one_line(tmp_path: Path) -> None:
    np.save(tmp_path / "empty.npy", np.zeros((0, 1, 8, 8), dtype=np.float32))
    config = write_config(tmp_path, dataset={"kind": "array", "path": str(tmp_path / "empty.npy")})
    proc = run_cli("validate", str(config))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "dataset: the dataset holds no samples" in proc.stderr


def test_nan_weights_are_refused_in_one_line(tmp_path: Path) -> None:
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in load_file(WEIGHTS).items()}
    save_file(state, tmp_path / "nan.safetensors")
    path = write_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["model"]["weights"] = str(tmp_path / "nan.safetensors")
    path.write_text(yaml.safe_dump(cfg))
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "NaN or inf value(s)" in proc.stderr


def test_unexpected_error_is_one_line_with_the_log_file(tmp_path: Path) -> None:
    """Any other exception: one line naming it and the log file that holds its traceback."""
    (tmp_path / "broken").mkdir()  # a directory where `summary` expects an audit store
    proc = run_cli("summary", str(tmp_path / "broken"), env={"LRP_AUDIT_LOG_DIR": str(tmp_path / "logs")})
    line = assert_one_line(proc, 1, "details: ")
    log = Path(line.rsplit("details: ", 1)[1].rstrip(")"))
    assert log.parent == tmp_path / "logs" and "Traceback" in log.read_text()


def test_cluster_without_this_clients_token_is_one_line(tmp_path: Path) -> None:
    """A token-authenticated cluster joined without its token: Ray's C++ retry lines (one a second)
    stay off the terminal, and the line says what is missing."""
    import os

    from tests.cluster.ray_cluster import LocalRayCluster

    config = write_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    with LocalRayCluster(nodes_wanted=1, cpus_per_node=2) as cluster:
        proc = subprocess.run(
            [sys.executable, "-m", "flows", "run", str(config), "--ray-address", cluster.address],
            capture_output=True, text=True, timeout=400, cwd=ROOT, env=env,
        )
    assert_one_line(proc, 1, f"cannot join the Ray cluster at {cluster.address}", "RAY_AUTH_TOKEN")
    assert "gcs_client" not in proc.stderr
