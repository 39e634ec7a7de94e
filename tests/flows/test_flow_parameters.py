"""The audit flow's parameters: the typed ``config`` (the Prefect UI form) wins over
``config_path`` (the deployment's default), and the schema Prefect generates explains each field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.utilities.callables import parameter_schema

from flows.audit import audit, audit_parameters
from lrp_tasks.config import parse_config
from tests.digits_audit import digits_audit_config


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
