"""The built-in BFCL set: read from BFCL's data folder layout and from the bfcl-eval package, asked
with BFCL's system prompt as the item's system message, scored per category and overall."""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import rayeval
from rayeval.errors import DatasetError
from rayeval.sets.builtin import materialize
from tests.metrics.test_bfcl import BFCL_ROOT, bfcl_reference, mutations, perfect_calls, render

STEMS = {"simple": "simple", "multiple": "multiple", "parallel": "parallel", "parallel_multiple": "parallel_multiple"}
V4 = {"simple": "simple_python", **{k: k for k in STEMS if k != "simple"}}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_bfcl_v3(root: Path, n: int = 5) -> Path:
    """BFCL's data folder as BFCL v3 named it (BFCL_v3_<category>.json and possible_answer/), JSON
    lines, with the first n questions of each category taken from bfcl-eval's own files."""
    folder = root / "bfcl"
    (folder / "possible_answer").mkdir(parents=True)
    for category, v3 in STEMS.items():
        for sub in ("", "possible_answer/"):
            rows = _lines(BFCL_ROOT / "data" / f"{sub}BFCL_v4_{V4[category]}.json")[:n]
            (folder / f"{sub}BFCL_v3_{v3}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_the_bfcl_folder_layout_reads_like_the_package(tmp_path):
    folder = write_bfcl_v3(tmp_path / "data")
    from_folder = _lines(materialize("bfcl", str(folder), None, cache=tmp_path / "c"))
    packaged = {r["id"]: r for r in _lines(materialize("bfcl", None, None, cache=tmp_path / "c"))}
    assert len(from_folder) == 20 and Counter(r["category"] for r in from_folder) == dict.fromkeys(STEMS, 5)
    assert all(r == packaged[r["id"]] for r in from_folder)
    (folder / "possible_answer" / "BFCL_v3_parallel.json").unlink()
    with pytest.raises(DatasetError, match="lacks some of the files it needs: BFCL_v4_<category>.json"):
        materialize("bfcl", str(folder), None, cache=tmp_path / "c2")


def test_bfcl_end_to_end_per_category_and_overall(ray_cluster, stub_server, tmp_path):
    _, verdict = bfcl_reference()
    rows = _lines(materialize("bfcl", None, None, cache=tmp_path / "c"))
    by_prompt = {(r["system"], r["query"]): r for r in rows}  # some questions come in two categories
    assert len(by_prompt) == len(rows)
    planned, failing = {}, set()
    for i, r in enumerate(rows):
        calls = perfect_calls(json.loads(r["reference"]), json.loads(r["functions"]))
        wrong = mutations(calls)
        planned[r["id"]] = [render(calls), wrong["wrong_value"] if "wrong_value" in wrong else wrong["wrong_name"],
                            wrong["prose"], wrong["reordered"]][i % 4]  # fmt: skip
        if i % 50 == 7:
            failing.add(r["id"])
    systems_seen: list[bool] = []
    lock = threading.Lock()

    def model(body: dict) -> str:
        system, user = body["messages"][0], body["messages"][1]
        row = by_prompt.get((system["content"], user["content"]))
        with lock:
            systems_seen.append(system["role"] == "system" and row is not None)
        if row["id"] in failing:
            raise RuntimeError("the stub fails this item")
        return planned[row["id"]]

    server = stub_server(responder=model)
    task = {
        "name": "bfcl",
        "mode": "inference_and_evaluation",
        "output": str(tmp_path / "out"),
        "reuse": False,
        "models": [{"name": "m", "url": server.url, "model": "stub-model"}],
        "evaluation_sets": [{"name": "bfcl", "builtin": "bfcl"}],
    }
    summary = {r["metric"]: r for r in rayeval.run(task).results()}
    assert len(systems_seen) == len(rows) and all(systems_seen)

    right: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    for r in rows:
        if r["id"] in failing:
            errors[r["category"]] += 1
        else:
            ok = verdict(json.loads(r["functions"]), planned[r["id"]], json.loads(r["reference"]), r["category"])
            right[r["category"]].append(float(ok))
    sizes = Counter(r["category"] for r in rows)
    for category, scores in right.items():
        got = summary[f"bfcl_ast_{category}"]
        assert got["value"] == pytest.approx(sum(scores) / len(scores))
        assert (got["items"], got["scored"], got["errors"]) == (sizes[category], len(scores), errors[category])
    overall = summary["bfcl_ast"]
    assert overall["value"] == pytest.approx(sum(sum(s) / len(s) for s in right.values()) / 4)
    assert (overall["items"], overall["errors"]) == (len(rows), len(failing))
    assert 0.3 < overall["value"] < 0.7  # the plan: half right, half wrong
