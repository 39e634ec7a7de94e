"""Composites written in YAML: validation with specific messages, and the engine objects they build."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from lrp_tasks.audit.composite import build_composite, build_rule, layer_type_key
from lrp_tasks.config import RULE_SPECS, CompositeSpec, RulesCompositeSpec
from lrp_tasks.models.digits import build_digits_cnn

SPEC = TypeAdapter(CompositeSpec)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine() -> ModuleType:
    """The LRP engine; tests that build engine objects are skipped where it cannot be imported."""
    return pytest.importorskip("lrp_tasks.engine")


def messages(value: Any) -> str:
    with pytest.raises(ValidationError) as info:
        SPEC.validate_python(value)
    return "\n".join(e["msg"] for e in info.value.errors())


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"rules": [{"rule": {"ZBox": {}}}]}, "ZBox needs both bounds 'low' and 'high' (the smallest"),
        ({"rules": [{"rule": {"kind": "ZBox", "high": 1}}]}, "missing: low"),
        ({"rules": [{"rule": {"ZBox": {"low": [0, 0], "high": [1, 1, 1]}}}]}, "do not broadcast together"),
        ({"rules": [{"rule": {"ZBox": {"low": [[0], [0, 1]], "high": 1}}}]}, "must be rectangular"),
        ({"rules": [{"rule": {"AlphaBeta": {"alpha": 1.5, "beta": 1}}}]}, "alpha - beta = 1"),
        ({"rules": [{"rule": {"AlphaBeta": {"alpha": -1, "beta": -2}}}]}, "greater than or equal to 0"),
        ({"rules": [{"rule": "Alpha2Beta1"}]}, "unknown rule 'Alpha2Beta1'"),
        ({"rules": [{"rule": "EpsilonRule"}]}, "unknown rule 'EpsilonRule'; did you mean 'Epsilon'?"),
        ({"rules": [{"rule": {"Epsilon": 0.1}}]}, "parameters of rule 'Epsilon' must be a mapping"),
        ({"rules": [{"rule": {"Epsilon": {"epsilon": 0.1}, "Flat": {}}}]}, "a rule is a name (ZPlus)"),
        ({"rules": [{"rule": {"Epsilon": {"gamma": 0.1}}}]}, "Extra inputs are not permitted"),
        ({"rules": [{"type": "Convolution2d", "rule": "ZPlus"}]}, "unknown layer type 'Convolution2d'"),
        ({"rules": [{"type": "Tensor", "rule": "ZPlus"}]}, "unknown layer type 'Tensor'"),
        ({"rules": [{"type": "Linear", "name": "fc1", "rule": "Flat"}]}, "'name' selects specific layers"),
        ({"rules": [{"first_n": 2, "rule": "Flat"}]}, "first_n needs a type"),
        ({"rules": [{"range": [3, 3], "rule": "Flat"}]}, "needs start < stop"),
        ({"rules": [{"first": False, "rule": "Flat"}]}, "Input should be True"),
        ({"rules": []}, "List should have at least 1 item"),
        ("EpsilonGamaBox", "unknown preset 'EpsilonGamaBox'; did you mean 'EpsilonGammaBox'?"),
        ({"preset": "EpsilonPlus", "convention": "captum"}, "Input should be 'rpj' or 'zennit'"),
        ({"preset": "EpsilonPlus", "rules": []}, "either a preset or a list of rules, not both"),
        ({"epsilon": 0.1}, "a composite is a preset name"),
    ],
)
def test_invalid_composites_are_refused_with_a_specific_message(value: Any, reason: str) -> None:
    assert reason in messages(value)


def test_every_rule_spec_matches_an_engine_rule_signature(engine: ModuleType) -> None:
    import inspect

    for kind, spec in RULE_SPECS.items():
        cls = getattr(engine, f"{kind}Rule")
        params = set(inspect.signature(cls).parameters)
        assert set(spec.model_fields) - {"kind"} == params, kind


def test_layer_type_names_and_groups() -> None:
    assert layer_type_key(["Conv2d"]) is nn.Conv2d
    assert layer_type_key(["Linear", "Conv2d", "Linear"]) == (nn.Linear, nn.Conv2d)
    convolution = layer_type_key(["Convolution"])
    assert nn.Conv1d in convolution and nn.ConvTranspose2d in convolution


# -- building engine objects ----------------------------------------------------------------------


def assigned(spec: Any, model: nn.Module | None = None) -> dict[str, Any]:
    """Layer name → rule the built composite assigns on the (flattened) model."""
    from lrp_tasks.engine import named_leaf_layers

    layers = list(named_leaf_layers(model or build_digits_cnn()))
    rules = build_composite(spec).assign(layers)
    return {name: rule for (name, _), rule in zip(layers, rules, strict=True)}


def test_each_selector_builds_its_primitive(engine: ModuleType) -> None:
    spec = SPEC.validate_python(
        {
            "rules": [
                {"rule": "Zero"},
                {"type": "Conv2d", "rule": "ZPlus"},
                {"name": ["fc1", "fc2"], "rule": {"Epsilon": {"epsilon": 0.5}}},
                {"index": 3, "rule": "Gradient"},
                {"range": [4, 6], "rule": "Pass"},
                {"range": [0, 12], "type": "ReLU", "rule": "Pass"},
                {"first": True, "rule": {"ZBox": {"low": 0, "high": 1}}},
                {"first": True, "type": "Linear", "rule": "Flat"},
                {"last": True, "rule": "Epsilon"},
                {"last": True, "type": "Conv2d", "rule": "Flat"},
                {"first_n": 3, "type": "Convolution", "rule": "WSquare"},
                {"first_match": True, "type": "Linear", "rule": {"Gamma": {"gamma": 0.1}}},
            ],
            "default": "Pass",
        }
    )
    assert isinstance(spec, RulesCompositeSpec)
    composite = build_composite(spec)
    kinds = [type(p).__name__ for p in composite.primitives]
    assert kinds == [
        "GlobalMap",
        "GlobalTypeMap",
        "NameMap",
        "LayerMap",
        "RangeMap",
        "RangeTypeMap",
        "FirstLayerMap",
        "FirstLayerTypeMap",
        "LastLayerMap",
        "LastLayerTypeMap",
        "FirstNTypeMap",
        "FirstMatchTypeMap",
    ]
    assert isinstance(composite.default, engine.PassRule)


def test_later_entries_win_and_rules_get_their_parameters(engine: ModuleType) -> None:
    rules = assigned(
        {
            "rules": [
                {"type": ["ReLU", "BatchNorm", "Flatten", "Dropout"], "rule": "Pass"},
                {"type": "Conv2d", "rule": {"Gamma": {"gamma": 0.5}}},
                {"type": "Linear", "rule": {"kind": "Epsilon", "epsilon": 0.01}},
                {"first": True, "rule": {"ZBox": {"low": 0.0, "high": 1.0}}},
                {"name": "fc2", "rule": {"Epsilon": {"epsilon": 0.2}}},
            ]
        }
    )
    assert isinstance(rules["conv1"], engine.ZBoxRule)
    assert rules["conv2"] == engine.GammaRule(gamma=0.5)
    assert rules["fc1"] == engine.EpsilonRule(epsilon=0.01)
    assert rules["fc2"] == engine.EpsilonRule(epsilon=0.2)
    assert isinstance(rules["relu1"], engine.PassRule) and isinstance(rules["bn1"], engine.PassRule)
    assert isinstance(rules["pool"], engine.ZeroRule)  # unselected: the engine's default


def test_nested_bounds_become_tensors(engine: ModuleType) -> None:
    rule = build_rule(
        SPEC.validate_python({"rules": [{"rule": {"ZBox": {"low": [[[0.0]]], "high": 1}}}]}).rules[0].rule
    )
    assert isinstance(rule.low, torch.Tensor) and rule.low.shape == (1, 1, 1)
    assert float(rule.high) == 1.0


@pytest.mark.parametrize("name", ["EpsilonPlus", "EpsilonAlpha2Beta1", "EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat"])
def test_presets_by_name(engine: ModuleType, name: str) -> None:
    composite = build_composite(name)
    assert composite.name == name
    assert repr(build_composite({"preset": name, "epsilon": 0.1})) == repr(getattr(engine, name)(epsilon=0.1))


def test_preset_parameters_and_convention_reach_the_engine(engine: ModuleType) -> None:
    spec = {
        "preset": "EpsilonGammaBox",
        "low": [[[-1.0]], [[-2.0]], [[-3.0]]],
        "high": 4,
        "gamma": 0.5,
        "convention": "zennit",
    }
    built = build_composite(spec)
    expected = engine.EpsilonGammaBox(
        torch.tensor([[[-1.0]], [[-2.0]], [[-3.0]]], dtype=torch.float64), 4.0, gamma=0.5, convention="zennit"
    )
    assert repr(built) == repr(expected)
    assert "zennit" in built.name


def test_demo_composite_explains_the_demo_model(engine: ModuleType) -> None:
    from lrp_tasks.config import load_config
    from lrp_tasks.sources.digits import digits_arrays

    cfg = load_config(ROOT / "conf" / "imagefolder_example.yaml")
    model = engine.canonize(build_digits_cnn().eval())
    analyzer = engine.LRP(model, build_composite(cfg.composite))
    x = torch.from_numpy(digits_arrays()[0][:4].copy())
    relevance = analyzer(x).val
    assert relevance.shape == x.shape and torch.isfinite(relevance).all()


# -- a rule added with one class and one table line -----------------------------------------------


def _power_rule() -> type:
    from lrp_tasks.engine import LRPRule

    class PowerRule(LRPRule):
        """ρ(W) = Wᵖ, ρ(b) = bᵖ (p = 1 is LRP-0)."""

        def __init__(self, power: int = 2, zero_bias: bool = False) -> None:
            self.power = power
            self.zero_bias = zero_bias

        def modify_parameter(self, param: torch.Tensor, name: str) -> torch.Tensor:
            return param**self.power

    return PowerRule


@pytest.fixture
def power_rule(engine: ModuleType) -> Any:
    """PowerRule in the engine's table for one test (and out of it again after)."""
    rule = engine.register_rule("Power", _power_rule())  # the one table line
    yield rule
    del engine.RULES["Power"]


POWER_YAML = """
composite:
  rules:
    - {type: Linear, rule: {kind: Power, power: 3, zero_bias: true}}
  default: {Power: {}}
"""


def test_a_registered_rule_is_usable_from_yaml(engine: ModuleType, power_rule: Any, tmp_path: Path) -> None:
    import json
    import pickle

    import yaml

    from lrp_tasks.config import AuditConfig, ConfigError, load_config, parse_config

    demo = yaml.safe_load((ROOT / "conf" / "demo.yaml").read_text())
    data = {**demo, **yaml.safe_load(POWER_YAML)}
    cfg = parse_config(data)
    entry = cfg.composite.rules[0]
    assert (entry.rule.kind, entry.rule.power, entry.rule.zero_bias) == ("Power", 3, True)
    assert type(entry.rule) is RULE_SPECS["Power"] and "Power" in RULE_SPECS
    # a config value like any other: JSON (what Prefect hands back), pickling (Ray), the UI form's schema
    assert AuditConfig.model_validate(json.loads(cfg.model_dump_json())) == cfg
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert "PowerSpec" in AuditConfig.model_json_schema()["$defs"]

    composite = build_composite(cfg.composite)
    assert composite.primitives[0].type_map == {nn.Linear: power_rule(3, zero_bias=True)}
    assert composite.default == power_rule()
    model = nn.Sequential(nn.Linear(2, 1)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0]]))
        model[0].bias.copy_(torch.tensor([0.5]))
    analyzer = engine.LRP(model, composite)
    text = repr(analyzer)
    assert "0: Linear(in_features=2, out_features=1, bias=True) => PowerRule(power=3, zero_bias=True)," in text
    x = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    # z = Σ a W³ = 3·1 + 1·(−8) = −5 (the bias left out): R = a W³ / z, with relevance 1 at the output
    torch.testing.assert_close(analyzer(x).val, torch.tensor([[3.0 / -5.0, -8.0 / -5.0]], dtype=torch.float64))

    # the parameters are validated like those of the built-in rules, named by field and line
    path = tmp_path / "power.yaml"
    head = yaml.safe_dump({k: v for k, v in demo.items() if k != "composite"}, sort_keys=False)
    path.write_text(head + POWER_YAML.replace("power: 3", "powr: 3"))
    misspelt = r"power\.yaml:\d+: composite\.rules\[0\]\.rule\.powr: unknown key 'powr'; did you mean 'power'\?"
    with pytest.raises(ConfigError, match=misspelt):
        load_config(path)
    path.write_text(head + POWER_YAML.replace("power: 3", "power: 2.5"))
    with pytest.raises(ConfigError, match=r"composite\.rules\[0\]\.rule\.power: Input should be a valid integer"):
        load_config(path)


def test_a_rule_out_of_the_table_is_unknown_to_configs(engine: ModuleType) -> None:
    import yaml

    assert "Power" not in engine.RULES and "Power" not in RULE_SPECS
    assert "unknown rule 'Power'" in messages(yaml.safe_load(POWER_YAML)["composite"])


def test_configs_name_the_transformer_presets():
    from lrp_tasks.engine import CPLRP, AttnLRP

    composite = build_composite({"preset": "CPLRP", "linear_gamma": 0.05, "convention": "lxt"})
    assert composite.name == CPLRP(linear_gamma=0.05, convention="lxt").name
    assert build_composite("AttnLRP").name == AttnLRP().name


def test_configs_give_attention_steps_their_rules_by_family():
    from lrp_tasks.engine import LRP, MatMul, Softmax, StopRule, UniformRule
    from lrp_tasks.models.vit import build_timm_vit

    composite = build_composite(
        {"rules": [{"type": "MatMul", "rule": {"kind": "Uniform", "softmax_constant": True}},
                   {"type": "Softmax", "rule": {"kind": "Stop"}}]}
    )
    analyzer = LRP(build_timm_vit(), composite, skip_checks=True)
    rules = {type(s.module): analyzer.step_rules[i] for i, s in enumerate(analyzer.plan.steps)}
    assert rules[MatMul] == UniformRule(softmax_constant=True) and rules[Softmax] == StopRule()
