"""Stream documents through the stages on the warm workers, so stages of different documents overlap.

``run_stages`` keeps every worker busy: it submits the next task of whichever document is furthest along
(load before embed before enrich ... before extracting a new document), so one document embeds while
another extracts and documents become searchable one by one instead of all at the end. Extraction of a
long PDF is split into page ranges (``plan_extract`` → ``run_extract`` per range → ``merge_extract``).

Guarantees:
- In flight: at most one task per worker from this driver, and at most one load (loads serialise on the
  index's write lock anyway).
- Failures: bad input (:class:`DocumentError`) fails its document at once; a transient failure (a worker
  or node lost, an object lost, a timeout on a network call) is retried with backoff up to
  ``stage_attempts`` times; a task over its stage's time limit, or a document unfinished
  ``document_timeout_seconds`` after its first task started, fails its document. Every failure ends that
  document only: the others go on. A document whose PDF was deleted or replaced mid-run ends ``gone``.
- ``before_stage`` is asked before each stage of a document is submitted; a reason returned stops the
  document as ``gone`` (the Dagster side uses it for deletes and lost claims).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
import ray.exceptions

from ray_rag_dagster.compute.cluster import connect
from ray_rag_dagster.compute.workers import CallResult, Placement, WorkerPool
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages.chunk import run_chunk
from ray_rag_dagster.stages.embed import run_embed
from ray_rag_dagster.stages.enrich import run_enrich
from ray_rag_dagster.stages.extract import merge_extract, plan_extract, run_extract
from ray_rag_dagster.stages.load import run_load
from ray_rag_dagster.stages.manifest import DocumentRef, StageOutput
from ray_rag_dagster.stages.source import run_while_current

_log = logging.getLogger(__name__)

STAGES = ("extract", "chunk", "enrich", "embed", "load")
_STAGE_FUNCTIONS = {"chunk": run_chunk, "enrich": run_enrich, "embed": run_embed, "load": run_load}
# Tasks that write a version's files: their writes are removed again if the PDF left while they ran (the
# load's rows are undone by the run, which completes the document only if it is still wanted).
_WRITING_KINDS = ("shard", "merge", "chunk", "enrich", "embed")
# Lower runs first: finish documents already under way before starting new ones.
_PRIORITY = {"load": 0, "embed": 1, "enrich": 2, "chunk": 3, "merge": 4, "shard": 5, "plan": 6}
_TRANSIENT = (
    ray.exceptions.RayActorError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.OwnerDiedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ActorUnavailableError,
)
_TRANSIENT_CAUSES = (ConnectionError, TimeoutError)
# A worker restarting (recycled by another run, or crashed) fails the calls it had: they wait for its new
# process and go again without spending an attempt, this many times at most.
_RESTART_WAITS = 10
_RESTART_WAIT_SECONDS = 300  # a worker not back after this long (stopped for good) is given up


@dataclass
class StageResult:
    """One stage of one document, finished: ``ok`` (output set), ``failed``/``bad_input`` (error set) or
    ``gone`` (deleted or replaced while running)."""

    document: DocumentRef
    stage: str
    status: str
    output: StageOutput | None = None
    placement: Placement | None = None
    error: str | None = None
    transient: bool = False  # a failure that a later retry may not meet


@dataclass(order=True)
class _Task:
    priority: tuple[int, int, int]
    kind: str = field(compare=False)  # plan | shard | merge | chunk | enrich | embed | load
    doc: int = field(compare=False)
    args: tuple = field(compare=False)
    attempt: int = field(default=1, compare=False)
    not_before: float = field(default=0.0, compare=False)
    waits: int = field(default=0, compare=False)  # times it met its worker restarting (not attempts)


def _one_line(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error
    lines = str(cause).strip().splitlines() or [""]
    text = " ".join(lines[-1].split())[:300]
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, _TRANSIENT):
        return True
    cause = getattr(error, "cause", None)
    return isinstance(cause, _TRANSIENT_CAUSES) or "throttl" in str(cause).lower()


def run_stages(
    settings: Settings,
    documents: Sequence[DocumentRef],
    stages: Sequence[str] = STAGES,
    *,
    before_stage: Callable[[DocumentRef, str], str | None] | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[StageResult]:
    """Run ``stages`` (a contiguous part of :data:`STAGES`) for every document; yield results as they come.

    ``cancel`` stops submitting work (what is running finishes on the workers, unreported).
    """
    stages = [stage for stage in STAGES if stage in stages]
    if not documents or not stages:
        return
    connect(settings)
    pool = WorkerPool(settings)
    idle = list(pool.actors)
    counter = itertools.count()
    ready: list[_Task] = []
    in_flight: dict[Any, tuple[_Task, Any, float]] = {}
    shards: dict[int, list[StageOutput | None]] = {}
    shard_seconds: dict[int, float] = {}
    loads_in_flight = 0
    timed_out: dict[Any, str] = {}  # reference → why its worker was restarted
    started_at: dict[int, float] = {}  # document → when its first task went to a worker
    ended: set[int] = set()  # documents already reported failed or gone: their leftover tasks are dropped
    # Workers being recycled: each gets work again only once a probe answers from its new process.
    restarting: dict[Any, tuple[Any, int | None, float]] = {}  # probe → (worker, old pid, since)
    retiring: set[Any] = set()

    def recycle(actor: Any, old_pid: int | None) -> None:
        if actor in idle:
            idle.remove(actor)
        retiring.add(actor)
        pool.recycle(actor)
        restarting[actor.pid.remote()] = (actor, old_pid, time.monotonic())

    def await_restart(actor: Any) -> None:
        """Take a worker that another driver recycled (or that crashed) out of service until it answers."""
        if actor in retiring:
            return
        if actor in idle:
            idle.remove(actor)
        retiring.add(actor)
        restarting[actor.pid.remote()] = (actor, None, time.monotonic())

    def stage_of(kind: str) -> str:
        return "extract" if kind in ("plan", "shard", "merge") else kind

    def push(kind: str, doc: int, args: tuple, attempt: int = 1, delay: float = 0.0, waits: int = 0) -> None:
        heapq.heappush(ready, _Task((_PRIORITY[kind], doc, next(counter)), kind, doc, args, attempt,
                                    time.monotonic() + delay, waits))

    def start_stage(doc: int, stage: str) -> StageResult | None:
        document = documents[doc]
        if before_stage is not None:
            reason = before_stage(document, stage)
            if reason:
                return StageResult(document, stage, "gone", error=reason)
        if stage == "extract":
            push("plan", doc, (settings, document))
        else:
            push(stage, doc, (settings, document))
        return None

    def next_stage(doc: int, stage: str) -> StageResult | None:
        position = stages.index(stage)
        if position + 1 < len(stages):
            return start_stage(doc, stages[position + 1])
        return None

    results: list[StageResult] = []
    for doc in range(len(documents)):
        stopped = start_stage(doc, stages[0])
        if stopped:
            results.append(stopped)
    yield from results

    function = {"plan": plan_extract, "shard": run_extract, "merge": merge_extract, **_STAGE_FUNCTIONS}
    function.update({kind: functools.partial(run_while_current, function[kind]) for kind in _WRITING_KINDS})
    while (ready or in_flight) and not (cancel and cancel.is_set()):
        # Submit the most urgent runnable tasks to idle workers.
        deferred: list[_Task] = []
        now = time.monotonic()
        while ready and idle:
            task = heapq.heappop(ready)
            if task.doc in ended:
                continue
            if task.not_before > now or (task.kind == "load" and loads_in_flight):
                deferred.append(task)
                continue
            actor = idle.pop(0)
            recycle_after = settings.extract_max_calls if task.kind == "shard" else 0
            reference = actor.run.remote(function[task.kind], task.args, recycle_after)
            in_flight[reference] = (task, actor, time.monotonic())
            started_at.setdefault(task.doc, time.monotonic())
            loads_in_flight += task.kind == "load"
        for task in deferred:
            heapq.heappush(ready, task)

        if not in_flight and not restarting:
            time.sleep(0.05)  # only deferred tasks (backoff or the load gate) remain
            continue
        done, _ = ray.wait([*in_flight, *restarting], num_returns=1, timeout=1.0)
        now = time.monotonic()
        for probe in [reference for reference in done if reference in restarting]:
            actor, old_pid, since = restarting.pop(probe)
            try:
                new_pid = ray.get(probe)
            except Exception:  # noqa: BLE001 - the old process answered dying, or the new one is not up: ask again
                new_pid = old_pid
                time.sleep(0.25)  # a call to a restarting worker may fail at once: do not spin
            if new_pid != old_pid:
                retiring.discard(actor)
                idle.append(actor)
            elif time.monotonic() - since < _RESTART_WAIT_SECONDS:
                restarting[actor.pid.remote()] = (actor, old_pid, since)
            else:
                _log.warning("a stage worker did not come back in %d s; going on without it", _RESTART_WAIT_SECONDS)
        if ready and not (idle or in_flight or restarting):
            # Every worker is gone for good: what is left cannot run.
            for doc in sorted({task.doc for task in ready} - ended):
                ended.add(doc)
                yield StageResult(documents[doc], stage_of(next(t.kind for t in ready if t.doc == doc)), "failed",
                                  error=f"{documents[doc].name}: no stage worker left to run it", transient=True)
            ready.clear()
        done = [reference for reference in done if reference in in_flight]
        for reference, (task, actor, started) in list(in_flight.items()):
            if reference in done or reference in timed_out:
                continue
            if now - started > settings.stage_timeout_seconds:
                reason = f"timed out after {settings.stage_timeout_seconds:.0f} s"
            elif now - started_at[task.doc] > settings.document_timeout_seconds:
                reason = f"over the {settings.document_timeout_seconds:.0f} s per-document time limit"
            else:
                continue
            # An actor task cannot be cancelled mid-call: restart the worker; the call then fails.
            _log.warning("%s of %s %s: restarting its worker", task.kind, documents[task.doc].name, reason)
            recycle(actor, None)
            timed_out[reference] = reason

        for reference in done:
            task, actor, _started = in_flight.pop(reference)
            if actor not in retiring:
                idle.append(actor)
            loads_in_flight -= task.kind == "load"
            document = documents[task.doc]
            stage = stage_of(task.kind)
            reason = timed_out.pop(reference, None)
            if task.doc in ended:
                continue  # a sibling shard already ended the document
            try:
                call: CallResult = ray.get(reference)
            except Exception as error:  # noqa: BLE001 - every failure ends as a result, never a crash
                if reason is not None:
                    ended.add(task.doc)
                    yield StageResult(document, stage, "failed", error=f"{document.name}: {stage} {reason}")
                    shards.pop(task.doc, None)
                    continue
                if isinstance(error, ray.exceptions.RayActorError):
                    await_restart(actor)  # a retry must not go to the worker before its new process is up
                if isinstance(error, ray.exceptions.ActorUnavailableError) and task.waits < _RESTART_WAITS:
                    # The call never ran: the worker was restarting (another run recycled it).
                    push(task.kind, task.doc, task.args, task.attempt, 0.0, task.waits + 1)
                    continue
                if _is_transient(error) and task.attempt < settings.stage_attempts:
                    delay = min(2.0 ** task.attempt, 30.0)
                    _log.warning("%s of %s failed (%s), retry %d in %.0f s", task.kind, document.name,
                                 _one_line(error), task.attempt, delay)
                    push(task.kind, task.doc, task.args, task.attempt + 1, delay)
                    continue
                reason = _one_line(error)
                if _is_transient(error):
                    reason = f"gave up after {task.attempt} attempts: {reason}"
                ended.add(task.doc)
                yield StageResult(document, stage, "failed", error=f"{document.name}: {stage} failed: {reason}",
                                  transient=_is_transient(error))
                shards.pop(task.doc, None)
                continue
            if call.retire:
                recycle(actor, call.placement.pid)
            if call.outcome != "ok":
                name, reason = call.value
                status = "gone" if call.outcome == "gone" else "bad_input"
                ended.add(task.doc)
                yield StageResult(document, stage, status, placement=call.placement, error=f"{name}: {reason}")
                shards.pop(task.doc, None)
                continue
            if task.kind == "plan":
                ranges = call.value
                shards[task.doc] = [None] * len(ranges)
                shard_seconds[task.doc] = time.monotonic()
                for index, page_range in enumerate(ranges):
                    push("shard", task.doc, (settings, document, page_range))
                continue
            if task.kind == "shard":
                parts = shards.get(task.doc)
                if parts is None:
                    continue  # the document already failed
                parts[parts.index(None)] = call.value
                if None not in parts:
                    push("merge", task.doc, (settings, document, shards.pop(task.doc)))
                continue
            output: StageOutput = call.value
            if task.kind == "merge":
                output.seconds = time.monotonic() - shard_seconds.pop(task.doc)  # wall time of the extraction
            yield StageResult(document, stage, "ok", output=output, placement=call.placement)
            stopped = next_stage(task.doc, stage)
            if stopped:
                yield stopped


def run_stages_in_background(
    settings: Settings,
    documents: Sequence[DocumentRef],
    stages: Sequence[str] = STAGES,
    *,
    before_stage: Callable[[DocumentRef, str], str | None] | None = None,
) -> Iterator[StageResult]:
    """:func:`run_stages` driven by its own thread: the workers are fed while the caller records results
    (Dagster events, status rows), so bookkeeping never leaves a worker idle."""
    connect(settings)  # in the caller's (main) thread: Ray installs its signal handlers there
    results: queue.Queue[StageResult | BaseException | None] = queue.Queue()
    cancel = threading.Event()

    def drive() -> None:
        try:
            for result in run_stages(settings, documents, stages, before_stage=before_stage, cancel=cancel):
                results.put(result)
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            results.put(error)
        finally:
            results.put(None)

    thread = threading.Thread(target=drive, name="ray-rag-flow", daemon=True)
    # The flow thread wakes when a worker finishes and must hand it the next task at once; the caller's
    # Python-heavy bookkeeping would otherwise hold the GIL for up to the default 5 ms switch interval.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval, 0.0005))
    thread.start()
    try:
        while (item := results.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancel.set()
        thread.join(timeout=60)
        sys.setswitchinterval(switch_interval)
