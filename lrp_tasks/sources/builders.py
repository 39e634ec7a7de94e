"""Which builders a config may name: a builder is code the run calls, so who wrote the config matters.

* Always refused, by name, before anything is imported: the standard library (``sys.stdlib_module_names``)
  and ``builtins``, ``subprocess``, ``os``, ``importlib``, ``pickle``, ``shutil``, ``sys``; also a builder
  whose resolved object is defined there (``some_module:os.system``).
* Trusted code (a config file on the worker's disk: its owner could as well write Python): any other
  importable module, also one beside the config file.
* Untrusted code (the deployment's typed ``config`` form, anyone with access to the Prefect API): only
  the allowlist: ``lrp_tasks.models``, builders registered in the ``lrp_audit.builders`` entry-point
  group, and the model zoos enabled in ``LRP_AUDIT_BUILDER_ZOOS`` (``torchvision``, ``timm``).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from .errors import ModelLoadError

ENTRY_POINT_GROUP = "lrp_audit.builders"
"""Entry points ``name = "package.module:function"`` (or a whole ``package.module``) a form may name."""
ZOOS_ENV = "LRP_AUDIT_BUILDER_ZOOS"
"""Comma-separated model zoos a form may name builders from, e.g. ``torchvision,timm``."""
ZOOS = {"torchvision": "torchvision.models", "timm": "timm"}
"""Zoo name -> the package whose builders it allows."""
PROJECT_MODELS = "lrp_tasks.models"
DENIED = frozenset({"builtins", "subprocess", "os", "importlib", "pickle", "shutil", "sys"})
HOW_TO_REGISTER = (
    f"register it in the {ENTRY_POINT_GROUP!r} entry-point group of an installed package "
    f"(see docs/config.md), enable a model zoo with {ZOOS_ENV}=torchvision,timm, or run the config from a file on "
    "the worker (lrp-audit run FILE, or the flow's config_path)"
)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _denied(module: str) -> bool:
    top = module.partition(".")[0]
    return top in DENIED or top in sys.stdlib_module_names


def _registered() -> list[str]:
    return [ep.value.strip() for ep in entry_points(group=ENTRY_POINT_GROUP)]


def _zoos() -> list[str]:
    names = [n.strip() for n in os.environ.get(ZOOS_ENV, "").split(",") if n.strip()]
    unknown = [n for n in names if n not in ZOOS]
    if unknown:
        raise ModelLoadError(f"{ZOOS_ENV} names unknown model zoo(s) {', '.join(unknown)}; known: {', '.join(ZOOS)}")
    return [ZOOS[n] for n in names]


def check_builder_name(target: str, trusted_code: bool) -> None:
    """Refuse `target` (``module:attr``) before its module is imported, when it is not allowed for a
    config of this provenance."""
    module = target.partition(":")[0]
    if _denied(module):
        raise ModelLoadError(
            f"builder {target!r} is refused: {module.partition('.')[0]!r} is the standard library or a system "
            f"module, never a model builder; {HOW_TO_REGISTER}"
        )
    if trusted_code:
        return
    allowed = _within(module, PROJECT_MODELS) or any(_within(module, zoo) for zoo in _zoos())
    if allowed or any(target == value or module == value for value in _registered()):
        return
    raise ModelLoadError(
        f"builder {target!r} is not allowed in a config submitted as a flow parameter (only lrp_tasks.models, "
        f"registered builders and enabled zoos are); {HOW_TO_REGISTER}"
    )


def check_builder_object(target: str, obj: Any, trusted_code: bool) -> None:
    """Refuse a resolved builder defined in a denied module (``allowed.module:os.system``), and, for an
    untrusted config, an attribute path that walks through another module."""
    if isinstance(obj, ModuleType) and not trusted_code:
        raise ModelLoadError(
            f"builder {target!r}: its attribute path goes through module {obj.__name__}; {HOW_TO_REGISTER}"
        )
    defined_in = getattr(obj, "__module__", None) or type(obj).__module__
    if isinstance(defined_in, str) and _denied(defined_in):
        raise ModelLoadError(
            f"builder {target!r} is refused: it is {defined_in}.{getattr(obj, '__qualname__', '?')}, "
            f"not a model builder; {HOW_TO_REGISTER}"
        )
