"""Checking a task before anything is written: metrics, scripts, judge prompts, sets, secrets, output,
hosted models' sources and the services' connectivity. What passes is a PreparedTask, ready to run."""

from __future__ import annotations

import functools
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayeval.errors import MetricError, ServiceError, SpecError
from rayeval.inference.client import check_service, resolve_endpoint, scrub
from rayeval.inference.loglikelihood import probe_service
from rayeval.records import TaskRecord
from rayeval.serve_apps.builtins import ModelSource, resolve_source
from rayeval.serve_apps.llm import check_engine
from rayeval.sets.plan import SetPlan, plan_sets
from rayeval.spec import MetricRef, TaskSpec, resolve_secret
from rayeval.store.fingerprint import GIVEN_PREDICTIONS, inference_fingerprint, metric_fingerprint, model_identity
from rayeval.store.results import EFFECTIVE_PARAMETERS, ResultsStore, spec_part
from rayeval.store.summary import metric_outputs

__all__ = ["CORE_PLACEHOLDERS", "PreparedTask", "new_task_id", "prepare", "runnable_spec_data"]


def new_task_id(name: str) -> str:
    """A unique, sortable, readable task id."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


@dataclass
class PreparedTask:
    """A task that passed every check and is ready to run."""

    spec: TaskSpec
    task_id: str
    plans: list[SetPlan]
    metrics_by_set: dict[str, list[MetricRef]]
    outputs: list[str]
    auth_values: dict[str, str | None]
    sources: dict[str, ModelSource] = field(default_factory=dict)
    #: The node every process touching a local `output` runs on (set when the task runs on a cluster;
    #: None for shared storage): rayeval.cluster.placement.
    output_node: str | None = None
    #: The run's epoch: the lease it holds on the task (rayeval.actors.coordinator), set when it registers.
    epoch: int | None = None
    #: model name -> when its service says the model was created (None: it does not say), asked once
    #: when earlier tasks offer its answers for reuse (rayeval.inference.model_created).
    created: dict[str, float | None] = field(default_factory=dict)

    @property
    def store(self) -> ResultsStore:
        """The task's results store."""
        return ResultsStore(self.spec.output)

    @functools.cached_property
    def model_fps(self) -> dict[str, str]:
        """model name -> the fingerprint of its answers (rayeval.store.fingerprint); computed once (a hosted
        checkpoint's files are listed for it)."""
        spec = self.spec
        if spec.predictions_given:
            return {m.name: GIVEN_PREDICTIONS for m in spec.models}
        return {m.name: inference_fingerprint(m, spec.model_parameters(m), self._source(m.name)) for m in spec.models}

    @functools.cached_property
    def set_fps(self) -> dict[str, dict[str, str]]:
        """model name -> set -> the fingerprint of its answers on that set, for sets whose own parameters
        change what the model is asked (the others: `model_fps`)."""
        spec = self.spec
        if spec.predictions_given:
            return {}
        found: dict[str, dict[str, str]] = {}
        for m in spec.models:
            for s in spec.evaluation_sets:
                if s.parameters is None:
                    continue
                fp = inference_fingerprint(m, spec.set_parameters(m, s), self._source(m.name))
                if fp != self.model_fps[m.name]:
                    found.setdefault(m.name, {})[s.name] = fp
        return found

    def answers_fp(self, model: str, eval_set: str) -> str:
        """The fingerprint of `model`'s answers on `eval_set` (part of each item's fingerprint)."""
        return self.set_fps.get(model, {}).get(eval_set) or self.model_fps[model]

    @functools.cached_property
    def custom_fps(self) -> dict[str, str]:
        """Mode custom: configuration name -> the fingerprint of what decides its metrics."""
        from rayeval.custom.packing import config_fingerprint

        return {c.name: config_fingerprint(c) for c in self.spec.custom}

    @functools.cached_property
    def metric_fps(self) -> dict[str, dict[str, str]]:
        """set name -> metric name -> the fingerprint of the metric's configuration and judge."""
        judges = {j.name: model_identity(j, self._source(j.name)) for j in self.spec.judges}
        return {
            s: {ref.name: metric_fingerprint(ref, judges.get(ref.judge.model) if ref.judge else None) for ref in refs}
            for s, refs in self.metrics_by_set.items()
        }

    def _source(self, name: str) -> str | None:
        source = self.sources.get(name)
        return source.source if source is not None else None

    def scrub(self, text: str) -> str:
        """Remove every resolved credential from a text."""
        return scrub(text, self.auth_values.values())


def _check_metrics(spec: TaskSpec) -> tuple[dict[str, list[MetricRef]], list[str]]:
    """Every set's checked metric references (scripts' source carried), and every output of the task."""
    metrics_by_set: dict[str, list[MetricRef]] = {}
    outputs: set[str] = set()
    for i, s in enumerate(spec.evaluation_sets):
        try:
            outs = [o for o, _ in metric_outputs({s.name: s.metrics})[s.name]]
        except MetricError as e:
            raise MetricError(e.message, field=f"evaluation_sets.{i}.metrics") from None
        dupes = sorted({o for o in outs if outs.count(o) > 1})
        if dupes:
            raise MetricError(
                f"metrics of set '{s.name}' produce the same output twice ({', '.join(dupes)}); list each once",
                field=f"evaluation_sets.{i}.metrics",
            )
        outputs.update(outs)
        metrics_by_set[s.name] = [
            _check_metric_steps(ref, field=f"evaluation_sets.{i}.metrics.{j}") for j, ref in enumerate(s.metrics)
        ]
    return metrics_by_set, sorted(outputs)


def _check_metric_steps(ref: MetricRef, *, field: str) -> MetricRef:
    """Check a metric's judge prompt and pre/post-processing scripts now (a broken one fails the task
    before it runs); returns the reference carrying the scripts' source to the actors, which may run on
    nodes without the files."""
    from rayeval.metrics import MeanAggregator, build_metric, checked_source, placeholders

    if ref.judge is not None:
        try:
            placeholders(ref.judge.prompt)
        except ValueError as e:
            raise MetricError(f"judge prompt is not a valid template: {e}", field=f"{field}.judge.prompt") from None
    sources = {
        kind: checked_source(path, kind, field=f"{field}.{kind}", timeout_s=ref.script_timeout_s)
        for kind, path in (("preprocess", ref.preprocess), ("postprocess", ref.postprocess))
        if path is not None
    }
    if ref.judge is None and ref.name == "evaluate":  # its module's script travels with it (and its fingerprint)
        from rayeval.metrics import module_source

        build_metric(ref)  # its options, checked
        try:
            _, source = module_source(ref.options["module"])
        except MetricError as e:
            raise MetricError(str(e), field=f"{field}.options.module") from None
        ref = ref.model_copy(update={"options": {**ref.options, "source": source}})
    if ref.postprocess:
        metric = build_metric(ref)
        outs = metric.outputs()
        if len(outs) != 1 or not isinstance(metric.aggregator(outs[0]), MeanAggregator):
            raise MetricError(
                f"postprocess applies to a metric with one per-item score; '{ref.name}' has "
                f"{'outputs ' + ', '.join(outs) if len(outs) > 1 else 'a corpus-level score'}",
                field=f"{field}.postprocess",
            )
    return ref.with_script_sources(sources)


#: Placeholders every item has, whatever its set's columns.
CORE_PLACEHOLDERS = {"item_id", "eval_set", "query", "reference", "prediction", "model"}


def _check_placeholders(plans: list[SetPlan], metrics_by_set: dict[str, list[MetricRef]]) -> None:
    """A judge prompt's placeholders must name columns of the set (unless a preprocessing script adds them)."""
    from rayeval.metrics import placeholders

    for i, plan in enumerate(plans):
        c = plan.spec.columns
        renamed = {c.id: "item_id", c.query: "query", c.reference: "reference"}
        sources = [src for src in [plan.shared, *plan.per_model.values()] if src is not None]
        have = set.intersection(*(src.columns() for src in sources)) if sources else set()
        for j, ref in enumerate(metrics_by_set[plan.spec.name]):
            if ref.judge is None or ref.preprocess:
                continue
            for name in placeholders(ref.judge.prompt):
                if name in CORE_PLACEHOLDERS or (name in have and name not in renamed):
                    continue
                hint = (
                    f"column '{name}' is mapped to the item's {renamed[name]}: write {{{renamed[name]}}}"
                    if name in renamed
                    else f"the set's columns are {', '.join(sorted(have - set(renamed))) or 'only the mapped ones'}; "
                    "fix the prompt, or add the column with a preprocessing script"
                )
                raise MetricError(
                    f"judge prompt of metric '{ref.name}' (set '{plan.spec.name}') has placeholder {{{name}}}, "
                    f"which no row provides: {hint}",
                    field=f"evaluation_sets.{i}.metrics.{j}.judge.prompt",
                )


def _check_output(location: str) -> None:
    """A local output location must be a folder we can create or write (URIs are checked on write)."""
    if "://" in location:
        return
    path = Path(location)
    if path.exists() and not path.is_dir():
        raise SpecError(f"output '{location}' is a file; give a folder", field="output")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SpecError(f"output '{location}' cannot be created: '{probe}' is not writable", field="output")


def prepare(spec: TaskSpec, task_id: str | None = None, *, check_services: bool = True) -> PreparedTask:
    """Validate everything a task needs before anything is written.

    Raises:
        SpecError: bad metrics, sets or secrets (DatasetError/MetricError are SpecErrors).
        ServiceError: a model service is unreachable or refuses the credentials.
    """
    try:
        metrics_by_set, outputs = _check_metrics(spec)
        plans = plan_sets(spec)  # none in mode custom: its programs read their own data
        _check_placeholders(plans, metrics_by_set)
        auth_values = {
            m.name: resolve_secret(m.auth_header_value, field=f"models.{i}.auth_header_value")
            for i, m in enumerate(spec.models)
        }
        auth_values.update(
            {
                j.name: resolve_secret(j.auth_header_value, field=f"judges.{i}.auth_header_value")
                for i, j in enumerate(spec.judges)
            }
        )
        _check_output(spec.output)
        sources = _resolve_sources(spec)
        scored_by_likelihood = [s.name for s in spec.evaluation_sets if s.loglikelihood and spec.runs_inference]
        _check_tokenizers(spec, sources, scored_by_likelihood)
    except SpecError as e:
        raise e.with_source(spec.source) from None
    if check_services:
        models = spec.models if not spec.predictions_given else []
        for m in [*models, *spec.judges]:
            if m.hosted:  # checked once deployed
                continue
            endpoint = resolve_endpoint(m, auth_values[m.name], spec.model_parameters(m).request_timeout)
            report = check_service(endpoint, tiny_request=False)
            if not report.ok:
                raise ServiceError(
                    f"model '{m.name}' at {endpoint.base_url}: {report.failure()}; "
                    f"run `rayeval check-service {endpoint.base_url} --model {endpoint.model_id}` for details"
                )
            if scored_by_likelihood and m in models and m.tokenizer:
                wrong = probe_service(endpoint, m.tokenizer)
                if wrong:
                    raise ServiceError(
                        f"model '{m.name}' cannot score set '{scored_by_likelihood[0]}' by log-likelihood: {wrong}"
                    )
    task_id = task_id or new_task_id(spec.name)
    return PreparedTask(spec, task_id, plans, metrics_by_set, outputs, auth_values, sources)


def _check_tokenizers(spec: TaskSpec, sources: dict[str, ModelSource], scored: list[str]) -> None:
    """A hosted model asked for log-likelihoods needs its tokenizer files where rayeval can read them."""
    if not scored:
        return
    for i, m in enumerate(spec.models):
        if m.hosted and not sources[m.name].tokenizer:
            raise SpecError(
                f"model '{m.name}': set '{scored[0]}' is scored by log-likelihood, which splits context and choice "
                f"into the model's tokens, but {sources[m.name].source} has no tokenizer files rayeval can read "
                "(tokenizer.json or tokenizer_config.json in a local folder)",
                field=f"models.{i}",
            )


def _resolve_sources(spec: TaskSpec) -> dict[str, ModelSource]:
    """Where each hosted model's weights come from (checked now: a bad path fails before anything runs)."""
    sources = {}
    for m in spec.hosted_models():
        group, i = ("judges", spec.judges.index(m)) if m in spec.judges else ("models", spec.models.index(m))
        where = f"{group}.{i}"
        try:
            sources[m.name] = resolve_source(m, field=f"{where}.path" if m.kind == "checkpoint" else f"{where}.builtin")
            check_engine(m, sources[m.name], field=f"{where}.engine.max_model_len")
        except ServiceError as e:
            raise ServiceError(f"{where} ({m.name}): {e.message}") from None
    return sources


def stored_spec_data(spec: TaskSpec) -> dict[str, Any]:
    """What spec.json holds: the spec (secrets redacted) and, beside it, the parameters each model runs
    each set with."""
    data = spec.redacted()
    if spec.runs_inference:
        data[EFFECTIVE_PARAMETERS] = spec.effective_parameters()
    return data


def runnable_spec_data(record: TaskRecord) -> dict[str, Any]:
    """The spec a task was run with, as stored beside its results, to run it again (a copy, a restart).

    Raises:
        SpecError: it is not stored, or it held a literal credential (never stored): give the task file.
    """
    task_id = record["task_id"]
    data = ResultsStore(record["output"]).read_json(task_id, "spec.json")
    if data is None:
        raise SpecError(f"task {task_id} has no stored spec; give its task file with --spec", field="spec")
    data = spec_part(data)
    hidden = [m["name"] for m in [*data["models"], *data.get("judges", [])] if m.get("auth_header_value") == "***"]
    if hidden:
        raise SpecError(
            f"task {task_id}'s models {', '.join(hidden)} had a literal credential, which is never stored; "
            "give the task file again with --spec FILE (or write credentials as ${env:NAME})",
            field="spec",
        )
    return data
