"""One identity: the config digest without the result-neutral fields (one list), recorded by the
preparation, checked by the store on resume by the same list."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrp_tasks.audit.identity import RESULT_NEUTRAL_FIELDS, audit_digest
from lrp_tasks.audit.prepare import prepare_audit, resolve_audit
from lrp_tasks.config import parse_config
from lrp_tasks.store import AuditStore
from tests.digits_audit import digits_audit_config
from tests.store.store_helpers import make_spec, write_all


def _array_cfg(tmp_path: Path, data: Path, **overrides):
    np.save(data, np.zeros((8, 1, 8, 8), dtype=np.float32))
    return parse_config(
        digits_audit_config(tmp_path / "audit", "identity", dataset={"kind": "array", "path": str(data)}, **overrides)
    )


def test_result_neutral_fields_leave_the_digest_alone_and_results_change_it(tmp_path) -> None:
    base = _array_cfg(tmp_path, tmp_path / "x.npy")
    neutral = [
        {"batch_size": 7},
        {"retries": 9},
        {"output": str(tmp_path / "elsewhere")},
        {"ray": base.ray.model_copy(update={"workers": 5, "address": "ray://head:10001"})},
        {"dataset": base.dataset.model_copy(update={"path": str(tmp_path / "moved" / "x.npy")})},
        {"model": base.model.model_copy(update={"weights": "/mnt/other/digits_cnn.safetensors"})},
    ]
    for update in neutral:
        assert audit_digest(base.model_copy(update=update)) == audit_digest(base), update
    assert audit_digest(base.model_copy(update={"shard_size": 32})) != audit_digest(base)
    assert audit_digest(base.model_copy(update={"seed": "logit"})) != audit_digest(base)
    assert {"batch_size", "dataset.path", "model.weights", "ray", "output"} <= set(RESULT_NEUTRAL_FIELDS)


def test_the_preparation_records_the_audit_digest_with_the_one_list(tmp_path) -> None:
    cfg = _array_cfg(tmp_path, tmp_path / "x.npy")
    spec = prepare_audit(cfg).spec
    assert spec.operational == RESULT_NEUTRAL_FIELDS
    assert spec.digest == audit_digest(resolve_audit(cfg)) == audit_digest(cfg)


def test_a_store_written_with_a_shorter_neutral_list_resumes_by_todays_list(tmp_path) -> None:
    """The stored config is re-hashed by the list in force: an older store whose digest still covered
    ``batch_size`` resumes with another batch size."""
    config = {"composite": "EpsilonPlusFlat", "batch_size": 64, "output": "/a"}
    old = AuditStore.create_or_open(tmp_path, make_spec(config=config, operational=("output",)))
    write_all(old, only={0})
    old.close()
    again = AuditStore.create_or_open(
        tmp_path, make_spec(config={**config, "batch_size": 8}, operational=RESULT_NEUTRAL_FIELDS)
    )
    assert again.committed_shards() == {0}
    again.close()
