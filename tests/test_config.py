"""The audit configuration: shipped files validate, malformed files are refused with the file,
the field path and the reason, and the digest depends on meaning, not spelling."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lrp_tasks.config import (
    AuditConfig,
    ConfigError,
    apply_overrides,
    check_files,
    config_digest,
    config_dir,
    load_config,
    parse_config,
    resolve_paths,
)

ROOT = Path(__file__).resolve().parents[1]
CONF_FILES = sorted((ROOT / "conf").glob("*.yaml"))


def demo() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "conf" / "demo.yaml").read_text())


def write(tmp_path: Path, data: Any, name: str = "audit.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("path", CONF_FILES, ids=[p.name for p in CONF_FILES])
def test_every_shipped_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, AuditConfig)
    # what Prefect hands back (a JSON dict) validates to the same config
    assert AuditConfig.model_validate(json.loads(cfg.model_dump_json())) == cfg


def test_shipped_configs_exist() -> None:
    assert {p.name for p in CONF_FILES} >= {"demo.yaml", "imagefolder_example.yaml", "resnet_example.yaml"}


def test_demo_config_files_exist() -> None:
    # the only shipped config whose files ship too; the examples name data the user supplies.
    # Its paths are relative to conf/ (../models/...), whatever the working directory.
    cfg = load_config(ROOT / "conf" / "demo.yaml", require_files=True)
    assert cfg.shard_size == 256
    assert cfg.ray.workers == 2 and cfg.ray.cpus_per_worker == 1.0 and cfg.ray.address is None


def set_in(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting a dotted path (``ray.workers``) of the demo config."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return mutate


def drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


def rules(*entries: Any) -> Callable[[dict[str, Any]], None]:
    return set_in("composite", {"rules": list(entries)})


MALFORMED = [
    ("wrong type", set_in("shard_size", "many"), "shard_size", "Input should be a valid integer"),
    ("bool is not an int", set_in("batch_size", True), "batch_size", "Input should be a valid integer"),
    ("negative shard size", set_in("shard_size", -5), "shard_size", "Input should be greater than 0"),
    ("zero workers", set_in("ray.workers", 0), "ray.workers", "Input should be greater than 0"),
    (
        "unknown key",
        set_in("shard_sise", 4),
        "shard_sise",
        "unknown key 'shard_sise'; did you mean 'shard_size'?",
    ),
    ("unknown nested key", set_in("ray.worker", 4), "ray.worker", "unknown key 'worker'; did you mean 'workers'?"),
    ("missing field", drop("name"), "name", "required field is missing"),
    (
        "ZBox without bounds",
        rules({"type": "Conv2d", "rule": "ZPlus"}, {"first": True, "rule": {"ZBox": {"low": 0.0}}}),
        "composite.rules[1].rule",
        "ZBox needs both bounds 'low' and 'high'",
    ),
    (
        "ZBox with low > high",
        rules({"first": True, "rule": {"kind": "ZBox", "low": 1.0, "high": 0.0}}),
        "composite.rules[0].rule",
        "low must be <= high",
    ),
    (
        "AlphaBeta with alpha - beta != 1",
        rules({"type": "Conv2d", "rule": {"AlphaBeta": {"alpha": 2, "beta": 2}}}),
        "composite.rules[0].rule",
        "AlphaBeta needs alpha - beta = 1 to conserve relevance, got alpha=2.0, beta=2.0",
    ),
    (
        "AlphaBeta with negative beta",
        rules({"type": "Conv2d", "rule": {"kind": "AlphaBeta", "alpha": 0.5, "beta": -0.5}}),
        "composite.rules[0].rule.beta",
        "Input should be greater than or equal to 0",
    ),
    (
        "negative gamma",
        rules({"rule": "Epsilon"}, {"rule": "Pass"}, {"type": "Conv2d", "rule": {"Gamma": {"gamma": -1}}}),
        "composite.rules[2].rule.gamma",
        "Input should be greater than or equal to 0",
    ),
    (
        "unknown preset",
        set_in("composite", "EpsilonPlusFlatt"),
        "composite",
        "unknown preset 'EpsilonPlusFlatt'; did you mean 'EpsilonPlusFlat'?",
    ),
    (
        "preset without its bounds",
        set_in("composite", {"preset": "EpsilonGammaBox", "high": 1}),
        "composite",
        "EpsilonGammaBox needs both bounds 'low' and 'high'",
    ),
    (
        "unknown preset parameter",
        set_in("composite", {"preset": "EpsilonPlus", "gamma": 0.5}),
        "composite.gamma",
        "unknown key 'gamma'",
    ),
    (
        "unknown rule",
        rules({"rule": "Epsilonn"}),
        "composite.rules[0].rule",
        "unknown rule 'Epsilonn'; did you mean 'Epsilon'?",
    ),
    (
        "unknown layer type",
        rules({"type": "Conv2D", "rule": "ZPlus"}),
        "composite.rules[0].type",
        "unknown layer type 'Conv2D'; did you mean 'Conv2d'?",
    ),
    (
        "two selectors",
        rules({"index": 0, "last": True, "rule": "Flat"}),
        "composite.rules[0]",
        "choose one selector of name, index, range, first, last, first_n, first_match; got index, last",
    ),
    ("unknown dataset kind", set_in("dataset", {"kind": "mnist"}), "dataset", "unknown kind 'mnist'"),
    ("top-k of zero", set_in("target", {"kind": "top_k", "k": 0}), "target.k", "Input should be greater than 0"),
    ("negative class", set_in("target", {"kind": "class", "index": -1}), "target.index", "greater than or equal to 0"),
    ("bad dtype", set_in("storage.dtype", "float64"), "storage.dtype", "Input should be 'float16' or 'float32'"),
    (
        "repeated layerwise layers",
        set_in("storage.layerwise", ["conv1", "conv1"]),
        "storage.layerwise",
        "layer names must not repeat: conv1",
    ),
    (
        "CRP features",
        set_in("storage.crp", {"layer": "conv2", "features": [1, -2]}),
        "storage.crp.features",
        "feature indices must be >= 0",
    ),
    ("builder without module", set_in("model.builder", "build_digits_cnn"), "model.builder", "should match pattern"),
    (
        "pickle-only weights format",
        set_in("model.weights", "models/digits.pkl"),
        "model.weights",
        "weights must end in one of .safetensors, .pt, .pth, .bin",
    ),
    (
        "resize on a non-image dataset",
        set_in("preprocessing", {"resize": [8, 8]}),
        "preprocessing.resize",
        "resize applies to image folders only, the dataset is digits",
    ),
    (
        "mean with the wrong channel count",
        set_in("preprocessing", {"mean": [0.1, 0.2, 0.3]}),
        "preprocessing.mean",
        "mean has 3 values but the dataset has 1 channel(s)",
    ),
]


@pytest.mark.parametrize(("mutate", "field", "reason"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_config_names_file_field_and_reason(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None], field: str, reason: str
) -> None:
    data = demo()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert f" {field}: " in message
    assert reason in message
    assert [e.field for e in info.value.errors] == [field]


def test_missing_model_file_is_reported_by_check_files(tmp_path: Path) -> None:
    data = demo()
    data["model"]["weights"] = "models/nope.safetensors"
    path = write(tmp_path, data)
    load_config(path)  # validation itself never touches the file system
    with pytest.raises(ConfigError) as info:
        load_config(path, require_files=True)
    message = str(info.value)
    assert str(path) in message
    assert "model.weights: file not found: models/nope.safetensors" in message
    assert f"resolved to {tmp_path / 'models' / 'nope.safetensors'})" in message  # the file's directory


def test_relative_paths_resolve_against_the_config_files_directory(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "project" / "conf").mkdir(parents=True)
    (tmp_path / "project" / "models").mkdir()
    (tmp_path / "project" / "models" / "w.safetensors").write_bytes(b"")
    data = {**demo(), "output": "../audits/x"}
    data["model"]["weights"] = "../models/w.safetensors"
    path = write(tmp_path / "project" / "conf", data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(path, require_files=True)  # found from another working directory
    resolved = resolve_paths(cfg, config_dir(path))
    assert resolved.model.weights == str(tmp_path / "project" / "models" / "w.safetensors")
    assert resolved.output == str(tmp_path / "project" / "audits" / "x")
    assert resolved.model.module_dir == str(tmp_path / "project" / "conf")  # where the builder is imported from
    assert config_dir("conf/x.yaml") == elsewhere / "conf"


def test_check_files_lists_every_missing_path(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "conf" / "resnet_example.yaml")
    with pytest.raises(ConfigError) as info:
        check_files(cfg, root=tmp_path, source="resnet_example.yaml")
    assert [e.field for e in info.value.errors] == ["model.weights", "dataset.path"]
    assert "folder not found: ../data/imagenet/val" in str(info.value)


def test_errors_carry_the_line_of_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: x\noutput: out\nmodel: {kind: builder, builder: 'a.b:c'}\ndataset: {kind: digits}\n"
        "composite:\n  rules:\n    - {type: Conv2d, rule: ZPlus}\n    - {rule: {Gamma: {gamma: -1}}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"{path}:8: composite.rules[1].rule.gamma: Input should be greater than or equal to 0")


def test_several_errors_are_all_listed(tmp_path: Path) -> None:
    data = demo()
    data["shard_size"] = 0
    data["retries"] = -1
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    assert str(info.value).startswith("2 errors in audit config")
    assert [e.field for e in info.value.errors] == ["shard_size", "retries"]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("name: demo\nmodel: {kind: builder\n  weights: [\n", 3, "YAML syntax error"),
        ("name: demo\noutput: a\nname: other\n", 3, "duplicate key 'name' (first defined on line 1)"),
    ],
    ids=["unclosed flow mapping", "duplicate key"],
)
def test_yaml_errors_name_file_and_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "the config is empty"), ("- a\n- b\n", "the top level must be a mapping of fields, got list")],
)
def test_documents_that_are_not_a_config(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=reason):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_exponent_floats_without_a_dot_are_floats(tmp_path: Path) -> None:
    # PyYAML alone reads 1e-6 as a string (YAML 1.1); builder kwargs are not coerced by the schema
    data = demo()
    data["model"]["kwargs"] = {"dropout": "PLACEHOLDER"}
    path = write(tmp_path, data)
    path.write_text(path.read_text().replace("PLACEHOLDER", "1e-1"))
    assert load_config(path).model.kwargs == {"dropout": 0.1}


def test_digest_ignores_spelling_and_defaults() -> None:
    short = demo()
    short["composite"] = "EpsilonPlusFlat"
    short["target"] = "predicted"
    for key in ("seed", "retries", "batch_size", "storage"):
        short.pop(key)
    explicit = copy.deepcopy(demo())
    explicit["composite"] = {"preset": "EpsilonPlusFlat", "epsilon": 1e-6, "convention": "rpj"}
    a, b = parse_config(short), parse_config(explicit)
    assert a == b
    assert config_digest(a) == config_digest(b)
    assert len(config_digest(a)) == 64


def test_digest_changes_with_meaning_and_can_exclude_execution_settings() -> None:
    base = parse_config(demo())
    changed = parse_config({**demo(), "composite": {"preset": "EpsilonPlusFlat", "epsilon": 0.1}})
    assert config_digest(base) != config_digest(changed)
    more_workers = parse_config({**demo(), "ray": {"workers": 8}})
    assert config_digest(base) != config_digest(more_workers)
    assert config_digest(base, exclude=["ray"]) == config_digest(more_workers, exclude=["ray"])


def test_rule_shorthands_are_normalised() -> None:
    spellings = ["ZPlus", {"ZPlus": {}}, {"ZPlus": None}, {"kind": "ZPlus"}]
    configs = [parse_config({**demo(), "composite": {"rules": [{"type": "Conv2d", "rule": r}]}}) for r in spellings]
    assert all(c == configs[0] for c in configs)
    assert configs[0].composite.rules[0].rule.kind == "ZPlus"


def test_json_schema_for_prefect_forms() -> None:
    schema = AuditConfig.model_json_schema()
    assert set(schema["required"]) == {"name", "output", "model", "dataset"}
    assert schema["additionalProperties"] is False
    defs = schema["$defs"]
    assert defs["EpsilonSpec"]["properties"]["kind"]["const"] == "Epsilon"
    assert all(d.get("additionalProperties") is False for d in defs.values() if d.get("type") == "object")
    json.dumps(schema)  # serialisable


def test_resolve_paths_makes_local_paths_absolute(tmp_path: Path) -> None:
    cfg = resolve_paths(load_config(ROOT / "conf" / "demo.yaml"), root=tmp_path / "conf")
    assert cfg.model.weights == str(tmp_path / "models" / "digits_cnn.safetensors")
    assert cfg.output == str(tmp_path / "audits" / "demo")
    remote = parse_config({**demo(), "output": "s3://bucket/audits/demo"})
    assert resolve_paths(remote, root=tmp_path).output == "s3://bucket/audits/demo"


def test_config_is_immutable() -> None:
    cfg = parse_config(demo())
    with pytest.raises(ValueError, match="frozen"):
        cfg.shard_size = 3  # type: ignore[misc]


# -- command-line overrides -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "option", "value", "reason"),
    [
        ("ray.workers", "--workers", 0, "greater than 0"),
        ("ray.workers", "--workers", -1, "greater than 0"),
        ("output", "--output", "", "at least 1 character"),
        ("ray.address", "--ray-address", "", "at least 1 character"),
    ],
)
def test_overrides_are_validated_like_the_file(field: str, option: str, value: Any, reason: str) -> None:
    cfg = parse_config(demo())
    with pytest.raises(ConfigError) as info:
        apply_overrides(cfg, {field: (option, value)}, source="conf/demo.yaml (command line)")
    message = str(info.value)
    assert message.startswith("conf/demo.yaml (command line): ") and reason in message
    assert [e.field for e in info.value.errors] == [f"{option} ({field})"]


def test_overrides_apply_every_given_value() -> None:
    cfg = parse_config(demo())
    changed = apply_overrides(
        cfg, {"ray.workers": ("--workers", 7), "ray.address": ("--ray-address", "ray://h:1"), "output": ("-o", "x")}
    )
    assert (changed.ray.workers, changed.ray.address, changed.output) == (7, "ray://h:1", "x")
    assert changed.ray.cpus_per_worker == cfg.ray.cpus_per_worker and changed.model == cfg.model
    assert apply_overrides(cfg, {}) is cfg


def test_every_schema_field_has_a_description() -> None:
    """The Prefect UI form shows these beside each field of the flow's config parameter."""
    schema = AuditConfig.model_json_schema()
    missing = [
        f"{owner}.{name}"
        for owner, definition in [("AuditConfig", schema), *schema["$defs"].items()]
        for name, prop in definition.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert missing == []
