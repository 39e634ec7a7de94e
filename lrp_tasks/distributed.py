"""Running shards on Ray: a pool of actors, each loading the model once and serving many shards.

This is the only module that imports Ray. Measured on a 2-CPU machine (10,240 samples, 2 s model
load), an actor pool driven from one process beat one Prefect task per shard on prefect-ray's
RayTaskRunner (27-28 s vs 40-60 s) and Ray Data ``map_batches`` (35 s, more memory); see README.

Failure handling: an actor that dies (OOM, segfault, killed node) is restarted by Ray and the
shard is retried on the next free actor; a shard that fails ``retries + 1`` times is reported
with its cause after every other shard has been committed."""

from __future__ import annotations

import collections
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from lrp_tasks import local_ray
from lrp_tasks.config import AuditConfig, ConfigError, RaySpec
from lrp_tasks.shard import TEST_HOOKS, SampleError, ShardExplainer, ShardOutcome, TargetError
from lrp_tasks.store import ShardValidationError

log = logging.getLogger("lrp_tasks.distributed")

Shard = tuple[int, int, int]
PASSED_ENV = (*TEST_HOOKS, "CUDA_VISIBLE_DEVICES")
PIPELINE_DEPTH = 2
DATA_ERRORS = (SampleError, TargetError, ConfigError, ShardValidationError)
"""Failures that a retry would only repeat: the shard fails at once, naming the cause."""
"""Shards queued per actor: the next one is ready when the current one is committed."""


class ShardsFailedError(RuntimeError):
    """Some shards failed on every attempt; all others are committed."""

    def __init__(self, failures: dict[int, str]) -> None:
        self.failures = failures
        detail = "; ".join(f"shard {sid}: {cause}" for sid, cause in sorted(failures.items()))
        super().__init__(f"{len(failures)} shard(s) failed after all retries ({detail})")


class ClusterResourceError(RuntimeError):
    """The Ray cluster cannot host even one worker as configured (it would wait forever)."""


@dataclass
class WorkerPlan:
    workers: int
    num_cpus: float
    num_gpus: float
    notes: list[str] = field(default_factory=list)


def plan_workers(spec: RaySpec, resources: dict[str, float]) -> WorkerPlan:
    """Fit the configured workers to what the cluster has, instead of letting Ray wait forever."""
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    notes: list[str] = []
    num_gpus = spec.gpus_per_worker
    if num_gpus > 0 and gpus == 0:
        notes.append(f"config asks for {num_gpus} GPU per worker but the Ray cluster has no GPU: running on CPU")
        num_gpus = 0.0
    if num_gpus > gpus:
        raise ClusterResourceError(
            f"each worker asks for {num_gpus} GPU but the Ray cluster has {gpus:g} GPU(s) in all; "
            "lower ray.gpus_per_worker"
        )
    if spec.cpus_per_worker > cpus:
        raise ClusterResourceError(
            f"each worker asks for {spec.cpus_per_worker} CPU but the Ray cluster has {cpus:g}; "
            "lower ray.cpus_per_worker"
        )
    fit = [int(cpus // spec.cpus_per_worker)]
    if num_gpus > 0:
        fit.append(int(gpus // num_gpus))
    workers = max(1, min(spec.workers, *fit))
    if workers < spec.workers:
        notes.append(f"the Ray cluster fits {workers} of the {spec.workers} configured workers")
    return WorkerPlan(workers, spec.cpus_per_worker, num_gpus, notes)


@contextmanager
def ray_session(spec: RaySpec, num_cpus: float | None = None) -> Iterator[dict[str, float]]:
    """Attach to ``spec.address`` (or ``$RAY_ADDRESS``), else start a private local Ray (loopback
    only, see lrp_tasks.local_ray): never attach by accident to a cluster that happens to run on
    this machine."""
    if ray.is_initialized():
        yield ray.cluster_resources()
        return
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "logging_level": logging.WARNING}
    address = spec.address or os.environ.get("RAY_ADDRESS")
    with ExitStack() as session:
        session.callback(ray.shutdown)  # also after a failed or interrupted start (a no-op if none)
        if address:
            with local_ray.keep_signal_handler():
                ray.init(address=address, **kwargs)
        else:
            cpus = num_cpus or max(spec.workers * spec.cpus_per_worker, 1)
            session.enter_context(local_ray.private_auth())
            with local_ray.keep_signal_handler():
                local_ray.start_private_ray(int(max(cpus, os.cpu_count() or 1)), **kwargs)
        yield ray.cluster_resources()


@ray.remote
class ShardWorker:
    """One Ray actor: builds the ShardExplainer (model load) once, then explains shards."""

    def __init__(self, cfg_json: dict[str, Any], digest: str, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.explainer = ShardExplainer(AuditConfig.model_validate(cfg_json), digest=digest)

    def where(self) -> dict[str, Any]:
        return {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(), "pid": os.getpid(),
                "device": str(self.explainer.device)}

    def explain(self, shard_id: int, start: int, stop: int) -> dict[str, Any]:
        started_at = time.time()  # wall clock: when the shard really began (not when the driver saw it end)
        outcome = self.explainer.explain_shard(shard_id, start, stop)
        out = outcome.to_dict()
        out["started_at"] = started_at
        out["node"] = ray.get_runtime_context().get_node_id()
        return out


def _cause(exc: BaseException) -> str:
    if isinstance(exc, RayActorError):
        return "worker process died (RayActorError)"
    if isinstance(exc, RayTaskError):
        inner = exc.cause if getattr(exc, "cause", None) is not None else exc
        return f"{type(inner).__name__}: {str(inner).splitlines()[0] if str(inner) else ''}"
    return f"{type(exc).__name__}: {exc}"


def run_shards(
    cfg: AuditConfig,
    digest: str,
    shards: list[Shard],
    on_done: Callable[[ShardOutcome, dict[str, Any]], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Explain `shards` on a Ray actor pool; returns one outcome dict per shard (with its node).

    Raises ShardsFailedError naming the shards that failed every attempt (the rest is committed)."""
    if not shards:
        return []
    note = on_note or log.info
    with ray_session(cfg.ray) as resources:
        plan = plan_workers(cfg.ray, resources)
        for text in plan.notes:
            note(text)
        plan.workers = min(plan.workers, len(shards))
        cfg_json = cfg.model_dump(mode="json")
        options = {"num_cpus": plan.num_cpus, "num_gpus": plan.num_gpus, "max_restarts": -1, "max_task_retries": 0}
        threads = int(plan.num_cpus) or 1
        actors = [ShardWorker.options(**options).remote(cfg_json, digest, threads) for _ in range(plan.workers)]
        return _drive(actors, shards, cfg.retries, on_done)


class _ActorPool:
    """Feeds shards to actors, `depth` at a time each, and survives actors dying.

    Ray runs an actor's calls in submission order, so when an actor dies the first of its pending
    shards is the one that was running: only that shard is charged an attempt; the ones queued
    behind it are resubmitted free. A dead actor gets no new work until Ray has restarted it (a
    call to a restarting actor fails at once), which a ``where()`` probe tells."""

    def __init__(self, actors: list[Any], retries: int, depth: int) -> None:
        self.actors, self.retries, self.depth = actors, retries, depth
        self.queue: collections.deque[Shard] = collections.deque()
        self.attempts: collections.Counter[int] = collections.Counter()
        self.last_actor: dict[int, int] = {}
        self.in_flight: dict[Any, tuple[int, Shard]] = {}
        self.pending: list[list[Any]] = [[] for _ in actors]  # per actor, in execution order
        self.down: set[int] = set()
        self.probes: dict[Any, int] = {}
        self.reprobe_at: dict[int, float] = {}
        self.failures: dict[int, str] = {}

    def submit(self) -> None:
        while self.queue:
            free = [i for i in range(len(self.actors)) if i not in self.down and len(self.pending[i]) < self.depth]
            if not free:
                return
            shard = self.queue.popleft()
            # the least loaded actor; a retried shard goes to another actor when one is free
            free.sort(key=lambda i: (i == self.last_actor.get(shard[0]), len(self.pending[i])))
            pick = free[0]
            self.last_actor[shard[0]] = pick
            ref = self.actors[pick].explain.remote(*shard)
            self.in_flight[ref] = (pick, shard)
            self.pending[pick].append(ref)

    def _probe(self, index: int) -> None:
        self.probes[self.actors[index].where.remote()] = index

    def actor_died(self, index: int) -> None:
        """Everything still pending on the actor goes back to the front of the queue, free."""
        for ref in self.pending[index]:
            _, shard = self.in_flight.pop(ref)
            self.queue.appendleft(shard)
        self.pending[index] = []
        if index not in self.down:
            self.down.add(index)
            self._probe(index)

    def shard_failed(self, shard: Shard, cause: str, final: bool = False) -> None:
        self.attempts[shard[0]] += 1
        if final or self.attempts[shard[0]] > self.retries:
            self.failures[shard[0]] = f"{cause} (after {self.attempts[shard[0]]} attempts)"
        else:
            log.warning("shard %s attempt %s failed: %s; retrying", shard[0], self.attempts[shard[0]], cause)
            self.queue.append(shard)

    def busy(self) -> bool:
        return bool(self.in_flight) or (bool(self.queue) and bool(self.down))

    def step(self) -> dict[str, Any] | None:
        """Wait for the next event; returns a committed shard's outcome, or None."""
        now = time.monotonic()
        for index, when in list(self.reprobe_at.items()):
            if when <= now:
                del self.reprobe_at[index]
                self._probe(index)
        waiting = list(self.in_flight) + list(self.probes)
        if not waiting:
            time.sleep(0.2)
            return None
        ready, _ = ray.wait(waiting, num_returns=1, timeout=0.5)
        if not ready:
            return None
        ref = ready[0]
        if ref in self.probes:
            index = self.probes.pop(ref)
            try:
                ray.get(ref)
            except RayActorError:
                self.reprobe_at[index] = time.monotonic() + 0.5
            else:
                self.down.discard(index)
            self.submit()
            return None
        index, shard = self.in_flight[ref]
        running = self.pending[index][0]  # calls run in submission order
        try:
            out = ray.get(ref)
        except RayActorError as exc:
            # any of the actor's pending calls may surface first; the one that was running is
            # charged, the others go back to the queue
            self.shard_failed(self.in_flight[running][1], _cause(exc))
            self.in_flight.pop(running)
            self.pending[index].remove(running)
            self.actor_died(index)
            self.submit()
            return None
        except RayTaskError as exc:
            self._finished(ref, index)
            # bad data fails the same way every time: no retry
            final = isinstance(exc, DATA_ERRORS) or isinstance(getattr(exc, "cause", None), DATA_ERRORS)
            self.shard_failed(shard, _cause(exc), final=final)
            self.submit()
            return None
        self._finished(ref, index)
        self.submit()
        return out

    def _finished(self, ref: Any, index: int) -> None:
        self.in_flight.pop(ref)
        self.pending[index].remove(ref)


def _drive(
    actors: list[Any],
    shards: list[Shard],
    retries: int,
    on_done: Callable[[ShardOutcome, dict[str, Any]], None] | None,
    depth: int = PIPELINE_DEPTH,
) -> list[dict[str, Any]]:
    """Explain all shards on the pool; report each committed shard as it arrives."""
    pool = _ActorPool(actors, retries, depth)
    pool.queue.extend(shards)
    pool.submit()
    results: list[dict[str, Any]] = []
    while pool.busy():
        out = pool.step()
        if out is None:
            continue
        results.append(out)
        if on_done is not None:
            fields = {k: v for k, v in out.items() if k in ShardOutcome.__dataclass_fields__}
            on_done(ShardOutcome(**fields), out)
    if pool.failures:
        raise ShardsFailedError(pool.failures)
    return results


