"""Model sources: strict, pickle-free weight loading, torch.export, builders; TorchScript refused."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lrp_tasks.config import BuilderModelSpec, ExportedModelSpec
from lrp_tasks.models.digits import build_digits_cnn
from lrp_tasks.models.resnet import build_resnet
from lrp_tasks.sources import ModelLoadError, load_model

DIGITS = "lrp_tasks.models.digits:build_digits_cnn"


class MakesMarker:
    """Unpickling this runs ``exec``, which would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def trained_state(seed: int = 0, **kwargs: object) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_digits_cnn(**kwargs).state_dict()  # type: ignore[arg-type]


def spec(weights: Path | None = None, **kwargs: object) -> BuilderModelSpec:
    return BuilderModelSpec(kind="builder", builder=DIGITS, weights=str(weights) if weights else None, **kwargs)


def test_pickle_that_would_execute_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"conv1.weight": MakesMarker(marker)}, evil)
    with pytest.raises(
        ModelLoadError, match=r"refusing to load .*needs code execution.*\(Unsupported global: GLOBAL exec\)"
    ):
        load_model(spec(evil))
    assert not marker.exists()
    # control: the payload is live, an unrestricted unpickler would have run it
    torch.load(evil, weights_only=False)
    assert marker.read_text() == "pwned"


def test_a_pickled_module_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pt"
    torch.save(build_digits_cnn(), path)
    with pytest.raises(ModelLoadError, match=r"Save a state dict instead"):
        load_model(spec(path))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_load_strictly_and_are_fingerprinted(tmp_path: Path, suffix: str) -> None:
    state = trained_state(seed=3)
    path = tmp_path / f"w{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    loaded = load_model(spec(path))
    assert not loaded.module.training
    for key, value in loaded.module.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert loaded.weights_digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert DIGITS in loaded.description and str(path) in loaded.description


def test_missing_unexpected_and_misshapen_keys_are_all_listed(tmp_path: Path) -> None:
    state = trained_state(num_classes=5)
    del state["conv1.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelLoadError) as info:
        load_model(spec(path))
    message = str(info.value)
    assert "missing keys (1): conv1.bias" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "wrong shapes (2): fc2.bias: file (5,) vs model (10,), fc2.weight: file (5, 64) vs model (10, 64)" in message


def test_nested_checkpoint_and_prefix(tmp_path: Path) -> None:
    state = trained_state(seed=1)
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    with pytest.raises(ModelLoadError, match=r"name its entry with model\.key"):
        load_model(spec(path))
    with pytest.raises(ModelLoadError, match="has no entry 'model'"):
        load_model(spec(path, key="model"))
    loaded = load_model(spec(path, key="state_dict", strip_prefix="module."))
    assert torch.equal(loaded.module.state_dict()["fc2.weight"], state["fc2.weight"])


def test_builder_kwargs_and_missing_files(tmp_path: Path) -> None:
    loaded = load_model(spec(kwargs={"num_classes": 4}))
    assert loaded.module.fc2.out_features == 4
    assert "builder's own weights" in loaded.description and len(loaded.weights_digest) == 64
    with pytest.raises(ModelLoadError, match=r"weights file not found: .*none\.safetensors"):
        load_model(spec(tmp_path / "none.safetensors"))
    with pytest.raises(
        ModelLoadError,
        match=r"cannot import the builder module 'no_such_pkg\.models' \(looked in .* and the installed packages\): "
        r"No module named 'no_such_pkg'",
    ):
        load_model(BuilderModelSpec(kind="builder", builder="no_such_pkg.models:build"))
    with pytest.raises(ModelLoadError, match="has no attribute 'build_nothing'"):
        load_model(BuilderModelSpec(kind="builder", builder="lrp_tasks.models.digits:build_nothing"))
    with pytest.raises(ModelLoadError, match=r"failed: .*unexpected keyword argument 'colour'"):
        load_model(spec(kwargs={"colour": "red"}))


def test_relative_paths_resolve_against_root(tmp_path: Path) -> None:
    save_file(trained_state(), str(tmp_path / "w.safetensors"))
    assert load_model(spec(Path("w.safetensors")), root=tmp_path).weights_digest


def test_builder_module_is_imported_from_the_config_directory(tmp_path: Path, monkeypatch) -> None:
    """``builder: mynet:build`` next to the config works from any working directory, also when the
    module imports a sibling; ``module_dir`` (relative to the root) points elsewhere."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mynet_parts_4711.py").write_text("WIDTH = 3\n")
    (tmp_path / "conf" / "mynet_4711.py").write_text(
        "from torch import nn\n"
        "def build(classes=2):\n"
        "    import mynet_parts_4711\n"  # imported while the builder runs
        "    return nn.Sequential(nn.Flatten(), nn.Linear(mynet_parts_4711.WIDTH, classes))\n"
    )
    monkeypatch.chdir(tmp_path)  # neither the cwd nor sys.path holds the module
    builder = BuilderModelSpec(kind="builder", builder="mynet_4711:build", kwargs={"classes": 5})
    with pytest.raises(ModelLoadError, match=r"cannot import the builder module 'mynet_4711' \(looked in "):
        load_model(builder)
    assert load_model(builder, root=tmp_path / "conf").module[1].out_features == 5
    for name in ("mynet_4711", "mynet_parts_4711"):
        sys.modules.pop(name, None)
    elsewhere = builder.model_copy(update={"module_dir": "conf"})
    assert load_model(elsewhere, root=tmp_path).module[1].out_features == 5
    assert str(tmp_path / "conf") not in sys.path  # searched while loading only


def test_a_builder_module_that_fails_to_import_is_one_message(tmp_path: Path) -> None:
    (tmp_path / "broken_4711.py").write_text("raise RuntimeError('no GPU here')\n")
    with pytest.raises(ModelLoadError, match=r"importing the builder module 'broken_4711' failed: RuntimeError: no"):
        load_model(BuilderModelSpec(kind="builder", builder="broken_4711:build"), root=tmp_path)


def test_exported_programs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_digits_cnn().eval()
    x = torch.rand(3, 1, 8, 8)
    exported = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(exported))
    loaded = load_model(ExportedModelSpec(kind="export", path=str(exported)))
    assert not loaded.module.training
    torch.testing.assert_close(loaded.module(x), model(x))
    assert loaded.weights_digest == hashlib.sha256(exported.read_bytes()).hexdigest()


def test_torchscript_kind_is_refused_with_the_way_out() -> None:
    from pydantic import TypeAdapter, ValidationError

    from lrp_tasks.config import ModelSpec

    with pytest.raises(ValidationError, match=r"(?s)model.kind 'torchscript' is not supported.*kind: export"):
        TypeAdapter(ModelSpec).validate_python({"kind": "torchscript", "path": "m.pt"})


def test_resnet_builder_has_torchvision_names_and_shapes() -> None:
    state = build_resnet().state_dict()  # ResNet-18
    assert len(state) == 122
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) == 11_689_512
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert state["layer4.1.bn2.running_var"].shape == (512,)
    assert state["fc.weight"].shape == (1000, 512)
    small = build_resnet([1, 1], num_classes=10, in_channels=1, width=8, stem="small").eval()
    assert small(torch.rand(2, 1, 8, 8)).shape == (2, 10)
