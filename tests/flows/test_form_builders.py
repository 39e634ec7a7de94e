"""Issue 24: a builder is code the run calls. The deployment's typed ``config`` form (anyone with access
to the Prefect API) gets the allowlist only, refused before anything is imported or written; a config
file on the worker may name a module beside it; the standard library is refused from both."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from flows.audit import audit, config_from_file, trusted_code
from lrp_tasks.audit.prepare import prepare_audit
from lrp_tasks.config import ConfigError, load_config, parse_config
from lrp_tasks.config.roots import ROOTS_ENV
from tests.digits_audit import ROOT, digits_audit_config

from .audit_helpers import result_json, run_cli

EVIL_MODULE = "evil_user_models_4711"


def dangerous(marker: Path) -> dict[str, dict]:
    """Builders that would create `marker` if they were called (or their module imported)."""
    return {
        "os:system": {"command": f"touch {marker}"},
        "subprocess:call": {"args": ["touch", str(marker)]},
        "builtins:exec": {"source": f"open({str(marker)!r}, 'w').close()"},
        "importlib:import_module": {"name": EVIL_MODULE},
        f"{EVIL_MODULE}:build": {},
    }


@pytest.fixture
def evil_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable user module, not registered, that creates the marker when imported."""
    marker = tmp_path / "marker"
    code = tmp_path / "code"
    code.mkdir()
    (code / f"{EVIL_MODULE}.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef build(): pass\n")
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setenv(ROOTS_ENV, os.pathsep.join([str(tmp_path), str(ROOT)]))  # the form's paths are allowed
    return marker


def model(builder: str, kwargs: dict) -> dict:
    return {"kind": "builder", "builder": builder, "kwargs": kwargs}


@pytest.mark.parametrize("builder", list(dangerous(Path("m"))))
def test_the_form_refuses_builders_off_the_allowlist(builder: str, tmp_path: Path, evil_module: Path, monkeypatch):
    """What the form submits is the flow's ``config`` parameter; the run is refused at the preparation,
    naming the builder and the entry-point group, and the builder never runs."""
    monkeypatch.chdir(tmp_path / "code")  # the form's relative paths (and module search) start here
    out = tmp_path / "out"
    cfg = parse_config(digits_audit_config(out, "form", model=model(builder, dangerous(evil_module)[builder])))
    assert trusted_code(cfg) is False
    with pytest.raises(ConfigError) as refused:
        audit.fn(config=cfg, base_dir=str(tmp_path / "code"))
    message = str(refused.value)
    assert builder in message and "lrp_audit.builders" in message and "Traceback" not in message
    assert not evil_module.exists() and not out.exists()


@pytest.mark.parametrize("builder", [b for b in dangerous(Path("m")) if not b.startswith(EVIL_MODULE)])
def test_a_config_file_refuses_the_standard_library_too(builder: str, tmp_path: Path, evil_module: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(
        yaml.safe_dump(
            digits_audit_config(tmp_path / "out", "file", model=model(builder, dangerous(evil_module)[builder]))
        )
    )
    with pytest.raises(ConfigError, match="refused"):
        prepare_audit(load_config(path), root=tmp_path, source=str(path))
    assert not evil_module.exists() and not (tmp_path / "out").exists()


def test_an_attribute_path_cannot_reach_the_standard_library(tmp_path: Path) -> None:
    """``allowed.module:os.system`` names an allowed module but calls os.system: refused from a file too."""
    marker = tmp_path / "marker"
    code = tmp_path / "via_os_4711.py"
    code.write_text("import os\n")
    cfg = parse_config(
        digits_audit_config(tmp_path / "out", "f", model=model("via_os_4711:os.system", {"command": f"touch {marker}"}))
    )
    with pytest.raises(ConfigError, match="refused"):
        prepare_audit(cfg, root=tmp_path)
    assert not marker.exists()


def test_the_command_line_refuses_a_stdlib_builder_with_exit_2(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "a.yaml"
    path.write_text(
        yaml.safe_dump(
            digits_audit_config(tmp_path / "out", "f", model=model("os:system", {"command": f"touch {marker}"}))
        )
    )
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "'os:system' is refused" in proc.stderr and "lrp_audit.builders" in proc.stderr
    assert "Traceback" not in proc.stderr and not marker.exists()


def test_a_module_beside_a_config_file_still_works_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "mynet_beside_4711.py").write_text("from lrp_tasks.models.digits import build_digits_cnn as build\n")
    settings = digits_audit_config(tmp_path / "out", "f")
    settings["model"]["builder"] = "mynet_beside_4711:build"
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(settings))
    proc = run_cli("validate", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_command_line_marks_its_typed_config_as_a_file() -> None:
    cfg = parse_config(digits_audit_config(Path("out"), "f"))
    assert trusted_code(None) and not trusted_code(cfg)
    with config_from_file():
        assert trusted_code(cfg)
    assert not trusted_code(cfg)


def test_a_registered_entry_point_builder_works_from_the_form(tmp_path: Path, monkeypatch) -> None:
    """A user's installed package registers its builder in the ``lrp_audit.builders`` group: found by
    importlib.metadata through a real ``*.dist-info`` directory on sys.path."""
    site = tmp_path / "site"
    (site / "ep_models_4711-0.1.dist-info").mkdir(parents=True)
    (site / "ep_models_4711-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ep-models-4711\nVersion: 0.1\n"
    )
    (site / "ep_models_4711-0.1.dist-info" / "entry_points.txt").write_text(
        "[lrp_audit.builders]\ndigits = ep_models_4711:build\n"
    )
    (site / "ep_models_4711.py").write_text("from lrp_tasks.models.digits import build_digits_cnn as build\n")
    monkeypatch.syspath_prepend(str(site))
    cfg = parse_config(
        digits_audit_config(
            tmp_path / "out",
            "form",
            model={**digits_audit_config(tmp_path, "x")["model"], "builder": "ep_models_4711:build"},
        )
    )
    assert not trusted_code(cfg)
    preparation = prepare_audit(cfg, root=tmp_path, trusted_code=False)
    assert preparation.audit.trusted_code is False and preparation.spec.n_classes == 10
    unregistered = cfg.model_copy(update={"model": cfg.model.model_copy(update={"builder": "ep_models_4711:other"})})
    with pytest.raises(ConfigError, match="not allowed"):
        prepare_audit(unregistered, root=tmp_path, trusted_code=False)


@pytest.mark.integration
def test_a_module_beside_a_config_file_runs_on_the_workers(tmp_path: Path) -> None:
    """``lrp-audit run FILE`` hands its typed config to the flow as a file's: the driver and the Ray
    workers import the builder from beside the file."""
    (tmp_path / "mynet_run_4711.py").write_text("from lrp_tasks.models.digits import build_digits_cnn as build\n")
    settings = digits_audit_config(tmp_path / "out", "f", shard_size=180, batch_size=90)
    settings["model"]["builder"] = "mynet_run_4711:build"
    settings["ray"] = {"workers": 1, "cpus_per_worker": 1}
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(settings))
    proc = run_cli("run", str(path), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result_json(proc.stdout)["samples_explained"] == 360
