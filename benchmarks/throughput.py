"""Inference throughput against a fixed-latency model service, compared with the ideal.

Starts the OpenAI-compatible stub server (tests/support/openai_server.py) in a subprocess with
a fixed per-request latency, runs an Inference and Evaluation task of N items with
MAX_CONCURRENCY C against it on a local Ray cluster, and prints:

* the ideal rate C / latency (C requests always in flight, each taking `latency` seconds);
* the steady-state rate: items / (server's first request .. last response), taken by polling
  the server's /_stats (it has no timestamps) every --poll seconds, and cross-checked with the
  server's own busy time (seconds with at least one request in flight);
* the end-to-end rate: items / wall time of `rayeval.run` (Ray Data and actor start-up, the
  Parquet write and the summary included), with the time split into start-up, steady and tail;
* the server's max_in_flight (must be <= C) and the share of busy time spent at C in flight;
* whether every item succeeded (summary errors == 0, numeric_match == 1.0).

Run from the repository root::

    python benchmarks/throughput.py                      # 20,000 items, C=24, 0.1 s
    python benchmarks/throughput.py --items 2000 --actors 4 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STEADY_TARGET = 0.95


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=20_000, help="items in the set (default 20000)")
    p.add_argument("--concurrency", type=int, default=24, help="MAX_CONCURRENCY (default 24)")
    p.add_argument("--latency", type=float, default=0.1, help="stub server seconds per request (default 0.1)")
    p.add_argument("--actors", type=int, default=None, help="resources.inference_actors (default: spec's, 2)")
    p.add_argument("--batch-size", type=int, default=None, help="resources.batch_size (default: spec's, 16)")
    p.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray cluster (default 4)")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between /_stats polls (default 0.25)")
    p.add_argument("--workdir", type=Path, default=None, help="where data and results go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (data, results) afterwards")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = p.parse_args(argv)
    if args.items < 1 or args.concurrency < 1 or args.latency <= 0 or args.poll <= 0:
        p.error("--items and --concurrency must be >= 1, --latency and --poll > 0")
    return args


# ----------------------------------------------------------------------------- stub server


class StubServer:
    """The stub server in a subprocess of ours; stopped (by its pid) on exit."""

    def __init__(self, latency: float):
        cmd = [sys.executable, "-m", "tests.support.openai_server", "--port", "0", "--latency", str(latency)]
        cmd.append("--no-record")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"stub server did not start (printed {line!r}, exit {self.proc.poll()})")
        self.url = line  # http://127.0.0.1:PORT/v1
        self.root = line.rsplit("/v1", 1)[0]

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.root + path, timeout=10) as r:
            return json.loads(r.read())

    def post(self, path: str) -> dict[str, Any]:
        req = urllib.request.Request(self.root + path, data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


class StatsPoller(threading.Thread):
    """Polls /_stats: when total_requests first became > 0, and when all N were answered."""

    def __init__(self, server: StubServer, items: int, every: float):
        super().__init__(daemon=True, name="stats-poller")
        self.server, self.items, self.every = server, items, every
        self.first: float | None = None  # perf_counter of the first poll seeing a request
        self.last: float | None = None  # first poll seeing total == N and nothing in flight
        self.reached_n: float | None = None  # first poll seeing total == N
        self.polls = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            t_next = time.perf_counter() + self.every
            try:
                stats = self.server.get("/_stats")
            except OSError:
                stats = None
            now = time.perf_counter()
            if stats is not None:
                self.polls += 1
                total, in_flight = stats["total_requests"], stats["in_flight"]
                if self.first is None and total > 0:
                    self.first = now
                if self.reached_n is None and total >= self.items:
                    self.reached_n = now
                if self.last is None and total >= self.items and in_flight == 0:
                    self.last = now
                    return
            self.stopped.wait(max(0.0, t_next - time.perf_counter()))


# ----------------------------------------------------------------------------- benchmark


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="rayeval-throughput-")) if own_workdir else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_enable_metrics_collection", "0")
    os.environ["RAYEVAL_HOME"] = str(workdir / "home")
    sys.path.insert(0, str(REPO))

    server = None
    ray = None
    try:
        from tests.support.tasks import inference_task, write_items

        data = write_items(workdir / "items.jsonl", args.items)
        server = StubServer(args.latency)

        import ray

        import rayeval

        t = time.perf_counter()
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="warning")
        ray.data.DataContext.get_current().enable_progress_bars = False
        ray_init_s = time.perf_counter() - t

        resources: dict[str, Any] = {}
        if args.actors is not None:
            resources["inference_actors"] = args.actors
        if args.batch_size is not None:
            resources["batch_size"] = args.batch_size
        task = inference_task(
            data,
            workdir / "results",
            [{"name": "m", "url": server.url, "model": "stub-model"}],
            parameters={"MAX_CONCURRENCY": args.concurrency},
            resources=resources,
            name="throughput",
        )
        server.post("/_reset")
        poller = StatsPoller(server, args.items, args.poll)
        poller.start()
        t_start = time.perf_counter()
        handle = rayeval.run(task)
        t_end = time.perf_counter()
        poller.stopped.set()
        poller.join()
        stats = server.get("/_stats")
        rows = handle.results()
        figures = report(args, stats, rows, poller, t_start, t_end, ray_init_s, resources)
        if args.json:
            print(json.dumps(figures))
        return 0 if figures["ok"] else 1
    finally:
        if ray is not None and ray.is_initialized():
            ray.shutdown()
        if server is not None:
            server.stop()
        if own_workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            print(f"work dir kept: {workdir}")


def report(
    args: argparse.Namespace,
    stats: dict[str, Any],
    rows: list[dict[str, Any]],
    poller: StatsPoller,
    t_start: float,
    t_end: float,
    ray_init_s: float,
    resources: dict[str, Any],
) -> dict[str, Any]:
    n, c, latency = args.items, args.concurrency, args.latency
    ideal = c / latency
    wall = t_end - t_start
    hist = {int(k): float(v) for k, v in stats["in_flight_seconds"].items()}
    busy = sum(hist.values())
    at_c = sum(s for k, s in hist.items() if k >= c)
    mean_in_flight = sum(k * s for k, s in hist.items()) / busy if busy else 0.0
    steady_s = (poller.last - poller.first) if poller.first is not None and poller.last is not None else None
    steady = n / steady_s if steady_s else None
    busy_rate = n / busy if busy else None
    e2e = n / wall

    nm = next((r for r in rows if r["metric"] == "numeric_match"), None)
    succeeded = (
        nm is not None
        and nm["items"] == n
        and nm["errors"] == 0
        and nm["value"] == 1.0
        and stats["total_requests"] == n
        and all(r["errors"] == 0 for r in rows)
    )
    within_c = stats["max_in_flight"] <= c

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    print()
    print("rayeval throughput benchmark")
    print(f"  items                      {n}")
    print(f"  MAX_CONCURRENCY (C)        {c}")
    print(f"  latency                    {latency:g} s")
    shown = {"inference_actors": 2, "batch_size": 16, **resources}
    print(f"  inference actors / batch   {shown['inference_actors']} / {shown['batch_size']}")
    print(f"  ideal                      {ideal:.1f} items/s  (C / latency)")
    print(
        f"  steady state               {pct(steady)} items/s  over {pct(steady_s)} s "
        f"(first request .. last response, /_stats polled every {args.poll:g} s)"
    )
    print(f"  steady / ideal             {pct(steady / ideal if steady else None)}  (target >= {STEADY_TARGET})")
    print(f"  server busy time           {busy:.3f} s -> {pct(busy_rate)} items/s, ratio {pct((busy_rate or 0) / ideal)}")
    print(f"  end to end                 {e2e:.1f} items/s  over {wall:.3f} s (rayeval.run wall time)")
    print(f"  end to end / ideal         {e2e / ideal:.3f}")
    if poller.first is not None and poller.last is not None:
        print(
            f"  wall split                 start-up {poller.first - t_start:.2f} s, steady {steady_s:.2f} s, "
            f"tail {t_end - poller.last:.2f} s (+ ray.init {ray_init_s:.2f} s, not in the wall time)"
        )
    print(f"  server max_in_flight       {stats['max_in_flight']} ({'<=' if within_c else '>'} C={c})")
    print(f"  busy time at C in flight   {at_c / busy if busy else 0.0:.3f}  (mean in flight {mean_in_flight:.2f})")
    print(f"  server total_requests      {stats['total_requests']}")
    if nm is not None:
        print(
            f"  summary numeric_match      value {nm['value']}, items {nm['items']}, scored {nm['scored']}, "
            f"errors {nm['errors']}"
        )
    print(f"  every item succeeded       {'yes' if succeeded else 'NO'}")
    if steady is not None and steady / ideal < STEADY_TARGET:
        print(f"  NOTE: steady-state ratio below the {STEADY_TARGET} target")
    if not within_c:
        print("  ERROR: the server saw more than MAX_CONCURRENCY requests in flight")
    return {
        "items": n,
        "concurrency": c,
        "latency": latency,
        "resources": shown,
        "ideal": ideal,
        "steady": steady,
        "steady_s": steady_s,
        "steady_ratio": steady / ideal if steady else None,
        "busy_s": busy,
        "busy_ratio": (busy_rate or 0) / ideal,
        "e2e": e2e,
        "wall_s": wall,
        "e2e_ratio": e2e / ideal,
        "startup_s": (poller.first - t_start) if poller.first is not None else None,
        "tail_s": (t_end - poller.last) if poller.last is not None else None,
        "max_in_flight": stats["max_in_flight"],
        "fraction_at_c": at_c / busy if busy else 0.0,
        "mean_in_flight": mean_in_flight,
        "total_requests": stats["total_requests"],
        "summary": nm,
        "ok": succeeded and within_c,
    }


if __name__ == "__main__":
    raise SystemExit(main())
