"""Results people read: weighted comprehensive scores and rankings against hand-computed values,
seeded bootstrap intervals, the comparison with a reference model, on real Evaluation Only runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import rayeval
from rayeval.analysis import compute_results
from rayeval.cli import main
from rayeval.errors import SpecError
from rayeval.spec.weights import parse_weights

# model -> (right answers of set a's 20 items, right answers of set b's 10 items)
RIGHT = {"p": (18, 2), "q": (8, 9), "r": (10, 5)}


def _write(folder: Path, name: str, n: int, right: dict[str, int], scale: int = 1) -> dict:
    """A set of n*scale items (reference 'yes') and, per model, a predictions file right on the first
    right[model]*scale items."""
    folder.mkdir(parents=True, exist_ok=True)
    items = [{"id": f"{name}{i}", "query": f"q{i}?", "reference": "yes"} for i in range(n * scale)]
    files = {}
    for model, k in right.items():
        path = folder / f"{name}-{model}.jsonl"
        path.write_text(
            "".join(
                json.dumps({**it, "prediction": "yes" if i < k * scale else "no"}) + "\n" for i, it in enumerate(items)
            )
        )
        files[model] = str(path)
    return {"name": name, "columns": {"id": "id"}, "prediction_files": files, "metrics": ["exact_match"]}


def _task(tmp_path: Path, scale: int = 1, **extra) -> dict:
    data = tmp_path / f"data{scale}"
    return {
        "name": f"board{scale}",
        "mode": "evaluation_only",
        "output": str(tmp_path / "out"),
        "reuse": False,
        "models": [{"name": m} for m in RIGHT],
        "evaluation_sets": [
            _write(data, "a", 20, {m: r[0] for m, r in RIGHT.items()}, scale),
            _write(data, "b", 10, {m: r[1] for m, r in RIGHT.items()}, scale),
        ],
        **extra,
    }


@pytest.fixture(scope="module")
def board_task(ray_cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("board")
    return rayeval.run(_task(tmp, reference_model="r", weights={"metrics": {"exact_match": 1.0}})).task_id, tmp


def test_weighted_scores_and_rankings_equal_hand_computed_values(board_task):
    task_id, _ = board_task
    default = compute_results(task_id)
    value = {(r.model, r.eval_set): r.value for r in default.rows}
    assert value[("p", "a")] == 0.9 and value[("q", "b")] == 0.9 and value[("r", "a")] == 0.5
    scores = {s.model: s.score for s in default.leaderboard}
    assert scores == pytest.approx({"p": (0.9 + 0.2) / 2, "q": (0.4 + 0.9) / 2, "r": 0.5})
    assert [s.model for s in default.leaderboard] == ["q", "p", "r"] and [s.rank for s in default.leaderboard] == [
        1,
        2,
        3,
    ]

    a_heavy = compute_results(task_id, weights="a=3")
    assert {s.model: s.score for s in a_heavy.leaderboard} == pytest.approx(
        {"p": (3 * 0.9 + 0.2) / 4, "q": (3 * 0.4 + 0.9) / 4, "r": 0.5}
    )
    assert [s.model for s in a_heavy.leaderboard] == ["p", "q", "r"]
    only_b = compute_results(task_id, weights={"sets": {"a": 0}})
    assert [s.model for s in only_b.leaderboard] == ["q", "r", "p"]
    assert all(s.components == 1 for s in only_b.leaderboard)


def test_intervals_are_seeded_contain_the_value_and_shrink_with_items(board_task, ray_cluster):
    task_id, tmp = board_task
    first, again, other = compute_results(task_id), compute_results(task_id), compute_results(task_id, seed=7)
    assert [(r.ci_low, r.ci_high) for r in first.rows] == [(r.ci_low, r.ci_high) for r in again.rows]
    assert [(r.ci_low, r.ci_high) for r in first.rows] != [(r.ci_low, r.ci_high) for r in other.rows]
    for r in first.rows:
        assert r.ci_low <= r.value <= r.ci_high
    for s in first.leaderboard:
        assert s.ci_low <= s.score <= s.ci_high
    # q (0.65) and p (0.55) overlap at 30 items: the ranking says so
    assert first.leaderboard[0].overlaps_next

    big = compute_results(rayeval.run(_task(tmp, scale=10)).task_id)
    small_width = {(r.model, r.eval_set): r.ci_high - r.ci_low for r in first.rows}
    for r in big.rows:
        if 0 < r.value < 1:
            assert r.ci_high - r.ci_low < small_width[(r.model, r.eval_set)] * 0.6
    assert {(r.model, r.eval_set): r.value for r in big.rows} == {(r.model, r.eval_set): r.value for r in first.rows}


def test_the_reference_comparison_counts_wins_and_tests_them(board_task):
    task_id, _ = board_task
    results = compute_results(task_id)  # the task's reference_model: r
    assert results.reference == "r"
    c = {(x.model, x.eval_set): x for x in results.comparison}
    # set a: p right on items 0-17, r on 0-9: p wins 8 items, loses none, 12 ties
    pa = c[("p", "a")]
    assert (pa.wins, pa.losses, pa.ties, pa.paired) == (8, 0, 12, 20)
    assert pa.mean_diff == pytest.approx(0.4) and pa.p_value == pytest.approx(2 * 0.5**8)
    assert pa.ci_low <= 0.4 <= pa.ci_high and pa.ci_low > 0
    qa = c[("q", "a")]  # q right on 0-7: loses items 8 and 9
    assert (qa.wins, qa.losses, qa.ties) == (0, 2, 18) and qa.p_value == pytest.approx(0.5)
    assert ("r", "a") not in c
    with pytest.raises(SpecError, match="reference model 'x' is not a model"):
        compute_results(task_id, reference="x")


def test_weights_parse_and_normalise(tmp_path):
    w = parse_weights("gsm8k=2, metric:rouge1=0.5")
    assert w.weight("gsm8k", "rouge1") == 1.0 and w.weight("other", "accuracy") == 1.0
    (tmp_path / "w.yaml").write_text("sets: {a: 2}\nranges: {latency: [1000, 0]}\n")
    f = parse_weights(str(tmp_path / "w.yaml"))
    assert f.sets == {"a": 2} and f.normalise("latency", 250) == 0.75 and f.normalise("latency", 5000) == 0.0
    assert f.normalise("accuracy", 0.3) == 0.3 and f.normalise("mean_chars", 17.0) is None
    for bad, message in [("a=x", "is not a number"), ("a", "is not NAME=WEIGHT"), ("a=-1", "must be 0 or more")]:
        with pytest.raises(SpecError, match=message):
            parse_weights(bad)
    with pytest.raises(SpecError, match="two different ends"):
        parse_weights({"ranges": {"x": [1, 1]}})


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("w.yaml", "sets: {a: [1\n", "weights file .*w.yaml is not valid YAML \\(line 2\\)"),
        ("w.json", '{"sets": {"a": 1,}}', "weights file .*w.json is not valid JSON: .* \\(line 1\\)"),
        ("w.yaml", b"sets: {\xff: 1}", "is not UTF-8 \\(bad byte at offset 7\\)"),
        ("w.yaml", "- a\n- b\n", "must be a mapping with sets:, metrics: and ranges:, not list"),
        ("w.yaml", "sets: {a: .nan}", "weights must be finite numbers; not so for a"),
        ("w.json", '{"metrics": {"f1": Infinity}}', "weights must be finite numbers; not so for f1"),
        ("w.yaml", "ranges: {x: [0, .inf]}", "a range's ends must be finite numbers; not so for x"),
    ],
)
def test_a_bad_weights_file_is_one_line_that_says_what(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SpecError, match=message) as e:
        parse_weights(str(path))
    assert "\n" not in str(e.value)
    with pytest.raises(SpecError, match="not so for a"):
        parse_weights("a=nan")


def test_weights_naming_what_the_task_lacks_are_refused(board_task):
    task_id, tmp = board_task
    out = CliRunner().invoke(main, ["results", task_id, "--weights", "nosuchset=2", "--output", str(tmp / "out")])
    assert out.exit_code == 2  # a bad input, as for every SpecError
    assert "rayeval: error: field 'weights': weights name set(s) 'nosuchset', which task" in out.output
    assert "(its sets: a, b)" in out.output
    out = CliRunner().invoke(main, ["results", task_id, "--weights", "metric:f2=2", "--output", str(tmp / "out")])
    assert out.exit_code == 2 and "weights name metric(s) 'f2'" in out.output


def test_the_cli_prints_exports_and_reweights(board_task):
    task_id, tmp = board_task
    out = CliRunner().invoke(main, ["results", task_id, "--weights", "a=3", "--output", str(tmp / "out")])
    assert out.exit_code == 0, out.output
    board = out.output.split("\n\n")[0]
    assert board.index(" p ") < board.index(" q ") < board.index(" r ")
    assert "Against the reference model r" in out.output and "CI overlaps the next" in out.output
    export = tmp / "export"
    done = CliRunner().invoke(main, ["results", task_id, "--output", str(tmp / "out"), "--export", str(export)])
    assert done.exit_code == 0, done.output
    assert {p.name for p in export.iterdir()} >= {"scores.csv", "leaderboard.csv", "comparison.csv", "results.json"}
    data = json.loads((export / "results.json").read_text())
    assert [s["model"] for s in data["leaderboard"]] == ["q", "p", "r"]
    assert "scores.csv" in done.output and "results" in done.output  # says where the Parquet rows are


def test_gsm8k_four_models_ranked_by_accuracy_with_intervals(ray_cluster, gsm8k_predictions, tmp_path):
    from rayeval.spec import load_task

    spec = load_task(Path(__file__).resolve().parents[2] / "examples" / "gsm8k-eval-only.yaml")
    spec = spec.model_copy(
        update={"output": str(tmp_path / "out"), "reuse": spec.reuse.model_copy(update={"enabled": False})}
    )
    results = compute_results(rayeval.run(spec).task_id)
    accuracy = {r.model: r.value for r in results.rows}
    assert [s.model for s in results.leaderboard] == sorted(accuracy, key=lambda m: -accuracy[m])
    for s in results.leaderboard:
        assert s.score == accuracy[s.model] and s.ci_low < s.score < s.ci_high
        assert 0.02 < s.ci_high - s.ci_low < 0.08  # 1,319 items


def test_corpus_level_scores_get_intervals_by_recomputing_them(ray_cluster, tmp_path):
    """BLEU is corpus-level: each resample recomputes it from the items' n-gram statistics."""
    import sacrebleu

    data = tmp_path / "bleu"
    data.mkdir()
    refs = [f"the cat number {i} sat on the warm mat today" for i in range(40)]
    hyps = {
        "good": [r if i % 4 else r.replace("warm", "cold") for i, r in enumerate(refs)],
        "poor": [" ".join(r.split()[: 3 + i % 5]) for i, r in enumerate(refs)],
    }
    items = [{"id": f"i{i}", "query": "translate", "reference": r} for i, r in enumerate(refs)]
    files = {}
    for model, preds in hyps.items():
        path = data / f"{model}.jsonl"
        path.write_text("".join(json.dumps({**it, "prediction": p}) + "\n" for it, p in zip(items, preds)))
        files[model] = str(path)
    task = {
        "name": "bleu-ci",
        "mode": "evaluation_only",
        "output": str(tmp_path / "out"),
        "reuse": False,
        "models": [{"name": m} for m in hyps],
        "evaluation_sets": [{"name": "mt", "columns": {"id": "id"}, "prediction_files": files, "metrics": ["bleu"]}],
    }
    results = compute_results(rayeval.run(task).task_id, resamples=300)
    rows = {r.model: r for r in results.rows}
    for model, preds in hyps.items():
        corpus = sacrebleu.corpus_bleu(preds, [refs]).score / 100
        assert rows[model].value == pytest.approx(corpus)
        assert rows[model].ci_low < corpus < rows[model].ci_high
    assert [s.model for s in results.leaderboard] == ["good", "poor"] and not results.leaderboard[0].overlaps_next
    again = compute_results(results.task_id, resamples=300)
    assert [(r.ci_low, r.ci_high) for r in again.rows] == [(r.ci_low, r.ci_high) for r in results.rows]
