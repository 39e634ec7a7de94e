"""The audit flow's parameters: the typed ``config`` (the Prefect UI form) wins over
``config_path`` (the deployment's default), and the schema Prefect generates explains each field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate

from flows.audit import audit, audit_parameters
from lrp_tasks.config import ConfigError, parse_config
from tests.digits_audit import digits_audit_config

ROOT = Path(__file__).resolve().parents[2]


def test_typed_config_wins_over_a_default_config_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = parse_config(digits_audit_config(tmp_path / "out", "form"))
    chosen, root, source, notes = audit_parameters(cfg, "conf/demo.yaml")
    assert chosen is cfg and root == tmp_path  # relative paths of a form: the working directory
    assert "form" in source and notes == [
        "both config and config_path given: running the config parameter, ignoring conf/demo.yaml"
    ]
    assert audit_parameters(cfg, None, base_dir=str(tmp_path / "b"))[1] == tmp_path / "b"


def test_config_path_resolves_against_its_own_directory(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.yaml").write_text(yaml.safe_dump(digits_audit_config(Path("out"), "file")))
    monkeypatch.chdir(tmp_path)
    cfg, root, source, notes = audit_parameters(None, "conf/a.yaml")
    assert cfg.name == "file" and root == tmp_path / "conf" and source == "conf/a.yaml" and notes == []
    with pytest.raises(ValueError, match="give the audit as config"):
        audit_parameters(None, None)


def test_parameter_schema_describes_every_field() -> None:
    """What the Prefect UI renders as the run form: every parameter and every field of the config
    sections carries a description."""
    schema = parameter_schema(audit).model_dump()
    for name in ("config", "config_path", "fresh", "base_dir"):
        assert schema["properties"][name].get("description"), name
    assert "config_path is ignored" in schema["properties"]["config"]["description"]
    undescribed = [
        f"{owner}.{field}"
        for owner, definition in schema["definitions"].items()
        for field, prop in definition.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undescribed == []
    assert "Ray actors" in schema["definitions"]["RaySpec"]["properties"]["workers"]["description"]


SHORTHANDS = [
    {"composite": "EpsilonPlusFlat"},
    {"composite": {"rules": [{"type": "Conv2d", "rule": "ZPlus"},
                             {"name": "fc*", "rule": {"Epsilon": {"epsilon": 0.1}}},
                             {"type": ["Linear"], "rule": {"kind": "Epsilon", "epsilon": 0.2}}]}},
    {"target": "label"},
    {"target": "predicted"},
]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "conf").glob("*.yaml")))
def test_the_form_accepts_every_shipped_config_as_docs_build_it(name: str) -> None:
    """docs/deployment.md step 6 sends ``{"config": yaml.safe_load(file)}``; Prefect checks it against
    the deployment's stored schema with its own validator before the run exists."""
    params = {"config": yaml.safe_load((ROOT / "conf" / name).read_text())}
    validate(params, parameter_schema(audit).model_dump(), raise_on_error=True, preprocess=True, ignore_required=True)


@pytest.mark.parametrize("change", SHORTHANDS, ids=lambda c: str(c)[:40])
def test_the_form_accepts_the_shorthands_a_yaml_file_accepts(change: dict) -> None:
    params = {"config": {**yaml.safe_load((ROOT / "conf" / "demo.yaml").read_text()), **change}}
    validate(params, parameter_schema(audit).model_dump(), raise_on_error=True, preprocess=True, ignore_required=True)
    parse_config(params["config"])  # and the flow's own validation takes it as a file would


def test_a_refused_form_run_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    """A form's relative paths resolve against base_dir (default: the working directory); when they
    point nowhere the run is refused before the store's lock or folder exists."""
    work = tmp_path / "project" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    cfg = parse_config(yaml.safe_load((ROOT / "conf" / "demo.yaml").read_text()))  # ../models/…, ../audits/demo
    with pytest.raises(ConfigError, match="model"):
        audit.fn(config=cfg)
    assert list((tmp_path / "project").iterdir()) == [work] and list(work.iterdir()) == []
