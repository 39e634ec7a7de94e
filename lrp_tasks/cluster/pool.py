"""Running shards on Ray: a pool of actors, each building its worker once (the model load) and serving
many shards.

``lrp_tasks.cluster`` is the only package that imports Ray; what a worker is (``lrp_tasks.audit.run``)
comes in as a class and its arguments. Measured on a 2-CPU machine (10,240 samples, 2 s model
load), an actor pool driven from one process beat one Prefect task per shard on prefect-ray's
RayTaskRunner (27-28 s vs 40-60 s) and Ray Data ``map_batches`` (35 s, more memory); see README.

Failure handling: an actor that dies (OOM, segfault, killed node) is restarted by Ray and the
shard is retried on the next free actor; a shard that fails ``retries + 1`` times is reported
with its cause after every other shard has been committed. An actor whose constructor fails (a
path not mounted on its node, an import error, out of memory loading the model) is recreated at
most ``START_ATTEMPTS`` times, and one that stays down longer than ``START_TIMEOUT_S`` is given up;
when no actor is left the run fails with the constructor's error (no shard is charged for it).

A shard that runs past its deadline (:func:`shard_deadline`) is late: its worker is killed and replaced
(a stopped or hung process would otherwise hold the run forever), the shard is charged an attempt and
retried on another worker, and a note names it. The killed actor's calls are dropped unread, so a late
result is never reported; the process itself is gone before it can commit (Ray kills it at once, or
by SIGKILL within seconds when it does not answer)."""

from __future__ import annotations

import collections
import logging
import os
import socket
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from lrp_tasks.cluster import local_ray
from lrp_tasks.cluster.captured import Captured, captured_stderr
from lrp_tasks.config import RaySpec

log = logging.getLogger("lrp_tasks.cluster.pool")

Shard = tuple[int, int, int]
PASSED_ENV = ("CUDA_VISIBLE_DEVICES",)
"""Environment variables every Ray worker gets from the driver (besides the caller's ``passed_env``)."""
PIPELINE_DEPTH = 2
START_ATTEMPTS = 3
"""Times an actor is created before its constructor's failure fails the run (transient failures retry)."""
START_TIMEOUT_S = float(os.environ.get("LRP_AUDIT_WORKER_START_TIMEOUT", "600"))
"""Longest an actor may stay down (restarting, unschedulable) before it is given up."""
DEADLINE_FACTOR = 10.0
DEADLINE_FLOOR_S = 60.0
"""Without ``ray.shard_deadline_s``: a shard is late after DEADLINE_FACTOR x the median time of the
shards this run has explained, and never before DEADLINE_FLOOR_S."""


def shard_deadline(configured: float | None, finished_s: list[float]) -> float | None:
    """Seconds a shard may run before it is late: ``configured`` when set, else DEADLINE_FACTOR x the
    median of ``finished_s`` (the times of the shards this run has explained), at least DEADLINE_FLOOR_S;
    None (no deadline) while no shard has finished: there is nothing yet to tell slow from stalled."""
    if configured is not None:
        return configured
    if not finished_s:
        return None
    return max(DEADLINE_FLOOR_S, DEADLINE_FACTOR * statistics.median(finished_s))


class ShardsFailedError(RuntimeError):
    """Some shards failed on every attempt; all others are committed."""

    def __init__(self, failures: dict[int, str]) -> None:
        self.failures = failures
        detail = "; ".join(f"shard {sid}: {cause}" for sid, cause in sorted(failures.items()))
        super().__init__(f"{len(failures)} shard(s) failed after all retries ({detail})")


class WorkerStartError(RuntimeError):
    """No worker could be started: the constructor's error, after START_ATTEMPTS attempts per worker."""


class ClusterConnectionError(RuntimeError):
    """The Ray cluster named by ``ray.address`` (or ``$RAY_ADDRESS``) could not be joined."""


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
def ray_session(
    spec: RaySpec, num_cpus: float | None = None, passed_env: tuple[str, ...] = ()
) -> Iterator[dict[str, float]]:
    """Attach to ``spec.address`` (or ``$RAY_ADDRESS``), else start a private local Ray (loopback
    only, see lrp_tasks.cluster.local_ray): never attach by accident to a cluster that happens to run on
    this machine."""
    if ray.is_initialized():
        yield ray.cluster_resources()
        return
    env = {k: os.environ[k] for k in (*PASSED_ENV, *passed_env) if k in os.environ}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "logging_level": logging.WARNING}
    address = spec.address or os.environ.get("RAY_ADDRESS")
    with ExitStack() as session:
        session.callback(ray.shutdown)  # also after a failed or interrupted start (a no-op if none)
        if address:
            ray_said = Captured()
            try:  # Ray's C++ retry lines on fd 2 are kept back, and folded into the error below
                with captured_stderr(ray_said), local_ray.keep_signal_handler(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # Ray Client's timeout warning: the error says it
                    ray.init(address=address, **kwargs)
            except Exception as exc:  # a cluster that cannot be joined: one message naming it and why
                error = ClusterConnectionError(connection_failure(address, exc, ray_said.text))
                if ray_said.text:
                    error.add_note("Ray's output while joining:\n" + ray_said.text.rstrip())
                raise error from exc
        else:
            cpus = num_cpus or max(spec.workers * spec.cpus_per_worker, 1)
            session.enter_context(local_ray.private_auth())
            temp_dir = session.enter_context(local_ray.private_session_dir())
            with local_ray.keep_signal_handler():
                local_ray.start_private_ray(int(max(cpus, os.cpu_count() or 1)), temp_dir=temp_dir, **kwargs)
        yield ray.cluster_resources()


def connection_failure(address: str, exc: BaseException, ray_output: str = "") -> str:
    """Why joining the cluster at `address` failed (the error, and Ray's own log lines), what to check."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    said = f"{exc}\n{ray_output}".lower()
    if "invalidauthtoken" in said or "unauthenticated" in said:
        reason = "the cluster refused this client's authentication token, or it has none"
    if any(word in said for word in ("invalidauthtoken", "unauthenticated", "auth token")):
        hint = "the cluster uses token authentication: set RAY_AUTH_TOKEN (or ~/.ray/auth_token) to its token"
    elif address.startswith("ray://"):
        hint = "check that the head's Ray Client server (port 10001 by default) is running and reachable"
    else:
        hint = "check the address and that the cluster's head is running and reachable"
    return f"cannot join the Ray cluster at {address} ({reason}); {hint} (docs/scaling.md)"


@ray.remote
class PoolActor:
    """One Ray actor: builds its worker once (``factory(*args, cpus=...)``), then runs shards on it
    (``worker.run_shard(shard_id, start, stop)`` returns a small dict)."""

    def __init__(self, factory: Callable[..., Any], args: tuple[Any, ...], cpus: float) -> None:
        self.worker = factory(*args, cpus=cpus)

    def where(self) -> dict[str, Any]:
        return {
            "node": ray.get_runtime_context().get_node_id(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": str(getattr(self.worker, "device", "")),
        }

    def explain(self, shard_id: int, start: int, stop: int) -> dict[str, Any]:
        started_at = time.time()  # wall clock: when the shard really began (not when the driver saw it end)
        out = dict(self.worker.run_shard(shard_id, start, stop))
        out["started_at"] = started_at
        out["node"] = ray.get_runtime_context().get_node_id()
        return out


def _init_failure(exc: BaseException) -> str | None:
    """The constructor's error (its last line: exception type and message) when an actor died because
    its ``__init__`` raised; None for any other death."""
    if not (isinstance(exc, RayActorError) and getattr(exc, "actor_init_failed", False)):
        return None
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if ": " in line and not line.startswith(("File ", "ray::", "The actor died"))]
    last = named[-1] if named else (lines[-1] if lines else "the worker's constructor failed")
    kind, sep, message = last.partition(": ")
    return f"{kind.rsplit('.', 1)[-1]}{sep}{message}" if " " not in kind else last  # no module path


def _cause(exc: BaseException) -> str:
    if isinstance(exc, RayActorError):
        return "worker process died (RayActorError)"
    if isinstance(exc, RayTaskError):
        inner = exc.cause if getattr(exc, "cause", None) is not None else exc
        return f"{type(inner).__name__}: {str(inner).splitlines()[0] if str(inner) else ''}"
    return f"{type(exc).__name__}: {exc}"


def run_pool(
    spec: RaySpec,
    factory: Callable[..., Any],
    args: tuple[Any, ...],
    shards: list[Shard],
    retries: int,
    *,
    final_errors: tuple[type[BaseException], ...] = (),
    passed_env: tuple[str, ...] = (),
    on_done: Callable[[dict[str, Any]], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run `shards` on a pool of Ray actors, each building ``factory(*args, cpus=...)`` once; returns one
    outcome dict per shard (with its node and start time).

    A shard whose failure is one of ``final_errors`` (bad data: a retry would only repeat it) fails at
    once; others are retried ``retries`` times. Raises ShardsFailedError naming the shards that failed
    every attempt (every other shard has run), and WorkerStartError when no worker can start."""
    if not shards:
        return []
    note = on_note or log.info
    with ray_session(spec, passed_env=passed_env) as resources:
        plan = plan_workers(spec, resources)
        for text in plan.notes:
            note(text)
        plan.workers = min(plan.workers, len(shards))
        options = {"num_cpus": plan.num_cpus, "num_gpus": plan.num_gpus, "max_restarts": -1, "max_task_retries": 0}

        def make_actor() -> Any:
            return PoolActor.options(**options).remote(factory, args, plan.num_cpus)

        actors = [make_actor() for _ in range(plan.workers)]
        return _drive(
            actors,
            shards,
            retries,
            on_done,
            make_actor=make_actor,
            on_note=note,
            final_errors=final_errors,
            deadline_s=spec.shard_deadline_s,
        )


class _ActorPool:
    """Feeds shards to actors, `depth` at a time each, and survives actors dying.

    Ray runs an actor's calls in submission order, so when an actor dies the first of its pending
    shards is the one that was running: only that shard is charged an attempt; the ones queued
    behind it are resubmitted free. A dead actor gets no new work until Ray has restarted it (a
    call to a restarting actor fails at once), which a ``where()`` probe tells.

    A shard's clock starts when it heads its actor's calls and the actor is known to be up (its
    ``where()`` probe answered: the model load is not charged to the first shard)."""

    def __init__(
        self,
        actors: list[Any],
        retries: int,
        depth: int,
        make_actor: Callable[[], Any] | None = None,
        on_note: Callable[[str], None] | None = None,
        final_errors: tuple[type[BaseException], ...] = (),
        deadline_s: float | None = None,
    ) -> None:
        self.actors, self.retries, self.depth = actors, retries, depth
        self.deadline_s = deadline_s
        self.ready: set[int] = set()
        """Actors whose ``where()`` probe answered: up, running their calls."""
        self.head_since: dict[int, float] = {}
        """When each ready actor's first pending shard began (monotonic), for the deadline."""
        self.finished_s: list[float] = []
        """Seconds of each shard explained so far, as the driver saw them (the deadline's median)."""
        self.final_errors = final_errors
        self.make_actor, self.note = make_actor, on_note or log.warning
        self.starts = [1] * len(actors)
        self.down_since: dict[int, float] = {}
        self.gone: dict[int, str] = {}
        """Actors given up for good, with why (constructor failures, down too long)."""
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
            free = [
                i
                for i in range(len(self.actors))
                if i not in self.down and i not in self.gone and len(self.pending[i]) < self.depth
            ]
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
            if len(self.pending[pick]) == 1 and pick in self.ready:
                self.head_since[pick] = time.monotonic()

    def _probe(self, index: int) -> None:
        self.ready.discard(index)
        self.head_since.pop(index, None)
        self.probes[self.actors[index].where.remote()] = index

    def probe_all(self) -> None:
        """Ask every actor where it runs: its answer says it is up (the deadline clock may start)."""
        for index in range(len(self.actors)):
            self._probe(index)

    def check_late(self) -> None:
        """Kill and replace the worker of every shard past its deadline; the shard is retried."""
        deadline = shard_deadline(self.deadline_s, self.finished_s)
        if deadline is None:
            return
        now = time.monotonic()
        for index, since in list(self.head_since.items()):
            if now - since > deadline and self.pending[index]:
                self.late(index, now - since, deadline)

    def late(self, index: int, running_s: float, deadline: float) -> None:
        """The shard heading `index` is late: charge it an attempt (it goes to another worker), hand the
        actor's other calls back free, kill the actor (its results are never read) and start a new one."""
        ref = self.pending[index].pop(0)
        _, shard = self.in_flight.pop(ref)
        self.note(
            f"shard {shard[0]} is late: running {running_s:.0f} s on worker {index}, past the {deadline:.0f} s "
            f"shard deadline (ray.shard_deadline_s); retrying it on another worker and replacing worker {index}"
        )
        for other in self.pending[index]:
            self.queue.appendleft(self.in_flight.pop(other)[1])
        self.pending[index] = []
        self.head_since.pop(index, None)
        self.probes = {r: i for r, i in self.probes.items() if i != index}
        self.reprobe_at.pop(index, None)
        ray.kill(self.actors[index], no_restart=True)
        self.shard_failed(shard, f"late: ran past the {deadline:.0f} s shard deadline")
        if self.make_actor is None:
            self.give_up(index, "its shard ran past the deadline and it cannot be replaced")
            return
        self.actors[index] = self.make_actor()
        self.starts[index] = 1
        self.down.add(index)
        self.down_since[index] = time.monotonic()
        self._probe(index)

    def actor_died(self, index: int) -> None:
        """Everything still pending on the actor goes back to the front of the queue, free."""
        for ref in self.pending[index]:
            _, shard = self.in_flight.pop(ref)
            self.queue.appendleft(shard)
        self.pending[index] = []
        if index not in self.down and index not in self.gone:
            self.down.add(index)
            self.down_since.setdefault(index, time.monotonic())
            self._probe(index)

    def start_failed(self, index: int, cause: str) -> None:
        """The actor's constructor raised: recreate it, up to START_ATTEMPTS times, then give it up.
        Its pending shards go back to the queue uncharged (they never ran)."""
        self.actor_died(index)
        self.probes = {ref: i for ref, i in self.probes.items() if i != index}
        self.reprobe_at.pop(index, None)
        if self.make_actor is not None and self.starts[index] < START_ATTEMPTS:
            self.starts[index] += 1
            log.warning("worker %s failed to start (%s); attempt %s", index, cause, self.starts[index])
            self.actors[index] = self.make_actor()
            self._probe(index)
            return
        self.give_up(index, f"its constructor failed {self.starts[index]} time(s): {cause}")

    def give_up(self, index: int, why: str) -> None:
        self.down.discard(index)
        self.down_since.pop(index, None)
        self.reprobe_at.pop(index, None)
        self.gone[index] = why
        alive = len(self.actors) - len(self.gone)
        if alive == 0:
            raise WorkerStartError(f"no worker could start: worker {index}: {why}")
        self.note(f"worker {index} given up ({why}); continuing with {alive} worker(s)")

    def check_down_too_long(self) -> None:
        now = time.monotonic()
        for index, since in list(self.down_since.items()):
            if index in self.down and now - since > START_TIMEOUT_S:
                self.give_up(index, f"down for more than {START_TIMEOUT_S:.0f} s (restarting or unschedulable)")

    def shard_failed(self, shard: Shard, cause: str, final: bool = False) -> None:
        self.attempts[shard[0]] += 1
        if final or self.attempts[shard[0]] > self.retries:
            self.failures[shard[0]] = f"{cause} (after {self.attempts[shard[0]]} attempts)"
        else:
            log.warning("shard %s attempt %s failed: %s; retrying", shard[0], self.attempts[shard[0]], cause)
            self.queue.append(shard)

    def busy(self) -> bool:
        return bool(self.in_flight) or (bool(self.queue) and bool(self.down))

    def stranded(self) -> bool:
        """Shards are left but no actor is up, starting or restarting."""
        return bool(self.queue) and not self.in_flight and not self.down

    def step(self) -> dict[str, Any] | None:
        """Wait for the next event; returns a committed shard's outcome, or None."""
        self.check_down_too_long()
        self.check_late()
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
            except RayActorError as exc:
                failure = _init_failure(exc)
                if failure is not None:
                    self.start_failed(index, failure)
                else:
                    self.reprobe_at[index] = time.monotonic() + 0.5
            else:
                self.down.discard(index)
                self.down_since.pop(index, None)
                self.ready.add(index)
                if self.pending[index]:
                    self.head_since[index] = time.monotonic()
            self.submit()
            return None
        index, shard = self.in_flight[ref]
        running = self.pending[index][0]  # calls run in submission order
        try:
            out = ray.get(ref)
        except RayActorError as exc:
            failure = _init_failure(exc)
            if failure is not None:  # the constructor failed: no shard ran, none is charged
                self.start_failed(index, failure)
                self.submit()
                return None
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
            final = isinstance(exc, self.final_errors) or isinstance(getattr(exc, "cause", None), self.final_errors)
            self.shard_failed(shard, _cause(exc), final=final)
            self.submit()
            return None
        began = self.head_since.get(index)
        self._finished(ref, index)
        if began is not None and out.get("explained", True):  # a skipped (already committed) shard says nothing
            self.finished_s.append(time.monotonic() - began)
        self.submit()
        return out

    def _finished(self, ref: Any, index: int) -> None:
        self.in_flight.pop(ref)
        was_head = self.pending[index][0] == ref
        self.pending[index].remove(ref)
        if was_head and self.pending[index] and index in self.ready:
            self.head_since[index] = time.monotonic()  # calls run in order: the next one starts now
        elif not self.pending[index]:
            self.head_since.pop(index, None)


def _drive(
    actors: list[Any],
    shards: list[Shard],
    retries: int,
    on_done: Callable[[dict[str, Any]], None] | None,
    depth: int = PIPELINE_DEPTH,
    make_actor: Callable[[], Any] | None = None,
    on_note: Callable[[str], None] | None = None,
    final_errors: tuple[type[BaseException], ...] = (),
    deadline_s: float | None = None,
) -> list[dict[str, Any]]:
    """Run all shards on the pool; report each finished shard as it arrives."""
    pool = _ActorPool(actors, retries, depth, make_actor, on_note, final_errors, deadline_s)
    pool.probe_all()  # queued ahead of the shards: each actor's answer says its model is loaded
    pool.queue.extend(shards)
    pool.submit()
    results: list[dict[str, Any]] = []
    while pool.busy():
        if pool.stranded():
            raise WorkerStartError(f"no worker is left to run {len(pool.queue)} shard(s): {pool.gone}")
        out = pool.step()
        if out is None:
            continue
        results.append(out)
        if on_done is not None:
            on_done(out)
    if pool.failures:
        raise ShardsFailedError(pool.failures)
    return results


@ray.remote
def _apply(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def map_on_ray(
    spec: RaySpec, fn: Callable[[Any], Any], items: list[Any], num_cpus: float = 1.0
) -> tuple[list[Any], dict[Any, str]]:
    """Run ``fn(item)`` for every item as Ray tasks on the audit's Ray (``spec``: the same address or
    private local Ray as the audit); returns the results of the items that succeeded, in item order,
    and ``{item: cause}`` for those that failed. Every task runs to its end even when another fails."""
    if not items:
        return [], {}
    with ray_session(spec):
        remote = _apply.options(num_cpus=num_cpus, max_retries=0)
        refs = {remote.remote(fn, item): i for i, item in enumerate(items)}
        results: dict[int, Any] = {}
        failures: dict[Any, str] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = refs[ready[0]]
            try:
                results[i] = ray.get(ready[0])
            except (RayTaskError, RayActorError) as exc:
                failures[items[i]] = _cause(exc)
        return [results[i] for i in sorted(results)], failures
