"""Every deletion of the store removes only what it wrote and never follows a symlink (issue 19, 1-2)."""

from __future__ import annotations

import os
import pathlib

import pytest

from lrp_tasks.store import AuditStore, AuditStoreError, open_audit
from lrp_tasks.store.layout import AuditLayout
from lrp_tasks.store.removal import SymlinkedStoreError
from lrp_tasks.store.verify import repair_store, uncommit_shards

from .store_helpers import make_spec, write_all


def _finished(root: pathlib.Path) -> None:
    store = AuditStore.create_or_open(root, make_spec())
    write_all(store)
    store.close()


def _plant(root: pathlib.Path, outside: pathlib.Path, zarr_too: bool) -> dict[pathlib.Path, str]:
    """A user's files in every folder of the store, and symlinks to a precious folder outside it."""
    outside.mkdir(exist_ok=True)
    (outside / "precious.txt").write_text("precious")
    planted = {
        root / "notes.txt": "top",
        root / "summaries" / "mine.csv": "mine",
        root / "manifest" / "README": "readme",
        root / "staging" / "user_in_staging.txt": "staged by hand",
        root / "staging" / f".foo.{'a' * 31}.tmp": "not quite a store temporary",
        root / "cache" / "mine.txt": "cache",
    }
    if zarr_too:
        planted[root / "relevance.zarr" / "README.txt"] = "about the group"
        planted[root / "relevance.zarr" / "relevance" / "mine.txt"] = "next to the chunks"
    for path, text in planted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    links = [root / "staging" / "link_dir", root / "summaries" / "link_dir", root / "manifest" / "link_dir"]
    if zarr_too:
        links.append(root / "relevance.zarr" / "link_dir")
    for link in links:
        link.symlink_to(outside, target_is_directory=True)
    return planted


def _intact(planted: dict[pathlib.Path, str], outside: pathlib.Path) -> None:
    for path, text in planted.items():
        assert path.read_text() == text, path
    assert (outside / "precious.txt").read_text() == "precious"


def test_fresh_refuses_to_discard_a_group_holding_user_files_and_deletes_nothing(tmp_path) -> None:
    root = tmp_path / "audit"
    _finished(root)
    planted = _plant(root, tmp_path / "outside", zarr_too=True)
    with pytest.raises(AuditStoreError, match=r"relevance.zarr/ holds entries the store did not write.*README.txt"):
        AuditStore.create_or_open(root, make_spec(dtype="float16"), mode="overwrite")
    _intact(planted, tmp_path / "outside")
    assert (root / "relevance.zarr" / "link_dir").is_symlink()
    assert open_audit(str(root)).committed_shards == {0, 1, 2}  # nothing of the audit was lost either


def test_every_deleting_command_keeps_user_files_and_symlinks(tmp_path, caplog) -> None:
    root, outside = tmp_path / "audit", tmp_path / "outside"
    _finished(root)
    planted = _plant(root, outside, zarr_too=False)
    # staging clean-up (every run that takes the lock), then un-commit and verify --repair
    store = AuditStore.create_or_open(root, make_spec())
    uncommit_shards(AuditLayout(str(root)), [1])
    store.close()
    (root / "summaries" / "part-000002.parquet").write_bytes(b"damaged")
    report, removed = repair_store(str(root))
    assert 2 in report.damaged and "summaries/part-000002.parquet" in removed
    _intact(planted, outside)
    # --fresh
    store = AuditStore.create_or_open(root, make_spec(dtype="float16"), mode="overwrite")
    assert store.committed_shards() == set()
    store.close()
    _intact(planted, outside)
    for link in ("staging/link_dir", "summaries/link_dir", "manifest/link_dir"):
        assert (root / link).is_symlink()
    assert "kept files the store did not write" in caplog.text and "user_in_staging.txt" in caplog.text


def test_a_symlink_in_place_of_a_part_is_not_followed_by_an_uncommit(tmp_path) -> None:
    root = tmp_path / "audit"
    _finished(root)
    target = tmp_path / "mine.parquet"
    (root / "summaries" / "part-000001.parquet").rename(target)
    (root / "summaries" / "part-000001.parquet").symlink_to(target)
    removal = uncommit_shards(AuditLayout(str(root)), [1])
    assert removal.kept == ["summaries/part-000001.parquet"]
    assert target.exists() and (root / "summaries" / "part-000001.parquet").is_symlink()


@pytest.mark.parametrize("folder", ["staging", "summaries", "manifest", "relevance.zarr"])
def test_a_symlinked_store_folder_is_refused_by_repair_and_run(tmp_path, folder) -> None:
    root, outside = tmp_path / "audit", tmp_path / "outside"
    _finished(root)
    outside.mkdir()
    (outside / "precious.txt").write_text("precious")
    if folder == "relevance.zarr":
        os.rename(root / folder, outside / "group")
        (root / folder).symlink_to(outside / "group", target_is_directory=True)
    else:
        for name in os.listdir(root / folder):
            os.rename(root / folder / name, outside / name)
        (root / folder).rmdir()
        (root / folder).symlink_to(outside, target_is_directory=True)
    (outside / f".x.{'0' * 32}.tmp").write_text("looks like a temporary, lives outside")
    before = sorted(p.name for p in outside.iterdir())
    with pytest.raises(SymlinkedStoreError, match=rf"{folder} is a symlink"):
        repair_store(str(root))
    with pytest.raises(SymlinkedStoreError, match="never writes or deletes through a symlink"):
        AuditStore.create_or_open(root, make_spec(), mode="overwrite")
    assert sorted(p.name for p in outside.iterdir()) == before
    assert (outside / "precious.txt").read_text() == "precious"
