"""The builder allowlist by name, before anything is imported (lrp_tasks.sources.builders)."""

from __future__ import annotations

import pytest

from lrp_tasks.sources.builders import ZOOS_ENV, check_builder_name
from lrp_tasks.sources.errors import ModelLoadError


@pytest.mark.parametrize(
    "target", ["os:system", "os.path:join", "shutil:rmtree", "pickle:loads", "sys:exit", "json:loads"]
)
def test_the_standard_library_is_refused_whoever_wrote_the_config(target: str) -> None:
    for trusted in (True, False):
        with pytest.raises(ModelLoadError, match="standard library"):
            check_builder_name(target, trusted_code=trusted)


def test_model_zoos_are_allowed_only_when_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ZOOS_ENV, raising=False)
    check_builder_name("lrp_tasks.models.digits:build_digits_cnn", trusted_code=False)
    for target in ("torchvision.models:resnet18", "timm:create_model"):
        with pytest.raises(ModelLoadError, match="not allowed"):
            check_builder_name(target, trusted_code=False)
        check_builder_name(target, trusted_code=True)  # a config file may name any installed package
    monkeypatch.setenv(ZOOS_ENV, "torchvision, timm")
    check_builder_name("torchvision.models:resnet18", trusted_code=False)
    check_builder_name("timm:create_model", trusted_code=False)
    with pytest.raises(ModelLoadError, match="not allowed"):
        check_builder_name("torchvision.io:read_file", trusted_code=False)  # the zoo is its models only
    monkeypatch.setenv(ZOOS_ENV, "huggingface")
    with pytest.raises(ModelLoadError, match=f"{ZOOS_ENV} names unknown model zoo"):
        check_builder_name("torchvision.models:resnet18", trusted_code=False)
