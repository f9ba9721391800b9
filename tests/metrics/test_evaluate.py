"""A Hugging Face `evaluate` module as a rayeval metric: a real module folder written here, loaded by the
real `evaluate` package (offline), scored per item and over the set by its own compute(); its source
travels with the checked task, and the task file's shorthand and errors read as documented."""

from __future__ import annotations

import json

import pytest

from rayeval.errors import MetricError, SpecError
from rayeval.metrics import get_metric, module_source

pytestmark = pytest.mark.slow  # importing evaluate takes seconds

MODULE = """
import datasets
import evaluate


class LengthMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="exact match, and the predictions' length against the references' (corpus-level)",
            citation="",
            inputs_description="predictions, references",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, ignore_case=False):
        norm = str.lower if ignore_case else str
        same = [norm(p) == norm(r) for p, r in zip(predictions, references)]
        return {
            "match": sum(same) / len(same),
            "length_ratio": sum(map(len, predictions)) / sum(map(len, references)),
            "note": "not a number",
        }
"""


def _task(tmp_path, rows: list[dict], path: str, metrics: list) -> dict:
    """An Evaluation Only task of `rows` (written to set.jsonl) with `metrics`, the set given as `path`."""
    (tmp_path / "set.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = {"id": "id", "query": "q", "reference": "answer"}
    return {
        "name": "ev",
        "mode": "evaluation_only",
        "output": str(tmp_path / "out"),
        "models": [{"name": "m"}],
        "evaluation_sets": [
            {"name": "s", "path": path, "columns": columns, "predictions": {"m": "pred"}, "metrics": metrics}
        ],
    }


@pytest.fixture
def module(tmp_path):
    folder = tmp_path / "length_match"
    folder.mkdir()
    (folder / "length_match.py").write_text(MODULE)
    return folder


def test_per_item_and_set_scores_are_the_modules_own(module, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = get_metric("evaluate", module=str(module), outputs=["match", "length_ratio"], kwargs={"ignore_case": True})
    assert metric.outputs() == ["match", "length_ratio"]
    pairs = [("Paris", "paris"), ("Lyon", "Marseille"), ("abc", "ab")]
    items = [metric.score(p, r, {}) for p, r in pairs]
    assert [i.scores["match"] for i in items] == [1.0, 0.0, 0.0]
    assert items[2].scores["length_ratio"] == 1.5
    aggregate = metric.aggregator("length_ratio")
    for item in items:
        aggregate.add(item.scores["length_ratio"], json.loads(json.dumps(item.details)))  # as stored
    # corpus-level: total lengths (5 + 4 + 3) / (5 + 9 + 2), not the mean of the items' ratios
    assert aggregate.count == 3 and aggregate.value() == pytest.approx(12 / 16)
    matches = metric.aggregator("match")
    for item in items:
        matches.add(item.scores["match"], item.details)
    assert matches.value() == pytest.approx(1 / 3)
    with pytest.raises(MetricError, match="returned no note2"):
        get_metric("evaluate", module=str(module), outputs=["note2"]).score("a", "a", {})
    assert get_metric("evaluate", module=str(module), outputs=["note"]).score("a", "a", {}).scores == {"note": None}


def test_the_module_travels_with_the_checked_task(module, tmp_path):
    from rayeval.jobs.prepare import prepare
    from rayeval.spec import parse_task

    rows = [{"id": "i0", "q": "q", "answer": "a", "pred": "a"}]
    task = _task(tmp_path, rows, "set.jsonl", [{"evaluate": "length_match", "outputs": ["match"]}])  # relative
    spec = parse_task(task, base_dir=tmp_path)
    ref = spec.evaluation_sets[0].metrics[0]
    assert ref.name == "evaluate" and ref.options["module"] == str(module)
    (checked,) = prepare(spec).metrics_by_set["s"]
    assert checked.options["source"] == module_source(str(module))[1]  # actors need not see the folder
    task["evaluation_sets"][0]["metrics"] = [{"evaluate": "nowhere", "outputs": ["match"]}]
    with pytest.raises(MetricError, match="evaluate module .* not found"):
        prepare(parse_task(task, base_dir=tmp_path))
    task["evaluation_sets"][0]["metrics"] = [{"evaluate": "length_match"}]
    with pytest.raises((MetricError, SpecError), match="outputs"):
        prepare(parse_task(task, base_dir=tmp_path))
    both = [{"evaluate": "length_match", "outputs": ["match"]}, {"evaluate": "x", "outputs": ["y"]}]
    task["evaluation_sets"][0]["metrics"] = both
    with pytest.raises(SpecError, match="one evaluate module per set"):
        parse_task(task, base_dir=tmp_path)


@pytest.mark.ray
def test_a_task_scores_with_the_module_on_the_cluster(ray_cluster, module, tmp_path):
    """The scoring actors load the module from the source the task carries (not from the folder), and the
    summary's value is the module's compute() over the whole set."""
    import shutil

    import rayeval

    rows = [{"id": f"i{i}", "q": "q", "answer": "x" * (i % 3 + 1), "pred": "x" * (i % 2 + 1)} for i in range(20)]
    metrics = [{"evaluate": str(module), "outputs": ["match", "length_ratio"]}]
    task = _task(tmp_path, rows, str(tmp_path / "set.jsonl"), metrics)
    from rayeval.spec import parse_task

    spec = parse_task(task)
    shutil.move(str(module), str(tmp_path / "moved"))  # a module that is not there fails the task before it runs
    with pytest.raises(MetricError, match="not found"):
        rayeval.run(spec)
    shutil.move(str(tmp_path / "moved"), str(module))
    handle = rayeval.run(spec)
    summary = {r["metric"]: r for r in handle.results()}
    preds, refs = [r["pred"] for r in rows], [r["answer"] for r in rows]
    assert summary["match"]["value"] == pytest.approx(sum(p == r for p, r in zip(preds, refs)) / 20)
    assert summary["length_ratio"]["value"] == pytest.approx(sum(map(len, preds)) / sum(map(len, refs)))
    assert summary["match"]["items"] == 20 and summary["match"]["errors"] == 0
    frame = handle.frame(["item_id", "score__match", "details"])
    assert len(frame) == 20 and set(frame["details.evaluate.prediction"]) == {"x", "xx"}
