"""Custom Evaluation mode: each configuration's program runs on each model, one pair at a time.

A pair (configuration x model) runs as one Ray task (`rayeval.custom.program.run_program`) with
the configuration's resources and `runtime_env` (its image); its local mounts travel with the task
as a tar archive (through the object store, as Ray ships a job's working_dir) and are unpacked into
the program's fresh working directory; the program reaches the model at EVAL_INFERENCE_URL and leaves
`$EVAL_OUTPUT_DIR/metrics.json`, which is checked here. Each pair's outcome is stored as
`{task}/custom/{config}/{model}/outcome.json`, beside the program's files (`output/`) and its
log (`program.log`). A restart runs only the pairs without metrics; a new task takes an earlier
task's metrics for the same model name and fingerprints (model, configuration).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shlex
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rayeval.client import resolve_endpoint, scrub
from rayeval.errors import SpecError
from rayeval.reuse import reusable_tasks
from rayeval.spec import CustomConfigSpec, ModelSpec, TaskSpec
from rayeval.store import ResultsStore

__all__ = [
    "PairOutcome",
    "config_fingerprint",
    "custom_progress",
    "custom_summary",
    "pack_mounts",
    "parse_metrics",
    "program_env",
    "resumed_progress",
    "run_pairs",
    "runtime_env",
]

log = logging.getLogger("rayeval")
#: The most a configuration's shipped mounts may take (larger data: a shared filesystem).
MAX_MOUNTS_MB = 512
#: Seconds between checks for a stop request while a program runs.
_POLL_S = 0.5


# ----------------------------------------------------------------------------- metrics.json


class _Metric(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, description="The metric's name.")
    value: float = Field(description="Its value: a finite number.")

    @field_validator("value", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class _MetricsFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metrics: list[_Metric] = Field(min_length=1, description="The program's metrics.")


def parse_metrics(text: str) -> list[dict[str, Any]]:
    """The metrics of a metrics.json text (`{"metrics": [{"name": ..., "value": ...}, ...]}`).

    Raises:
        ValueError: not JSON, or not that shape (the message says what is wrong, and where).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"metrics.json is not valid JSON ({e})") from None
    try:
        parsed = _MetricsFile.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in e.errors(include_url=False, include_input=False)
        )
        raise ValueError(
            f'metrics.json must be {{"metrics": [{{"name": ..., "value": <number>}}, ...]}}; {problems}'
        ) from None
    names = [m.name for m in parsed.metrics]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"metrics.json names a metric twice: {', '.join(dupes)}")
    return [{"name": m.name, "value": m.value} for m in parsed.metrics]


# ----------------------------------------------------------------------------- one pair


@dataclass
class PairOutcome:
    """What one configuration x model gave."""

    config: str
    model: str
    sets: list[str]
    fingerprint: str
    metrics: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    exit_code: int | None = None
    seconds: float | None = None
    files: list[str] = field(default_factory=list)
    reused_from: str | None = None
    stopped: bool = False

    @property
    def ok(self) -> bool:
        """The pair has metrics."""
        return self.error is None and bool(self.metrics)


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _content_digest(path: Path) -> str:
    """Names and contents of a mounted file or folder (so an edited program is a new configuration)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def config_fingerprint(cfg: CustomConfigSpec) -> str:
    """What decides a configuration's metrics: image, command, parameters, variables, sets and the
    content of its shipped mounts (shared mounts by path). Resources and time limits are left out."""
    mounts = [
        {"path": m.path, "shared": True}
        if m.shared
        else {"name": Path(m.path).name, "content": _content_digest(Path(m.path))}
        for m in cfg.mounts
    ]
    keep = cfg.model_dump(mode="json", include={"image", "image_version", "command", "parameters", "env"})
    return _digest({**keep, "sets": sorted(cfg.evaluation_sets), "mounts": mounts})


def runtime_env(cfg: CustomConfigSpec) -> dict[str, Any]:
    """The Ray `runtime_env` of a configuration's task: its image (`image_uri`), if any."""
    return {"image_uri": cfg.image_uri} if cfg.image else {}


def pack_mounts(cfg: CustomConfigSpec, scratch: Path) -> bytes | None:
    """The configuration's local mounts as one tar archive (each under its own name), sent with
    the task; None when it has none.

    Raises:
        SpecError: the mounts are larger than MAX_MOUNTS_MB.
    """
    local = [m for m in cfg.mounts if not m.shared]
    if not local:
        return None
    archive = scratch / "mounts.tar"
    with tarfile.open(archive, "w") as tar:
        for m in local:
            tar.add(m.path, arcname=Path(m.path).name)
    size = archive.stat().st_size
    if size > MAX_MOUNTS_MB * 1024 * 1024:
        raise SpecError(
            f"configuration '{cfg.name}': its mounts take {size / 2**20:.0f} MiB, over the {MAX_MOUNTS_MB} MiB "
            "shipped with a task; put large data on a filesystem every node sees and mount it with `shared: true`"
        )
    return archive.read_bytes()


def command_line(cfg: CustomConfigSpec) -> str:
    """The start command with the parameters appended as `--name value`."""
    args = [
        f"--{k} {shlex.quote(str(v).lower() if isinstance(v, bool) else str(v))}" for k, v in cfg.parameters.items()
    ]
    return " ".join([cfg.command, *args])


def program_env(
    cfg: CustomConfigSpec, model: ModelSpec, auth_value: str | None, hosted: dict[str, Any] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """(variables, secret variables) of one pair: the platform's EVAL_* and the configuration's own."""
    endpoint = resolve_endpoint(model, auth_value, hosted=hosted)
    mounts = {Path(m.path).name: (m.path if m.shared else Path(m.path).name) for m in cfg.mounts}
    env = {
        **cfg.env,
        "EVAL_INFERENCE_URL": f"{endpoint.base_url}/chat/completions",
        "EVAL_MODEL_NAME": endpoint.model_id,
        "EVAL_AUTHORIZATION_HEADER_KEY": model.auth_header_key,
        "EVAL_CONFIG_NAME": cfg.name,
        "EVAL_EVALUATION_SETS": ",".join(cfg.evaluation_sets),
        "EVAL_MOUNTS": json.dumps(mounts),
    }
    secret = {"EVAL_AUTHORIZATION_HEADER_VALUE": (auth_value or "") if hosted is None else ""}
    return env, secret


def _pair_parts(cfg: str, model: str) -> tuple[str, ...]:
    return ("custom", cfg, model)


def _write_outcome(store: ResultsStore, task_id: str, outcome: PairOutcome) -> None:
    store.write_json(task_id, "/".join([*_pair_parts(outcome.config, outcome.model), "outcome.json"]), asdict(outcome))


def read_outcome(store: ResultsStore, task_id: str, cfg: str, model: str) -> PairOutcome | None:
    """A pair's stored outcome, if it ran."""
    data = store.read_json(task_id, "/".join([*_pair_parts(cfg, model), "outcome.json"]))
    return PairOutcome(**data) if data else None


def _verdict(outcome: PairOutcome, result: dict[str, Any], timeout: float | None) -> None:
    outcome.exit_code, outcome.seconds, outcome.files = result["exit_code"], result["seconds"], result["files"]
    tail = "\n".join(result["tail"][-5:])
    last = f"; its last lines:\n{tail}" if tail else ""
    if result["timed_out"]:
        outcome.error = f"the program ran past its timeout of {timeout:g} s and was killed{last}"
    elif result["exit_code"] != 0:
        outcome.error = f"the program exited with status {result['exit_code']}{last}"
    elif result["metrics_text"] is None:
        outcome.error = f"the program wrote no $EVAL_OUTPUT_DIR/metrics.json (it wrote: {result['files'] or 'nothing'})"
    else:
        try:
            outcome.metrics = parse_metrics(result["metrics_text"])
        except ValueError as e:
            outcome.error = str(e)


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
                    seconds=found.seconds, reused_from=found.reused_from or r["task_id"],
                )  # fmt: skip
    return None


def run_pairs(
    task: Any,
    coordinator: Any,
    hosted: dict[str, dict[str, Any]],
    *,
    resume: bool,
    records: list[dict[str, Any]],
) -> bool:
    """Run every pair that has no metrics yet (restart) or from an earlier task (reuse); returns
    whether a stop was requested. A pair that fails is recorded and the others go on."""
    from rayeval.custom.program import run_program, ship_by_value

    spec, store, task_id = task.spec, task.store, task.task_id
    earlier = _earlier(records, task_id, spec) if spec.reuse.enabled else []
    config_fps = task.custom_fps
    ship_by_value()
    remote = ray.remote(run_program)
    local = "://" not in spec.output
    for cfg, model in _pairs(spec):
        if ray.get(coordinator.report.remote(task_id, [])) == "stopping":
            log.warning("task %s: stopped on request before %s x %s", task_id, cfg.name, model.name)
            return True
        fp = _digest([config_fps[cfg.name], task.model_fps[model.name]])
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
            outcome = _run_pair(task, coordinator, remote, cfg, model, hosted.get(model.name), fp, local)
        _write_outcome(store, task_id, outcome)
        if outcome.stopped:
            return True
        errors = 0 if outcome.ok else 1
        coordinator.report.remote(task_id, [(model.name, s, 1, errors) for s in cfg.evaluation_sets])
    return False


def _run_pair(
    task: Any,
    coordinator: Any,
    remote: Any,
    cfg: CustomConfigSpec,
    model: ModelSpec,
    hosted: dict[str, Any] | None,
    fp: str,
    local: bool,
) -> PairOutcome:
    store, task_id = task.store, task.task_id
    outcome = PairOutcome(cfg.name, model.name, list(cfg.evaluation_sets), fp)
    auth = task.auth_values.get(model.name)
    parts = _pair_parts(cfg.name, model.name)
    pair_dir = os.path.abspath(store.path(task_id, *parts)) if local else ""
    pair_uri = None if local else store.uri(task_id, *parts)
    log.info("task %s: running %s on model %s", task_id, cfg.name, model.name)
    with tempfile.TemporaryDirectory(prefix="rayeval-mounts-") as scratch:
        try:
            env, secret = program_env(cfg, model, auth, hosted)
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
                command_line(cfg), env, secret, pair_dir, cfg.timeout_s, (coordinator, task_id),
                f"[{cfg.name} x {model.name}]", pair_uri, mounts,
            )  # fmt: skip
            while not ray.wait([ref], timeout=_POLL_S)[0]:
                if ray.get(coordinator.report.remote(task_id, [])) == "stopping":
                    ray.cancel(ref)  # KeyboardInterrupt in the task: it kills the program's group
                    outcome.stopped = True
                    outcome.error = "stopped on request before the program finished"
                    log.warning("task %s: stopped on request during %s x %s", task_id, cfg.name, model.name)
                    return outcome
            _verdict(outcome, ray.get(ref), cfg.timeout_s)
        except Exception as e:  # the runtime environment, the node, a bad mount: this pair fails alone
            outcome.error = scrub(f"{type(e).__name__}: {e}", [auth])[:4000]
    if outcome.error:
        first = outcome.error.split("; its last lines")[0].split("\n")[0]
        log.warning("task %s: %s x %s failed: %s", task_id, cfg.name, model.name, first)
    else:
        names = ", ".join(f"{m['name']}={m['value']:g}" for m in outcome.metrics)
        log.info("task %s: %s x %s: %s (%.1f s)", task_id, cfg.name, model.name, names, outcome.seconds or 0)
    return outcome


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
