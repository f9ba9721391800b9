"""rayeval against lm-evaluation-harness, whole process and request phase, side by side in one run.

One OpenAI-compatible stub server (tests/support/openai_server.py, a subprocess) answers every
request after a fixed latency L ("The answer is N.", N the prompt's length, which is each item's
reference). For each N given, the same N items go, one after the other, through:

* `rayeval run TASK.yaml --quiet --json`: a new process that starts Ray in-process (no cluster given),
  an Inference and Evaluation task with MAX_CONCURRENCY C and numeric_match;
* `lm_eval --model local-chat-completions --apply_chat_template` with `num_concurrent` C, on a
  task of the same items written here (a local JSON file, no hub), scored by exact match on the
  number the answer ends with.

Each is timed as a whole process (start to exit), and the server's /_stats is polled to find its
request phase (first request .. last response). The ideal is N * L / C seconds (C requests
always in flight); the table prints each process's whole time and request phase against it,
and both scores (each must be 1.0: every item answered and scored).

With --judge, a second stub server is the judge of a judge metric in the rayeval task (same
latency, MAX_JUDGING_CONCURRENCY C): the ideal is then the overlapped one, max of the two
servers' N * L / C, and the sum of both is what predicting first and judging after pays at best
(lm-eval has no judge metric, so that case has rayeval alone against both ideals).

With --warm, the cluster is already running: peers.py starts one first (`ray start --head`, token
authentication on, its own ports and temp folder, stopped by its PID at the end), runs a
200-item warm-up task on it, then gives rayeval `--address` (the driver is still the timed process).

With --floor, benchmarks/ray_floor.py runs beside them the same way (in-process, or on the warm
cluster): Ray's own start-up and shutdown for the processes a rayeval run starts, with no work in
them. What it takes, plus the request phase at 0.97 of the ideal rate, is the best whole process any
Ray pipeline of rayeval's shape gets on this machine; the table prints that bound against the ideal.

lm-eval is an optional dependency (`pip install -e '.[bench]'`); --lm-eval names another
executable (e.g. in a virtual environment of its own). Run from the repository root::

    python benchmarks/peers.py                        # N = 5,000 and 20,000, L = 0.1 s, C = 24
    python benchmarks/peers.py --items 2000 --judge
    python benchmarks/peers.py --items 5000 --warm --floor
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import REPO, CpuTracker, StubProcess, bench_workdir
from judging import JUDGE_MODEL, JUDGE_PATTERN, JUDGE_PROMPT, Poller

LM_EVAL_TASK = """\
task: rayeval_peer
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{query}}}}"
doc_to_target: "{{{{reference.split('#### ')[-1]}}}}"
generation_kwargs:
  until: []
  max_gen_toks: 32
filter_list:
  - name: last_number
    filter:
      - function: regex
        regex_pattern: "(\\\\d+)\\\\.?$"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, nargs="+", default=[5000, 20000], help="N, one run each (default 5000 20000)")
    p.add_argument("--concurrency", type=int, default=24, help="C for both (default 24)")
    p.add_argument("--latency", type=float, default=0.1, help="stub server seconds per request (default 0.1)")
    p.add_argument("--judge", action="store_true", help="rayeval with a judge metric on a second server instead")
    p.add_argument("--lm-eval", default=None, help="the lm_eval executable (default: the one beside this Python)")
    p.add_argument("--warm", action="store_true", help="run rayeval on a cluster started first (ray start --head)")
    p.add_argument("--floor", action="store_true", help="also time Ray's own floor (benchmarks/ray_floor.py)")
    p.add_argument("--skip-lm-eval", action="store_true", help="rayeval only")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between /_stats polls (default 0.25)")
    p.add_argument("--workdir", type=Path, default=None, help="where data and results go (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = p.parse_args(argv)
    if min(args.items) < 1 or args.concurrency < 1 or args.latency <= 0:
        p.error("--items and --concurrency must be >= 1, --latency > 0")
    return args


def lm_eval_command(args: argparse.Namespace) -> list[str] | None:
    """How to start lm_eval, or None when it is not installed."""
    if args.lm_eval:
        return [args.lm_eval]
    beside = Path(sys.executable).parent / "lm_eval"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("lm_eval")
    return [found] if found else None


def timed(cmd: list[str], servers: dict[str, StubProcess], n: int, poll: float, log: Path) -> dict[str, Any]:
    """Run `cmd` to its end while polling the servers; its wall time and each server's request phase."""
    for server in servers.values():
        server.post("/_reset")
    poller = Poller(servers, n, poll, CpuTracker())
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    poller.start()
    t, started = time.perf_counter(), time.time()
    with log.open("w", encoding="utf-8") as out:
        rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t
    deadline = time.perf_counter() + max(2.0, 4 * poll)
    while not poller.done() and time.perf_counter() < deadline:
        time.sleep(0.02)
    poller.stopped.set()
    poller.join()
    phases = {}
    for name, server in servers.items():
        track, stats = poller.tracks[name], server.get("/_stats")
        seen = track.first is not None and track.last is not None
        phases[name] = {
            "requests": stats["total_requests"],
            "max_in_flight": stats["max_in_flight"],
            "span_s": track.last - track.first if seen else None,
            # the process's own time before the server's first request and after its last answer
            "before_s": track.first - t if seen else None,
            "after_s": t + wall - track.last if seen else None,
            "first_at": started + (track.first - t) if seen else None,  # Unix time
            "last_at": started + (track.last - t) if seen else None,
        }
    return {"rc": rc, "wall_s": wall, "started_at": started, "servers": phases, "log": str(log)}


def rayeval_phases(run: dict[str, Any], out: Path, warm: bool = False) -> list[tuple[str, float]]:
    """Where the rayeval process's seconds went, from its task record's times and the server's first and last
    request: (phase, seconds) in order, adding up to the whole process."""
    (record_file,) = out.glob("*/task.json")
    record = json.loads(record_file.read_text())
    pipeline = next((e["t"] for e in record.get("events", []) if "pipeline started" in e["message"]), None)
    servers = [p for p in run["servers"].values() if p["first_at"] is not None]
    if pipeline is None or not servers:
        return []
    first, last = min(p["first_at"] for p in servers), max(p["last_at"] for p in servers)
    cluster = "joins the running cluster" if warm else "starts a local cluster"
    marks = [
        (f"python, imports, ray.init ({cluster}), checks, coordinator", run["started_at"], record["created_at"]),
        ("limiter, reuse plan, service check, dataset built", record["created_at"], pipeline),
        ("Ray Data start: worker processes, actor pools, first batch", pipeline, first),
        ("request phase (first request .. last answer)", first, last),
        ("last answer .. results written and summarised", last, record["finished_at"]),
        ("ray.shutdown and exit", record["finished_at"], run["started_at"] + run["wall_s"]),
    ]
    return [(name, end - start) for name, start, end in marks]


def rayeval_task(args: argparse.Namespace, n: int, data: Path, out: Path, servers: dict[str, StubProcess]) -> dict:
    from tests.support.tasks import inference_task

    parameters = {"MAX_CONCURRENCY": args.concurrency, "MAX_JUDGING_CONCURRENCY": args.concurrency}
    model = [{"name": "m", "url": servers["model"].url, "model": "stub-model"}]
    task = inference_task(data, out, model, parameters=parameters, name=f"peers-{n}")
    if args.judge:
        task["judges"] = [{"name": "referee", "url": servers["judge"].url, "model": JUDGE_MODEL}]
        parser = {"kind": "regex", "pattern": JUDGE_PATTERN, "min_score": 0, "max_score": 1}
        judged = {"name": "judged", "judge": {"model": "referee", "prompt": JUDGE_PROMPT, "parser": parser}}
        task["evaluation_sets"][0]["metrics"] = [judged, "numeric_match"]
    return task


def rayeval_score(log: Path) -> float | None:
    """numeric_match from the JSON summary `rayeval run --json` ends its output with."""
    text = Path(log).read_text(encoding="utf-8", errors="replace")
    if "[\n  {" not in text:
        return None
    rows = json.loads(text[text.rindex("[\n  {") :])
    return next((r["value"] for r in rows if r["metric"] == "numeric_match"), None)


def lm_eval_score(out: Path) -> float | None:
    for path in sorted(out.rglob("results*.json")):
        results = json.loads(path.read_text())["results"]["rayeval_peer"]
        return next((v for k, v in results.items() if k.startswith("exact_match,")), None)
    return None


def address_option(cluster: dict[str, Any]) -> list[str]:
    return ["--address", cluster["address"]] if cluster else []


def rayeval_command(rayeval_cli: list[str], task_file: Path, cluster: dict[str, Any]) -> list[str]:
    """`rayeval run` of one task file, in-process or on the running cluster."""
    return [*rayeval_cli, "run", str(task_file), "--quiet", "--json", *address_option(cluster)]


def warm_cluster(
    args: argparse.Namespace,
    stack: contextlib.ExitStack,
    workdir: Path,
    servers: dict[str, StubProcess],
    rayeval_cli: list[str],
) -> dict[str, Any]:
    """Start a cluster with `ray start --head` (stopped by its PID when `stack` closes) and run a 200-item
    warm-up task on it: its address, and how long its start and the warm-up took."""
    import yaml

    from tests.support.clusters import head_node
    from tests.support.tasks import write_items

    os.environ["RAY_AUTH_MODE"] = "token"  # as a real cluster has it
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    t = time.perf_counter()
    head = stack.enter_context(head_node(dict(os.environ), prefix="rp"))
    started = time.perf_counter() - t
    cluster = {"address": head.gcs, "start_s": started}
    data = write_items(workdir / "items-warm-up.jsonl", 200)
    task_file = workdir / "task-warm-up.yaml"
    task_file.write_text(yaml.safe_dump(rayeval_task(args, 200, data, workdir / "rayeval-warm-up", servers)))
    cmd = rayeval_command(rayeval_cli, task_file, cluster)
    t = time.perf_counter()
    with (workdir / "warm-up.log").open("w", encoding="utf-8") as out:
        rc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"the warm-up task failed (rc {rc}); see {workdir / 'warm-up.log'}")
    cluster["warm_up_s"] = time.perf_counter() - t
    return cluster


def ray_floor(args: argparse.Namespace, cluster: dict[str, Any]) -> dict[str, Any]:
    """benchmarks/ray_floor.py run as a new process, timed whole: its wall time and its own time stamps."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "ray_floor.py"), *address_option(cluster)]
    cmd += ["--judge"] if args.judge else []
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"ray_floor.py failed (rc {done.returncode}): {done.stderr[-2000:]}")
    return {"wall_s": wall, "marks": json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir, own = bench_workdir(args.workdir, "rayeval-peers-")
    servers: dict[str, StubProcess] = {}
    rows: list[dict[str, Any]] = []
    stack = contextlib.ExitStack()
    try:
        import ray  # noqa: F401  (makes Ray's vendored psutil importable for the CPU tracker)
        import yaml

        from tests.support.tasks import write_items

        servers["model"] = StubProcess("model", args.latency)
        if args.judge:
            judge = ("--responder", "tests.support.responders:last_number_judge", "--model", JUDGE_MODEL)
            servers["judge"] = StubProcess("judge", args.latency, *judge)
        lm_eval = None if args.skip_lm_eval or args.judge else lm_eval_command(args)
        if lm_eval is None and not (args.skip_lm_eval or args.judge):
            print("lm_eval is not installed (pip install -e '.[bench]', or --lm-eval PATH): rayeval alone")
        rayeval_cli = [str(Path(sys.executable).parent / "rayeval")]
        cluster: dict[str, Any] = {}
        if args.warm:
            cluster = warm_cluster(args, stack, workdir, servers, rayeval_cli)
        floor = ray_floor(args, cluster) if args.floor else None
        for n in args.items:
            data = write_items(workdir / f"items-{n}.jsonl", n)
            ideal = n * args.latency / args.concurrency
            row: dict[str, Any] = {"items": n, "ideal_s": ideal}
            task_file = workdir / f"task-{n}.yaml"
            out = workdir / f"rayeval-{n}"
            task_file.write_text(yaml.safe_dump(rayeval_task(args, n, data, out, servers)))
            cmd = rayeval_command(rayeval_cli, task_file, cluster)
            ours = timed(cmd, servers, n, args.poll, workdir / f"r{n}.log")
            phases = rayeval_phases(ours, out, warm=bool(cluster))
            row["rayeval"] = {**ours, "score": rayeval_score(ours["log"]), "phases": phases}
            if lm_eval is not None:
                tasks = workdir / f"lm-eval-tasks-{n}"
                tasks.mkdir(exist_ok=True)
                (tasks / "rayeval_peer.yaml").write_text(LM_EVAL_TASK.format(data=data))
                model_args = (
                    f"model=stub-model,base_url={servers['model'].url}/chat/completions,"
                    f"num_concurrent={args.concurrency},max_retries=3,tokenized_requests=False"
                )
                cmd = [*lm_eval, "--model", "local-chat-completions", "--model_args", model_args]
                cmd += ["--tasks", "rayeval_peer", "--include_path", str(tasks), "--apply_chat_template"]
                cmd += ["--output_path", str(workdir / f"lm-eval-{n}")]
                theirs = timed(cmd, servers, n, args.poll, workdir / f"l{n}.log")
                row["lm_eval"] = {**theirs, "score": lm_eval_score(workdir / f"lm-eval-{n}")}
            rows.append(row)
        ok = report(args, rows, cluster, floor)
        if args.json:
            print(json.dumps({"rows": rows, "cluster": cluster, "floor": floor}))
        return 0 if ok else 1
    finally:
        for server in servers.values():
            server.stop()
        stack.close()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def report(
    args: argparse.Namespace, rows: list[dict[str, Any]], cluster: dict[str, Any], floor: dict[str, Any] | None
) -> bool:
    c, latency = args.concurrency, args.latency
    ok = True
    print()
    kind = "with a judge metric (second server)" if args.judge else "inference and a rule metric"
    print(f"rayeval against its peers: stub servers at {latency:g} s a request, C = {c}, {kind}")
    if cluster:
        print(
            f"  rayeval runs on a running cluster (--address {cluster['address']}): ray start --head took "
            f"{cluster['start_s']:.1f} s, a 200-item warm-up task {cluster['warm_up_s']:.1f} s"
        )
    if floor is not None:
        where = "on the running cluster" if cluster else "a local cluster started in-process"
        marks = ", ".join(f"{name} {at:.2f}" for name, at in floor["marks"].items() if at)
        print(f"  Ray's floor (benchmarks/ray_floor.py, {where}): whole process {floor['wall_s']:.1f} s")
        print(f"    seconds since the process started: {marks}")
    for row in rows:
        n, ideal = row["items"], row["ideal_s"]
        print(f"  N = {n}: ideal {ideal:.1f} s (N x {latency:g} / {c})" + (", overlapped" if args.judge else ""))
        if args.judge:
            print(f"    predict, then judge (sequential) pays at best {2 * ideal:.1f} s = 2.00x the overlapped ideal")
        for name in ("rayeval", "lm_eval"):
            run = row.get(name)
            if run is None:
                continue
            spans = []
            for server, phase in run["servers"].items():
                if phase["span_s"]:
                    ratio = phase["requests"] * latency / c / phase["span_s"]
                    spans.append(f"{server} {phase['span_s']:.1f} s = {ratio:.3f} of the ideal rate")
            good = run["rc"] == 0 and run["score"] == 1.0
            good = good and all(p["max_in_flight"] <= c and p["requests"] == n for p in run["servers"].values())
            ok = ok and good
            print(
                f"    {name:8} whole process {run['wall_s']:.1f} s = {run['wall_s'] / ideal:.2f}x ideal; "
                f"request phase {'; '.join(spans) or 'n/a'}; score {run['score']}; "
                f"{'ok' if good else 'NOT OK (see ' + run['log'] + ')'}"
            )
            ends = [p for p in run["servers"].values() if p["before_s"] is not None]
            if ends:
                print(
                    f"    {'':8} process start to first request {min(p['before_s'] for p in ends):.1f} s, "
                    f"last answer to exit {min(p['after_s'] for p in ends):.1f} s"
                )
            for phase, seconds in run.get("phases") or []:
                print(f"    {'':8}   {seconds:6.2f} s  {phase}")
        if floor is not None:
            best = floor["wall_s"] + ideal / 0.97
            print(
                f"    bound    Ray's floor + requests at 0.97 of the ideal rate: {floor['wall_s']:.1f} + "
                f"{ideal / 0.97:.1f} = {best:.1f} s = {best / ideal:.2f}x ideal"
            )
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
