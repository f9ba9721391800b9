"""A model hosted on Ray Serve + vLLM: rayeval's pipeline vs. a plain async client, side by side.

Deploys a model with rayeval's own code path (default: the tiny random-weights Llama on the CPU),
then sends the same N chat requests (same bodies: greedy, max_tokens) to it twice, alternating:

* **direct**: a plain `httpx.AsyncClient` in this process with C requests in flight, straight to
  the Serve endpoint (the best a client can do);
* **rayeval**: an Inference and Evaluation task over the same N queries with MAX_CONCURRENCY C,
  joining the same deployment (read shards -> inference actors -> scoring -> Parquet).

and prints items/s and generated tokens/s for each, and rayeval's ratio to the direct client,
both for the pipeline's streaming window (Ray Data execution, from the first read to the last
write) and end to end (checks, summary and all). Each is run --repeat times; the best run of
each counts (the machine's other load only ever slows a run down).

Run from the repository root (vllm must be importable: `pip install -e '.[cpu]'`)::

    python benchmarks/hosted.py                        # 1,000 items, C=16, max_tokens 32
    python benchmarks/hosted.py --items 2000 --concurrency 32 --max-tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from _common import bench_workdir, time_phases

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.90


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=1000, help="requests per run (default 1000)")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight / MAX_CONCURRENCY (default 16)")
    p.add_argument("--max-tokens", type=int, default=32, help="max_tokens of every request (default 32)")
    p.add_argument("--max-model-len", type=int, default=512, help="the engine's MAX_MODEL_LEN (default 512)")
    p.add_argument("--repeat", type=int, default=2, help="runs of each side, alternating (default 2)")
    p.add_argument("--builtin", default="tiny-random-llama", help="built-in model to host (default: the tiny one)")
    p.add_argument("--path", default=None, help="host this checkpoint folder instead of a built-in model")
    p.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray cluster (default 4)")
    p.add_argument("--actors", type=int, default=None, help="resources.inference_actors (default: the spec's)")
    return p.parse_args(argv)


def queries(n: int) -> list[str]:
    """GSM8K test questions when the shared data is beside the repo, else generated arithmetic ones."""
    path = REPO.parent / "shared" / "data" / "gsm8k" / "test.jsonl"
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        base = [json.loads(line)["question"] for line in lines if line.strip()]
    else:
        base = [f"Natalia sold {i} clips in April and half as many in May. How many in all?" for i in range(500)]
    return [base[i % len(base)] for i in range(n)]


async def direct_run(endpoint: Any, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    """Send every body with `concurrency` in flight; returns wall seconds and tokens generated."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)
    tokens = errors = 0
    async with httpx.AsyncClient(limits=limits, timeout=300) as client:

        async def one(body: dict[str, Any]) -> None:
            nonlocal tokens, errors
            async with sem:
                r = await client.post(endpoint.url, json=body, headers=endpoint.headers)
            if r.status_code != 200:
                errors += 1
                return
            tokens += r.json()["usage"]["completion_tokens"]

        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        wall = time.perf_counter() - started
    return {"wall_s": wall, "tokens": tokens, "errors": errors}


def pipeline_run(
    args: argparse.Namespace, data: Path, out: Path, model: dict[str, Any], marks: dict[str, float]
) -> dict[str, float]:
    """One rayeval task over the same queries.

    Returns its inference window (first request sent to last answer, from the items' `started_at`
    and `latency_ms`: what the direct client's wall time measures), its streaming window (Ray Data
    execution: actor start-up, read, score and write included), its end-to-end wall time and tokens.
    """
    import pyarrow.compute as pc

    from rayeval.jobs.prepare import prepare
    from rayeval.jobs.runner import run_prepared
    from rayeval.spec import parse_task

    resources = {"inference_actors": args.actors} if args.actors else {}
    spec = parse_task(
        {
            "name": "hosted-bench",
            "mode": "inference_and_evaluation",
            "output": str(out),
            "models": [model],
            "parameters": {"max_tokens": args.max_tokens, "do_sample": False, "max_concurrency": args.concurrency},
            "resources": resources,
            "evaluation_sets": [{"name": "q", "path": str(data), "metrics": ["exact_match"]}],
            "reuse": False,  # every run measures hosting and inference, not an earlier run's results
        }
    )
    started = time.perf_counter()
    task = prepare(spec)
    final = run_prepared(task)
    wall = time.perf_counter() - started
    columns = ["completion_tokens", "error", "started_at", "latency_ms"]
    table = task.store.results_dataset(task.task_id).to_table(columns=columns)
    errors = table.num_rows - pc.sum(pc.is_null(table.column("error"))).as_py()
    ends = pc.add(table.column("started_at"), pc.divide(table.column("latency_ms"), 1000.0))
    assert final["state"] == "succeeded" and table.num_rows == args.items
    return {
        "wall_s": pc.max(ends).as_py() - pc.min(table.column("started_at")).as_py(),
        "stream_s": marks["summarize.start"] - marks["build_dataset.start"],
        "e2e_s": wall,
        "tokens": pc.sum(table.column("completion_tokens")).as_py(),
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work, _ = bench_workdir(None, "rayeval-hosted-")

    import ray

    from rayeval.actors.coordinator import get_coordinator
    from rayeval.inference.client import request_body, resolve_endpoint
    from rayeval.serve_apps.hosting import deploy, release
    from rayeval.spec import ModelSpec, Parameters

    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="warning")
    ray.data.DataContext.get_current().enable_progress_bars = False
    model = {"name": "bench-model", "engine": {"max_model_len": args.max_model_len}}
    model.update({"path": args.path} if args.path else {"builtin": args.builtin})
    t = time.perf_counter()
    spec = ModelSpec.model_validate(model)
    hosted = deploy(spec, user="benchmark", coordinator=get_coordinator())
    print(f"deployed {hosted.app} in {time.perf_counter() - t:.0f} s at {hosted.base_url}", flush=True)

    texts = queries(args.items)
    data = work / "set.jsonl"
    data.write_text("".join(json.dumps({"query": q, "reference": ""}) + "\n" for q in texts), encoding="utf-8")
    endpoint = resolve_endpoint(spec, None, hosted=hosted)
    params = Parameters(max_tokens=args.max_tokens, do_sample=False)
    bodies = [request_body(endpoint, q, params) for q in texts]

    asyncio.run(direct_run(endpoint, bodies[: 2 * args.concurrency], args.concurrency))  # warm the engine
    marks = time_phases()
    runs: dict[str, list[dict[str, float]]] = {"direct": [], "rayeval": []}
    for i in range(args.repeat):
        runs["direct"].append(asyncio.run(direct_run(endpoint, bodies, args.concurrency)))
        runs["rayeval"].append(pipeline_run(args, data, work / f"out{i}", model, marks))
        for side in runs:
            r = runs[side][-1]
            rate, tok_rate = args.items / r["wall_s"], r["tokens"] / r["wall_s"]
            print(
                f"  run {i + 1} {side:<8} {rate:7.1f} items/s  {tok_rate:8.0f} tok/s"
                f"  ({r['wall_s']:.1f} s, {r['errors']} errors)",
                flush=True,
            )
    release(hosted.app, user="benchmark", coordinator=get_coordinator(), keep=False)

    best = {side: min(rs, key=lambda r: r["wall_s"]) for side, rs in runs.items()}
    d, p = best["direct"], best["rayeval"]
    print()
    print(
        f"hosted-model benchmark: {args.items} chat requests, C={args.concurrency}, max_tokens {args.max_tokens}, "
        f"model {args.path or args.builtin} (MAX_MODEL_LEN {args.max_model_len}), best of {args.repeat}"
    )
    print(f"  {'':<38} {'items/s':>8} {'tokens/s':>9} {'seconds':>8}")
    rows = [
        ("direct async client", d["wall_s"], d["tokens"]),
        ("rayeval (first request .. last answer)", p["wall_s"], p["tokens"]),
        ("rayeval Ray Data run (start-up incl.)", p["stream_s"], p["tokens"]),
        ("rayeval end to end (checks, summary)", p["e2e_s"], p["tokens"]),
    ]
    for label, seconds, tokens in rows:
        print(f"  {label:<38} {args.items / seconds:8.1f} {tokens / seconds:9.0f} {seconds:8.1f}")
    ratios = sorted(dr["wall_s"] / pr["wall_s"] for dr, pr in zip(runs["direct"], runs["rayeval"]))
    print(f"  per-run ratios (rayeval run i / direct run i): {', '.join(f'{r:.3f}' for r in ratios)}")
    print(
        f"  rayeval / direct items/s: {d['wall_s'] / p['wall_s']:.3f} (target >= {TARGET}); over the Ray Data run "
        f"{d['wall_s'] / p['stream_s']:.3f}; end to end {d['wall_s'] / p['e2e_s']:.3f}"
    )
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
