"""Issue 19.3: ``verify`` reads the dataset again and compares it with the inputs the audit kept, so a
dataset rewritten in place (same size, same mtime) makes the store unsound instead of "ok" (before,
only a resume's fingerprint noticed; ``verify`` called such a store sound)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from flows.cli.main import main
from lrp_tasks.audit.kept_inputs import compare_kept_inputs
from lrp_tasks.audit.prepare import open_shard_explainer
from lrp_tasks.config import parse_config
from tests.digits_audit import digits_audit_config

N, SHARD = 48, 16


def _audit(tmp_path: Path, keep_input: bool = True) -> tuple[Path, Path]:
    """An array dataset of 48 random 8×8 samples, audited in three shards (all committed)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "samples.npy"
    np.save(data, np.random.default_rng(0).random((N, 1, 8, 8), dtype=np.float32))
    out = tmp_path / "audit"
    cfg = digits_audit_config(
        out,
        "kept",
        dataset={"kind": "array", "path": str(data)},
        shard_size=SHARD,
        batch_size=SHARD,
        storage={"keep_input": keep_input},
    )
    explainer = open_shard_explainer(parse_config(cfg), device="cpu")
    for sid in range(N // SHARD):
        assert explainer.explain_shard(sid, sid * SHARD, (sid + 1) * SHARD).explained
    explainer.store.close()
    return data, out


def _rewrite_row_in_place(data: Path, row: int) -> None:
    """Change one sample's bytes in the middle of the file, keeping size, inode and mtime (``cp -p``,
    an archive extracted with preserved times, ``touch -r``)."""
    before = data.stat()
    arr = np.load(data)
    offset = before.st_size - arr.nbytes + row * arr[0].nbytes
    with open(data, "r+b") as f:
        f.seek(offset + 8)
        f.write(np.float32(7.0).tobytes())
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (data.stat().st_size, data.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_kept_inputs_equal_an_unchanged_dataset(tmp_path, capsys) -> None:
    _, out = _audit(tmp_path)
    found = compare_kept_inputs(out)
    assert found.ok and found.compared == N and found.skipped is None
    assert main(["verify", str(out)]) == 0
    assert f"{N} kept sample(s) equal to" in capsys.readouterr().out


def test_verify_finds_a_sample_rewritten_in_place(tmp_path, capsys) -> None:
    data, out = _audit(tmp_path)
    _rewrite_row_in_place(data, 21)  # shard 1, between the blocks the fingerprint samples
    assert compare_kept_inputs(out).differing == {1: 21}
    assert main(["verify", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "shard 1: DATASET CHANGED: sample 21 of" in printed and "samples.npy" in printed
    assert "--fresh" in printed and "ok:" not in printed
    assert main(["verify", str(out), "--repair"]) == 1  # repair cannot make it sound
    assert main(["verify", str(out), "--no-inputs"]) == 0  # the store itself is intact


def test_a_dataset_of_another_length_is_named(tmp_path, capsys) -> None:
    data, out = _audit(tmp_path)
    np.save(data, np.zeros((N - 1, 1, 8, 8), np.float32))
    assert "now has 47 samples, the audit 48" in (compare_kept_inputs(out).size_change or "")
    assert main(["verify", str(out)]) == 1


def test_without_kept_inputs_or_without_the_dataset_it_says_why(tmp_path, capsys) -> None:
    _, out = _audit(tmp_path / "a", keep_input=False)
    assert "storage.keep_input: false" in (compare_kept_inputs(out).skipped or "")
    data, out = _audit(tmp_path / "b")
    data.unlink()
    found = compare_kept_inputs(out)
    assert found.skipped and "cannot be read" in found.skipped and found.ok
    assert main(["verify", str(out)]) == 0
    assert "kept inputs not compared" in capsys.readouterr().out
