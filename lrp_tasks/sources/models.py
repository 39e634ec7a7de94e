"""Load the model a config names, never running code stored in a model file.

* builder + weights: the architecture comes from importable code, the weights from safetensors
  (no code at all) or from a ``torch.load(weights_only=True)`` state dict (a restricted unpickler
  that refuses any global that is not a tensor type); loading is strict and a mismatch lists
  every missing key, unexpected key and wrong shape;
* ``torch.export`` programs: the format holds a graph, not pickled code (the engine lowers its aten
  operations onto layers). TorchScript archives are not accepted: they cannot be explained.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import pickle
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrp_tasks.config.io import resolve_path
from lrp_tasks.config.model_spec import DEFAULT_MODEL_SEED, BuilderModelSpec, ExportedModelSpec, ModelSpec

from .builders import check_builder_name, check_builder_object
from .errors import ModelLoadError


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to explain: in eval mode, on the CPU, with the fingerprint of its file."""

    module: nn.Module
    weights_digest: str
    """sha256 of the weights/model file; of the state dict when a builder has no weights file."""
    description: str


def file_digest(path: str | Path) -> str:
    """sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_dict_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over sorted keys, dtypes, shapes and bytes of a state dict."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _searching(directory: Path | None) -> Iterator[None]:
    """`directory` first on ``sys.path`` while a builder is imported and called (its own imports)."""
    entry = str(directory) if directory is not None else None
    if entry is None or entry in sys.path:
        yield
        return
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def import_builder(target: str, search_dir: str | Path | None = None, *, trusted_code: bool = True) -> Any:
    """The callable named by ``package.module:attr.path``; the module is looked up in `search_dir`
    first (the config file's directory), then in the installed packages. ``trusted_code``: the config
    comes from a file on this machine; False (a flow's typed form) allows only the allowlist of
    ``lrp_tasks.sources.builders`` and never searches `search_dir`."""
    check_builder_name(target, trusted_code)  # before anything is imported
    if not trusted_code:
        search_dir = None
    module_name, _, attr_path = target.partition(":")
    where = f"{search_dir} and the installed packages" if search_dir is not None else "the installed packages"
    try:
        with _searching(Path(search_dir) if search_dir is not None else None):
            obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ModelLoadError(f"cannot import the builder module {module_name!r} (looked in {where}): {exc}") from None
    except Exception as exc:  # the module itself raised while importing: one line, not a traceback
        raise ModelLoadError(
            f"importing the builder module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise ModelLoadError(f"builder {target!r}: {module_name} has no attribute {attr_path!r}") from None
        check_builder_object(target, obj, trusted_code)
    if not callable(obj):
        raise ModelLoadError(f"builder {target!r} is not callable")
    return obj


def read_state_dict(path: Path, key: str | None = None, strip_prefix: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, without executing code from it."""
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read safetensors file {path}: {exc}") from exc
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            detail = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln), "")
            detail = detail.removeprefix("WeightsUnpickler error: ").split(" was not an allowed global")[0]
            raise ModelLoadError(
                f"refusing to load {path}: its pickle needs code execution, which is never done for a "
                f"weights file ({detail or 'not a plain state dict'}). Save a state dict instead "
                "(torch.save(model.state_dict(), ...) or safetensors.torch.save_file)."
            ) from exc
        except (RuntimeError, OSError, EOFError) as exc:
            raise ModelLoadError(f"cannot read weights file {path}: {exc}") from exc
    if key is not None:
        if not isinstance(state, Mapping) or key not in state:
            keys = ", ".join(sorted(map(str, state))[:10]) if isinstance(state, Mapping) else type(state).__name__
            raise ModelLoadError(f"weights file {path} has no entry {key!r} (top-level entries: {keys})")
        state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(
            f"weights file {path} does not hold a flat state dict of tensors"
            + ("" if key else "; if the state dict is nested in a checkpoint, name its entry with model.key")
        )
    state = dict(state)
    if strip_prefix:
        state = {k.removeprefix(strip_prefix): v for k, v in state.items()}
    return state


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)``, with one message listing every key and shape problem."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    problems = [
        f"{label} ({len(items)}): {', '.join(items)}"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", wrong),
        )
        if items
    ]
    if problems:
        raise ModelLoadError(f"{what} do not fit the model:\n  " + "\n  ".join(problems))
    module.load_state_dict(state, strict=True)


def _check_finite(state: Mapping[str, torch.Tensor], what: str) -> None:
    """Weights with NaN or inf values explain nothing: refuse them naming the first such tensor."""
    for key in sorted(state):
        tensor = state[key]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelLoadError(f"weights {what}: {key} holds {bad} NaN or inf value(s) of {tensor.numel()}")


def _existing(path: str, root: str | Path | None, what: str) -> Path:
    resolved = resolve_path(path, root)
    if not resolved.is_file():
        raise ModelLoadError(f"{what} not found: {path} (resolved to {resolved.absolute()})")
    return resolved


def _set_eval(module: nn.Module) -> nn.Module:
    try:
        module.eval()
    except NotImplementedError:  # exported programs: the graph keeps the mode it was exported in
        for sub in module.modules():
            sub.training = False
    return module


def _load_builder(spec: BuilderModelSpec, root: str | Path | None, trusted_code: bool) -> LoadedModel:
    search_dir = resolve_path(spec.module_dir or ".", root).absolute() if trusted_code else None
    builder = import_builder(spec.builder, search_dir, trusted_code=trusted_code)
    seed = DEFAULT_MODEL_SEED if spec.seed is None else spec.seed
    try:
        # seeded, on a forked generator: every worker builds the same initial weights (a builder
        # without weights), and the caller's random state is left as it was
        with _searching(search_dir), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = builder(**spec.kwargs)
    except Exception as exc:
        raise ModelLoadError(f"builder {spec.builder}(**{spec.kwargs}) failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"builder {spec.builder} returned {type(module).__name__}, not a torch.nn.Module")
    call = f"{spec.builder}({', '.join(f'{k}={v!r}' for k, v in spec.kwargs.items())})"
    if spec.weights is None:
        own = f"{call}, builder's own weights (seed {seed})"
        return LoadedModel(_set_eval(module), state_dict_digest(module.state_dict()), own)
    path = _existing(spec.weights, root, "weights file")
    state = read_state_dict(path, spec.key, spec.strip_prefix)
    load_strict(module, state, f"weights {spec.weights}")
    _check_finite(state, spec.weights)
    return LoadedModel(_set_eval(module), file_digest(path), f"{call} with weights {spec.weights}")


def _load_exported(spec: ExportedModelSpec, root: str | Path | None) -> LoadedModel:
    path = _existing(spec.path, root, "exported program")
    try:
        module = torch.export.load(str(path)).module()
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load exported program {spec.path}: {exc}") from exc
    return LoadedModel(_set_eval(module), file_digest(path), f"torch.export program {spec.path}")


def load_model(source: ModelSpec, root: str | Path | None = None, *, trusted_code: bool = True) -> LoadedModel:
    """Build/load the model `source` describes; relative paths (and a builder's module directory)
    resolve against `root`: the config file's directory (default: the working directory).
    ``trusted_code=False`` for a config that did not come from a file on this machine (a flow's typed
    form): its builder must be on the allowlist (``lrp_tasks.sources.builders``)."""
    if isinstance(source, BuilderModelSpec):
        return _load_builder(source, root, trusted_code)
    if isinstance(source, ExportedModelSpec):
        return _load_exported(source, root)
    raise TypeError(f"not a model source: {source!r}")
