"""Issue 24: the paths of a config submitted through the deployment's form (not a file on the worker)
lie under the allowed roots — the deployment's working directory, widened by
``LRP_AUDIT_ALLOWED_ROOTS`` — after ``..``, ``~`` and symlinks are resolved, or the run is refused
before anything is created."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.audit import audit
from lrp_tasks.config import ConfigError, parse_config
from lrp_tasks.config.roots import ROOTS_ENV, check_under_roots
from tests.digits_audit import ROOT, digits_audit_config


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The deployment's working directory, with the demo weights inside it."""
    work = tmp_path / "deployment"
    (work / "models").mkdir(parents=True)
    (work / "models" / "digits_cnn.safetensors").write_bytes((ROOT / "models" / "digits_cnn.safetensors").read_bytes())
    monkeypatch.chdir(work)
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    return work


def _form(output: str, **overrides) -> object:
    cfg = digits_audit_config(Path(output), "roots", **overrides)
    cfg["output"] = output
    cfg["model"]["weights"] = "models/digits_cnn.safetensors"
    return parse_config(cfg)


def test_paths_under_the_working_directory_pass(workdir: Path) -> None:
    check_under_roots(_form("audits/a"), workdir)


@pytest.mark.parametrize("output", ["../outside", "audits/../../outside", "~/lrp-audit-outside", "/tmp/lrp-outside"])
def test_an_output_outside_the_roots_is_refused_naming_the_field(workdir: Path, output: str) -> None:
    with pytest.raises(ConfigError, match=r"output: .*outside the allowed roots.*LRP_AUDIT_ALLOWED_ROOTS") as refused:
        check_under_roots(_form(output), workdir)
    assert len(str(refused.value).splitlines()) == 1


def test_a_form_run_with_an_output_outside_creates_nothing(workdir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="outside the allowed roots"):
        audit.fn(config=_form("../outside"))
    assert not (tmp_path / "outside").exists() and sorted(os.listdir(workdir)) == ["models"]


def test_a_symlink_out_of_the_roots_is_refused_and_nothing_is_created(workdir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (workdir / "link").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match=rf"output: 'link/audit' resolves to {elsewhere}/audit, outside"):
        audit.fn(config=_form("link/audit"))
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    ("dataset", "resolved"),
    [({"kind": "array", "path": "../../../../../../etc/shadow.npy"}, "/etc/shadow.npy"),
     ({"kind": "imagefolder", "path": "../../../../../../etc"}, "/etc")],
)
def test_a_dataset_path_out_of_the_roots_is_refused_by_the_roots(workdir: Path, dataset, resolved) -> None:
    cfg = _form("audits/a", dataset=dataset)
    with pytest.raises(ConfigError, match=rf"dataset.path: '{dataset['path']}' resolves to {resolved}, outside"):
        check_under_roots(cfg, workdir)


def test_allowed_roots_widen_where_the_form_may_write(workdir: Path, tmp_path: Path, monkeypatch) -> None:
    shared = tmp_path / "shared-audits"
    shared.mkdir()
    monkeypatch.setenv(ROOTS_ENV, os.pathsep.join([str(tmp_path / "nothing"), str(shared)]))
    check_under_roots(_form(str(shared / "a")), workdir)
    with pytest.raises(ConfigError, match="outside"):
        check_under_roots(_form(str(tmp_path / "other")), workdir)


def test_base_dir_and_compare_with_are_form_fields_too(workdir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"base_dir: .* outside"):
        check_under_roots(_form("a"), tmp_path, base_dir=str(tmp_path))  # it would widen nothing
    with pytest.raises(ConfigError, match=r"compare_with: .* outside"):
        check_under_roots(_form("audits/a"), workdir, compare_with="/etc")


def test_a_remote_url_is_refused_from_the_form(workdir: Path) -> None:
    with pytest.raises(ConfigError, match="output: 's3://bucket/audit': a remote URL is not allowed from the form"):
        check_under_roots(_form("s3://bucket/audit"), workdir)
