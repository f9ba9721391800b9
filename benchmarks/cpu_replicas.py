"""CPU replicas of a hosted model: rayeval's thread setting against vLLM's own CPU binding, side by side.

vLLM's CPU build pins its worker's OpenMP threads by itself (VLLM_CPU_OMP_THREADS_BIND=auto): to the
cores of the first NUMA node but one, which it keeps for its scheduler. It does not know which CPUs
Ray gave a replica, so every engine on a node goes to the same cores. rayeval's CPU replicas run
unpinned with as many threads as their bundle has CPUs (`rayeval.serve_apps.llm.cpu_threads`).

This deploys the same model with rayeval's code path twice per round, once with each setting (the
vLLM side only drops rayeval's two variables), sends the same N chat requests with C in flight
straight to the Serve endpoint, and prints tokens/s for each and their ratio. With --replicas 2 on
2 cores, vLLM's binding put both engines on core 0.

Run from the repository root (vllm must be importable: `pip install -e '.[cpu]'`)::

    python benchmarks/cpu_replicas.py                                # SmolLM2, 2 replicas, 96 requests
    python benchmarks/cpu_replicas.py --builtin tiny-random-llama --items 400 --max-tokens 32
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _common import bench_workdir
from hosted import direct_run, queries


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=96, help="requests per measurement (default 96)")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request (default 64)")
    p.add_argument("--replicas", type=int, default=2, help="replicas of the model (default 2)")
    p.add_argument(
        "--builtin", default="smollm2-135m-instruct", help="built-in model to host (default: the quick start's)"
    )
    p.add_argument("--max-model-len", type=int, default=512, help="the engine's MAX_MODEL_LEN (default 512)")
    p.add_argument("--repeat", type=int, default=2, help="rounds, each deploying both settings (default 2)")
    p.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray cluster (default 4)")
    return p.parse_args(argv)


def measure(args: argparse.Namespace, setting: str) -> dict[str, float]:
    """Deploy with one thread setting, warm the engines, send the requests; returns seconds and tokens."""
    from rayeval.actors.coordinator import get_coordinator
    from rayeval.inference.client import request_body, resolve_endpoint
    from rayeval.serve_apps import llm
    from rayeval.serve_apps.hosting import deploy, release
    from rayeval.spec import ModelSpec, Parameters

    rayevals = llm.cpu_threads
    if setting == "vllm":
        llm.cpu_threads = lambda engine: {}  # vLLM's defaults: VLLM_CPU_OMP_THREADS_BIND=auto
    try:
        spec = ModelSpec.model_validate(
            {
                "name": f"binding-{setting}",
                "builtin": args.builtin,
                "engine": {"max_model_len": args.max_model_len, "replicas": args.replicas},
            }
        )
        t = time.perf_counter()
        hosted = deploy(spec, user="benchmark", coordinator=get_coordinator())
        deployed = time.perf_counter() - t
    finally:
        llm.cpu_threads = rayevals
    try:
        endpoint = resolve_endpoint(spec, None, hosted=hosted)
        params = Parameters(max_tokens=args.max_tokens, do_sample=False)
        bodies = [request_body(endpoint, q, params) for q in queries(args.items)]
        asyncio.run(direct_run(endpoint, bodies[: 2 * args.concurrency], args.concurrency))  # warm every replica
        result = asyncio.run(direct_run(endpoint, bodies, args.concurrency))
    finally:
        release(hosted.app, user="benchmark", coordinator=get_coordinator(), keep=False)
    return {**result, "deploy_s": deployed}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_workdir(None, "rayeval-cpu-replicas-")

    import ray

    ray.init(
        address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="warning", log_to_driver=False
    )
    runs: dict[str, list[dict[str, float]]] = {"rayeval": [], "vllm": []}
    for i in range(args.repeat):
        order = ("rayeval", "vllm") if i % 2 == 0 else ("vllm", "rayeval")  # alternated: drift hits both
        for setting in order:
            r = measure(args, setting)
            runs[setting].append(r)
            print(
                f"  round {i + 1} {setting:<8} {r['tokens'] / r['wall_s']:8.0f} tok/s  ({r['wall_s']:.1f} s, "
                f"{r['errors']} errors; deployed in {r['deploy_s']:.0f} s)",
                flush=True,
            )
    ray.shutdown()

    best = {setting: min(rs, key=lambda r: r["wall_s"]) for setting, rs in runs.items()}
    print()
    print(
        f"CPU replicas: {args.replicas} of {args.builtin} (MAX_MODEL_LEN {args.max_model_len}), {args.items} chat "
        f"requests, C={args.concurrency}, max_tokens {args.max_tokens}, best of {args.repeat} rounds"
    )
    for setting, label in (("rayeval", "rayeval: unpinned, bundle CPUs as threads"), ("vllm", "vLLM's own binding")):
        r = best[setting]
        print(f"  {label:<44} {r['tokens'] / r['wall_s']:8.0f} tok/s {r['wall_s']:8.1f} s")
    print(f"  rayeval / vLLM's binding, tokens/s: {best['vllm']['wall_s'] / best['rayeval']['wall_s']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
