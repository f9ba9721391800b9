"""Custom Evaluation mode: each configuration's program runs on each model, one pair at a time.

A pair (configuration x model) runs as one Ray task (`rayeval.custom.program.run_program`) with
the configuration's resources and `runtime_env` (its image); its local mounts travel with the task
as a tar archive (through the object store, as Ray ships a job's working_dir) and are unpacked into
the program's fresh working directory; the program reaches the model at EVAL_INFERENCE_URL and leaves
`$EVAL_OUTPUT_DIR/metrics.json`, which is checked here. EVAL_INFERENCE_URL is the task's gateway
(rayeval.custom.gateway: the task's parameters, limiter and retries, usage counted, the credential kept),
started before the first pair that needs it and taken down when the pairs end, however they end; a `direct`
configuration gets the model's own URL and credential instead. Each pair's outcome (with its usage) is
stored as `{task}/custom/{config}/{model}/outcome.json`, beside the program's files (`output/`) and its
log (`program.log`). A restart runs only the pairs without metrics; a new task takes an earlier
task's metrics for the same model name and fingerprints (model, configuration).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from rayeval.cluster.waits import describe_cluster, missing
from rayeval.custom.outcome import PairOutcome, read_outcome, set_verdict, write_outcome
from rayeval.custom.packing import command_line, digest, pack_mounts, program_env, runtime_env
from rayeval.custom.program import unpack
from rayeval.errors import RunSuperseded
from rayeval.inference.client import HostedEndpoint, resolve_endpoint
from rayeval.redaction import masked
from rayeval.spec import CustomConfigSpec, ModelSpec, TaskSpec
from rayeval.store.results import ResultsStore, custom_name
from rayeval.store.reuse import reusable_tasks

if TYPE_CHECKING:
    from rayeval.custom.gateway import GatewayRun

__all__ = ["custom_progress", "custom_summary", "resumed_progress", "run_pairs"]

log = logging.getLogger("rayeval")
#: Seconds between checks for a stop request while a program runs.
_POLL_S = 0.5
#: Seconds a cancelled program's task has to end before its worker is killed.
STOP_GRACE_S = 10.0


# ----------------------------------------------------------------------------- the task


def _pairs(spec: TaskSpec) -> Iterator[tuple[CustomConfigSpec, ModelSpec]]:
    """Configuration by configuration, each on every model in turn."""
    for cfg in spec.custom:
        for model in spec.models:
            yield cfg, model


def custom_progress(spec: TaskSpec) -> dict[str, dict[str, dict[str, int]]]:
    """model -> evaluation set -> counts: a set's total is the configurations that cover it."""
    progress: dict[str, dict[str, dict[str, int]]] = {}
    for cfg, model in _pairs(spec):
        for s in cfg.evaluation_sets:
            p = progress.setdefault(model.name, {}).setdefault(s, {"done": 0, "errors": 0, "reused": 0, "total": 0})
            p["total"] += 1
    return progress


def _earlier(records: list[dict[str, Any]], task_id: str, spec: TaskSpec) -> list[dict[str, Any]]:
    """Earlier custom tasks this task may take metrics from, newest first."""
    return [r for r in reusable_tasks(records, task_id, spec.reuse.tasks, spec.tags) if r.get("mode") == "custom"]


def _reused(
    earlier: list[dict[str, Any]], model: str, model_fp: str, config_fp: str, cfg: CustomConfigSpec
) -> PairOutcome | None:
    for r in earlier:
        if model not in r.get("models", []) or r.get("model_fps", {}).get(model) != model_fp:
            continue
        for name, fp in (r.get("custom_fps") or {}).items():
            if fp != config_fp:
                continue
            try:
                found = read_outcome(ResultsStore(r["output"]), r["task_id"], name, model)
            except (OSError, TypeError, ValueError):
                continue
            if found is not None and found.ok:
                return PairOutcome(
                    cfg.name, model, list(cfg.evaluation_sets), found.fingerprint, found.metrics,
                    seconds=found.seconds, reused_from=found.reused_from or r["task_id"], usage=found.usage,
                )  # fmt: skip
    return None


def run_pairs(
    task: Any,
    coordinator: Any,
    hosted: dict[str, HostedEndpoint],
    *,
    resume: bool,
    records: list[dict[str, Any]],
) -> bool:
    """Run every pair that has no metrics yet (restart) or from an earlier task (reuse); returns
    whether a stop was requested. A pair that fails is recorded and the others go on. The task's gateway
    is started before the first pair that calls the model through it, and taken down at the end, however
    the pairs end (a stop, a failure, a lost lease)."""
    gateway = _TaskGateway(task, hosted)
    try:
        return _run_pairs(task, coordinator, hosted, gateway, resume=resume, records=records)
    finally:
        gateway.close()


def _run_pairs(
    task: Any,
    coordinator: Any,
    hosted: dict[str, HostedEndpoint],
    gateway: _TaskGateway,
    *,
    resume: bool,
    records: list[dict[str, Any]],
) -> bool:
    from rayeval.custom.program import run_program, ship_by_value

    spec, store, task_id = task.spec, task.store, task.task_id
    earlier = _earlier(records, task_id, spec) if spec.reuse.enabled else []
    config_fps = task.custom_fps
    ship_by_value()
    remote = ray.remote(run_program)
    local = "://" not in spec.output
    ran: Counter[tuple[str, str]] = Counter()  # (model, set) -> pairs this run ran, and how many failed
    failed: Counter[tuple[str, str]] = Counter()
    for cfg, model in _pairs(spec):
        if _state(coordinator, task) == "stopping":
            log.warning("task %s: stopped on request before %s x %s", task_id, cfg.name, model.name)
            return True
        fp = digest([config_fps[cfg.name], task.model_fps[model.name]])
        if resume:
            before = read_outcome(store, task_id, cfg.name, model.name)
            if before is not None and before.ok:
                continue
        outcome = (
            _reused(earlier, model.name, task.model_fps[model.name], config_fps[cfg.name], cfg) if earlier else None
        )
        if outcome is not None:
            log.info(
                "task %s: %s x %s: metrics reused from task %s", task_id, cfg.name, model.name, outcome.reused_from
            )
        else:
            through = None if cfg.direct else gateway.get()
            outcome = _run_pair(task, coordinator, remote, cfg, model, hosted.get(model.name), fp, local, through)
            if through is not None:
                outcome.usage = through.usage(cfg.name, model.name)
                _log_usage(task_id, outcome)
        write_outcome(store, task_id, outcome)
        if outcome.stopped:
            return True
        for s in cfg.evaluation_sets:  # the run's totals (see Coordinator.report)
            ran[(model.name, s)] += 1
            failed[(model.name, s)] += 0 if outcome.ok else 1
        coordinator.report.remote(task_id, [(m, s, n, failed[(m, s)]) for (m, s), n in ran.items()], task.epoch)
    return False


class _TaskGateway:
    """The task's gateway (rayeval.custom.gateway), started on first use: a run whose pairs are all reused,
    done already or `direct` starts none."""

    def __init__(self, task: Any, hosted: dict[str, HostedEndpoint]):
        self.task, self.hosted = task, hosted
        self.run: GatewayRun | None = None

    def get(self) -> GatewayRun:
        if self.run is None:
            self.run = _start_gateway(self.task, self.hosted)
        return self.run

    def close(self) -> None:
        if self.run is not None:
            self.run.close()
            log.info("task %s: gateway %s taken down", self.task.task_id, self.run.app)


def _start_gateway(task: Any, hosted: dict[str, HostedEndpoint]) -> GatewayRun:
    """The task's gateway, holding each model's endpoint with its credential and the task's parameters."""
    from rayeval.custom.gateway import GatewayModel, start_gateway

    spec = task.spec
    secrets = [v for v in task.auth_values.values() if v]
    models = []
    for m in spec.models:
        params = spec.model_parameters(m)
        endpoint = resolve_endpoint(
            m, task.auth_values.get(m.name), params.request_timeout, hosted=hosted.get(m.name), secrets=secrets
        )
        models.append(GatewayModel(m.name, endpoint, params))
    sets = {cfg.name: list(cfg.evaluation_sets) for cfg in spec.custom}
    return start_gateway(task.task_id, task.epoch, models, sets)


def _log_usage(task_id: str, outcome: PairOutcome) -> None:
    u = outcome.usage
    if u is None:
        return
    log.info(
        "task %s: %s x %s: %d request(s) through the gateway (%d failed, %d retries), %d prompt + %d completion "
        "tokens", task_id, outcome.config, outcome.model, u["requests"], u["failed"], u["retries"],
        u["prompt_tokens"], u["completion_tokens"],
    )  # fmt: skip


def image_output(cfg: CustomConfigSpec) -> str | None:
    """EVAL_OUTPUT_DIR of a configuration that runs in an image (the guide's /opt/ml/output); None without one."""
    from rayeval.custom.program import IMAGE_OUTPUT_DIR

    return IMAGE_OUTPUT_DIR if cfg.image else None


def _state(coordinator: Any, task: Any) -> str | None:
    """The task's state, as its coordinator has it.

    Raises:
        RunSuperseded: this run lost the task's lease.
    """
    state = ray.get(coordinator.report.remote(task.task_id, [], task.epoch))
    if state == "fenced":
        raise RunSuperseded.of(task.task_id, task.epoch)
    return state


def _run_pair(
    task: Any,
    coordinator: Any,
    remote: Any,
    cfg: CustomConfigSpec,
    model: ModelSpec,
    hosted: HostedEndpoint | None,
    fp: str,
    local: bool,
    gateway: GatewayRun | None = None,
) -> PairOutcome:
    store, task_id = task.store, task.task_id
    outcome = PairOutcome(cfg.name, model.name, list(cfg.evaluation_sets), fp)
    auth = task.auth_values.get(model.name)
    pair = custom_name(cfg.name, model.name)
    pair_dir = os.path.abspath(store.path(task_id, pair)) if local else ""
    pair_uri = None if local else store.uri(task_id, pair)
    log.info("task %s: running %s on model %s", task_id, cfg.name, model.name)
    with tempfile.TemporaryDirectory(prefix="rayeval-mounts-") as scratch:
        try:
            url = gateway.pair_url(cfg.name, model.name) if gateway is not None else None
            env, secret = program_env(cfg, model, auth, hosted, task.spec.tags, url)
            mounts = pack_mounts(cfg, Path(scratch))
            res = cfg.resources
            options: dict[str, Any] = {
                "num_cpus": res.num_cpus,
                "num_gpus": res.num_gpus,
                "max_retries": 0,
                "runtime_env": runtime_env(cfg),
                "name": f"rayeval-custom:{cfg.name}:{model.name}",
            }
            if res.memory_mb:
                options["memory"] = res.memory_mb * 1024 * 1024
            ref = remote.options(**options).remote(
                command_line(cfg), env, secret, pair_dir, cfg.timeout_s, (coordinator, task_id, task.epoch),
                f"[{cfg.name} x {model.name}]", pair_uri, mounts, task.output_node,
                [v for v in task.auth_values.values() if v], image_output(cfg),
            )  # fmt: skip
            needs = {k: v for k, v in {"CPU": res.num_cpus, "GPU": res.num_gpus}.items() if v}
            lacking_since = None
            while not ray.wait([ref], timeout=_POLL_S)[0]:
                try:
                    state = _state(coordinator, task)
                except RunSuperseded:
                    _cancel(ref)
                    raise
                if state == "stopping":
                    _cancel(ref)
                    outcome.stopped = True
                    outcome.error = "stopped on request before the program finished"
                    log.warning("task %s: stopped on request during %s x %s", task_id, cfg.name, model.name)
                    return outcome
                lacking = missing(needs)  # no node has them at all (busy nodes are worth waiting for)
                lacking_since = (lacking_since or time.monotonic()) if lacking else None
                if lacking and time.monotonic() - lacking_since > task.spec.resources.wait_timeout_s:
                    ray.cancel(ref, force=True)
                    outcome.error = (
                        f"waited {task.spec.resources.wait_timeout_s:.0f} s (resources.wait_timeout_s) for a node "
                        f"with {', '.join(f'{k} {needs[k]:g}' for k in lacking)} (the configuration's resources): no "
                        f"node has it; the cluster has {describe_cluster()}"
                    )
                    return outcome
            result = ray.get(ref)
            if result.get("stopped"):  # the program saw the stop first and ended itself
                outcome.stopped = True
                outcome.error = "stopped on request before the program finished"
                log.warning("task %s: stopped on request during %s x %s", task_id, cfg.name, model.name)
                return outcome
            if result.get("archive") is not None:  # it ran on another node than the local output's
                unpack(result["archive"], pair_dir)
            set_verdict(outcome, result, cfg.timeout_s)
        except RunSuperseded:
            raise
        except Exception as e:  # the runtime environment, the node, a bad mount: this pair fails alone
            outcome.error = masked(f"{type(e).__name__}: {e}", task.auth_values.values(), 4000)
    if outcome.error:
        first = outcome.error.split("; its last lines")[0].split("\n")[0]
        log.warning("task %s: %s x %s failed: %s", task_id, cfg.name, model.name, first)
    else:
        names = ", ".join(f"{m['name']}={m['value']:g}" for m in outcome.metrics)
        log.info("task %s: %s x %s: %s (%.1f s)", task_id, cfg.name, model.name, names, outcome.seconds or 0)
    return outcome


def _cancel(ref: Any) -> None:
    """Stop a running program's Ray task: cancelled (its supervisor then ends the program's whole tree);
    a task still running after STOP_GRACE_S is force-cancelled, which kills its worker, and the
    supervisor, told by the kernel that its parent died, ends the tree all the same."""
    ray.cancel(ref)
    if not ray.wait([ref], timeout=STOP_GRACE_S)[0]:
        log.warning("a cancelled program's task did not end in %.0f s: killing its worker", STOP_GRACE_S)
        ray.cancel(ref, force=True)
        ray.wait([ref], timeout=STOP_GRACE_S)


def _stored(store: ResultsStore, task_id: str, spec: TaskSpec) -> Iterator[tuple[CustomConfigSpec, str, PairOutcome]]:
    """(configuration, model, outcome) of every pair that has run, in the order pairs run."""
    for cfg, model in _pairs(spec):
        outcome = read_outcome(store, task_id, cfg.name, model.name)
        if outcome is not None:
            yield cfg, model.name, outcome


def custom_summary(store: ResultsStore, task_id: str, spec: TaskSpec) -> tuple[list[dict[str, Any]], dict]:
    """Summary rows (one per pair and metric; a pair without metrics gives one row with its error)
    and progress counts (model -> set -> counts) from the stored outcomes."""
    rows: list[dict[str, Any]] = []
    progress = custom_progress(spec)
    for cfg, model, outcome in _stored(store, task_id, spec):
        for s in cfg.evaluation_sets:
            p = progress[model][s]
            p["done"] += 1
            p["errors"] += 0 if outcome.ok else 1
            p["reused"] += 1 if outcome.reused_from else 0
        base = {"model": model, "eval_set": cfg.name, "sets": list(cfg.evaluation_sets), "items": 1}
        if outcome.reused_from:
            base["reused_from"] = outcome.reused_from
        if outcome.usage is not None:  # what the pair's program asked through the gateway
            u = outcome.usage
            base.update(
                requests=u["requests"], prompt_tokens=u["prompt_tokens"], completion_tokens=u["completion_tokens"]
            )
        if outcome.ok:
            rows += [
                {**base, "metric": m["name"], "value": m["value"], "scored": 1, "errors": 0} for m in outcome.metrics
            ]
        else:
            rows.append(
                {**base, "metric": "(no metrics)", "value": None, "scored": 0, "errors": 1, "error": outcome.error}
            )
    return rows, progress


def resumed_progress(store: ResultsStore, task_id: str, spec: TaskSpec) -> dict[str, dict[str, dict[str, int]]]:
    """Progress of a task run again: the pairs that have metrics are done (the others run again)."""
    progress = custom_progress(spec)
    for cfg, model, outcome in _stored(store, task_id, spec):
        if outcome.ok:
            for s in cfg.evaluation_sets:
                progress[model][s]["done"] += 1
                progress[model][s]["resumed"] = progress[model][s].get("resumed", 0) + 1
    return progress
