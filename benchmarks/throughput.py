"""Inference throughput against a fixed-latency model service, compared with the ideal.

Starts the OpenAI-compatible stub server (tests/support/openai_server.py) in a subprocess with
a fixed per-request latency, runs an Inference and Evaluation task of N items with
MAX_CONCURRENCY C against it on a local Ray cluster, and prints:

* the ideal rate C / latency (C requests always in flight, each taking `latency` seconds);
* the steady-state rate: items / (server's first request .. last response), taken by polling
  the server's /_stats (it has no timestamps) every --poll seconds, cross-checked with the
  server's own busy time (seconds with at least one request in flight), and split into the
  first 10% of the requests (ramp), the middle 80% and the last 10% (tail);
* the end-to-end rate: items / wall time of `rayeval.run` (Ray Data and actor start-up, the
  Parquet write and the summary included), with the wall time split into phases (marked by
  wrapping, not changing, rayeval.jobs.runner's prepare, build_dataset and summarize);
* the server's max_in_flight (must be <= C) and the share of busy time spent at C in flight;
* client-side request latency (from the results) and CPU seconds per process of the session;
* whether every item succeeded (summary errors == 0, numeric_match == 1.0).

Run from the repository root::

    python benchmarks/throughput.py                      # 20,000 items, C=24, 0.1 s
    python benchmarks/throughput.py --items 2000 --actors 4 --batch-size 8
    python benchmarks/throughput.py --warmup 1000 --timeline benchmarks/out/timeline.csv
    python benchmarks/throughput.py --items 2000 --error-rate 0.1 --retries 3   # retries

With --error-rate the server answers that share of requests with HTTP 500 (a seeded draw per
request) and MAX_RETRY_PER_QUERY is --retries: the steady phase then ends at the last response,
and its ratio counts the requests sent (retries included), so it shows whether a backoff idles
the other items' concurrency. Items that failed every try must show as errors, each once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from _common import CpuTracker, StubProcess, bench_workdir, measured_run, time_phases, warm_up

REPO = Path(__file__).resolve().parents[1]
STEADY_TARGET = 0.95


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=20_000, help="items in the set (default 20000)")
    p.add_argument("--concurrency", type=int, default=24, help="MAX_CONCURRENCY (default 24)")
    p.add_argument("--latency", type=float, default=0.1, help="stub server seconds per request (default 0.1)")
    p.add_argument("--actors", type=int, default=None, help="resources.inference_actors (default: spec's, 2)")
    p.add_argument("--batch-size", type=int, default=None, help="resources.batch_size (default: spec's, 16)")
    p.add_argument(
        "--warmup", type=int, default=0, help="first run a task of this many items on the same cluster (default 0)"
    )
    p.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered HTTP 500 (default 0)")
    p.add_argument("--retries", type=int, default=None, help="MAX_RETRY_PER_QUERY (default: the spec's)")
    p.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray cluster (default 4)")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between /_stats polls (default 0.25)")
    p.add_argument("--timeline", type=Path, default=None, help="write the polled (t, requests, in flight) as CSV")
    p.add_argument("--workdir", type=Path, default=None, help="where data and results go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (data, results) afterwards")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = p.parse_args(argv)
    if args.items < 1 or args.concurrency < 1 or args.latency <= 0 or args.poll <= 0 or args.warmup < 0:
        p.error("--items and --concurrency must be >= 1, --latency and --poll > 0, --warmup >= 0")
    if not 0 <= args.error_rate < 1 or (args.retries is not None and args.retries < 0):
        p.error("--error-rate must be in [0, 1) and --retries >= 0")
    return args


# ----------------------------------------------------------------------------- stub server


class StatsPoller(threading.Thread):
    """Polls /_stats: when total_requests first became > 0, and when all N were answered."""

    def __init__(self, server: StubProcess, items: int, every: float, cpu: CpuTracker):
        super().__init__(daemon=True, name="stats-poller")
        self.server, self.items, self.every, self.cpu = server, items, every, cpu
        self.first: float | None = None  # perf_counter of the first poll seeing a request
        self.last: float | None = None  # first poll seeing total == N and nothing in flight
        self.samples: list[tuple[float, int, int]] = []  # (perf_counter, total_requests, in_flight)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            t_next = time.perf_counter() + self.every
            try:
                stats = self.server.get("/_stats")
            except OSError:
                stats = None
            now = time.perf_counter()
            self.cpu.update()
            if stats is not None:
                total, in_flight = stats["total_requests"], stats["in_flight"]
                self.samples.append((now, total, in_flight))
                if self.first is None and total > 0:
                    self.first = now
                if self.last is None and total >= self.items and in_flight == 0:
                    self.last = now
            self.stopped.wait(max(0.0, t_next - time.perf_counter()))


# ----------------------------------------------------------------------------- benchmark


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir, own_workdir = bench_workdir(args.workdir, "rayeval-throughput-")

    server = None
    ray = None
    try:
        from tests.support.tasks import inference_task, write_items

        data = write_items(workdir / "items.jsonl", args.items)
        faults = ("--fault-rate", str(args.error_rate), "--fault-kinds", "500") if args.error_rate else ()
        server = StubProcess("model", args.latency, *faults)

        import ray

        import rayeval
        from rayeval.spec import parse_task

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
            parameters={
                "MAX_CONCURRENCY": args.concurrency,
                **({} if args.retries is None else {"MAX_RETRY_PER_QUERY": args.retries}),
            },
            resources=resources,
            name="throughput",
            reuse=False,  # the warm-up's results must not stand in for the measured run's
        )
        spec_resources = parse_task(task).resources
        warm_up(rayeval.run, task, workdir, args.warmup)
        server.post("/_reset")
        marks = time_phases()
        cpu_tracker = CpuTracker()
        poller = StatsPoller(server, args.items, args.poll, cpu_tracker)
        handle, t_start, t_end, cpu = measured_run(
            rayeval.run, task, poller, cpu_tracker, lambda: poller.last is not None, args.poll
        )
        stats = server.get("/_stats")
        if args.error_rate:  # retries: the steady phase ends at the last response, not the N-th request
            poller.last = next(
                (t for t, c, inf in poller.samples if c >= stats["total_requests"] and inf == 0), poller.last
            )
        if poller.last is not None:  # a poll sees the last response up to --poll s late
            poller.last = min(poller.last, marks.get("summarize.start", t_end), t_end)
        rows = handle.results()
        items = handle.items().to_table(columns=["item_id", "latency_ms", "error"])
        latencies = items.column("latency_ms").to_pylist()
        ids = items.column("item_id").to_pylist()
        stored_once = len(ids) if len(set(ids)) == len(ids) else -1
        item_counts = (stored_once, sum(e is not None for e in items.column("error").to_pylist()))
        if args.timeline is not None:
            with args.timeline.open("w", encoding="utf-8") as f:
                f.write("t,total_requests,in_flight\n")
                f.writelines(f"{t - t_start:.3f},{total},{inf}\n" for t, total, inf in poller.samples)
        figures = report(
            args, stats, rows, poller, latencies, cpu, marks, t_start, t_end, ray_init_s, spec_resources, item_counts
        )
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


def steady_parts(poller: StatsPoller, n: int, ideal: float) -> list[tuple[str, float, float]]:
    """Seconds taken by the first 10%, middle 80% and last 10% of the requests, against the ideal."""
    if poller.first is None or poller.last is None:
        return []
    t10 = next((t for t, c, _ in poller.samples if c >= 0.1 * n), None)
    t90 = next((t for t, c, _ in poller.samples if c >= 0.9 * n), None)
    if t10 is None or t90 is None:
        return []
    return [
        ("first 10% (ramp)", t10 - poller.first, 0.1 * n / ideal),
        ("middle 80%", t90 - t10, 0.8 * n / ideal),
        ("last 10% (tail)", poller.last - t90, 0.1 * n / ideal),
    ]


def mid_rate(samples: list[tuple[float, int, int]], n: int) -> float | None:
    """Requests/s between the polls where 10% and 90% of the requests had arrived (no ramp, no tail)."""
    lo = next(((t, c) for t, c, _ in samples if c >= 0.1 * n), None)
    hi = next(((t, c) for t, c, _ in samples if c >= 0.9 * n), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return None
    return (hi[1] - lo[1]) / (hi[0] - lo[0])


def phase_split(marks: dict[str, float], poller: StatsPoller, t_start: float, t_end: float) -> dict[str, float]:
    """rayeval.run's wall time cut at the phase marks and the first request / last response."""
    points = [("prepare (checks, set scan, service check)", marks.get("prepare.end"))]
    points.append(("coordinator + limiter", marks.get("build_dataset.start")))
    points.append(("pipeline start-up to 1st request", poller.first))
    points.append(("steady", poller.last))
    points.append(("last response to write done", marks.get("summarize.start")))
    points.append(("summary + finish", t_end))
    out, prev = {}, t_start
    for label, t in points:
        if t is None:
            continue
        out[label] = t - prev
        prev = t
    return out


def report(
    args: argparse.Namespace,
    stats: dict[str, Any],
    rows: list[dict[str, Any]],
    poller: StatsPoller,
    latencies: list[float | None],
    cpu: dict[str, float],
    marks: dict[str, float],
    t_start: float,
    t_end: float,
    ray_init_s: float,
    resources: Any,
    item_counts: tuple[int, int],
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
    lat = sorted(x for x in latencies if x is not None)
    q = {k: lat[min(len(lat) - 1, int(k / 100 * len(lat)))] if lat else None for k in (50, 90, 99)}
    # In-flight as seen by the polls between the first request and the last response.
    steady_polls = [inf for t, _, inf in poller.samples if poller.first is not None and t >= poller.first]
    steady_polls = steady_polls[:-1] if steady_polls and steady_polls[-1] == 0 else steady_polls
    polled_mean = sum(steady_polls) / len(steady_polls) if steady_polls else None
    mid = mid_rate(poller.samples, n)
    cores = os.cpu_count() or 1

    nm = next((r for r in rows if r["metric"] == "numeric_match"), None)
    sent = stats["total_requests"]
    sent_ratio = sent / steady_s / ideal if steady_s else None
    if args.error_rate:  # an item may fail every try: it is an error, stored once, never a wrong score
        stored, failed = item_counts
        succeeded = nm is not None and nm["items"] == n == stored and nm["errors"] == failed and nm["value"] == 1.0
    else:
        succeeded = (
            nm is not None
            and nm["items"] == n
            and nm["errors"] == 0
            and nm["value"] == 1.0
            and sent == n
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
    if args.warmup:
        print(f"  warm cluster               after a {args.warmup}-item warm-up task")
    shown = resources.model_dump()
    print(f"  inference actors / batch   {shown['inference_actors']} / {shown['batch_size']}")
    print(f"  ideal                      {ideal:.1f} items/s  (C / latency)")
    print(
        f"  steady state               {pct(steady)} items/s  over {pct(steady_s)} s "
        f"(first request .. last response, /_stats polled every {args.poll:g} s)"
    )
    print(f"  steady / ideal             {pct(steady / ideal if steady else None)}  (target >= {STEADY_TARGET})")
    if args.error_rate:
        print(
            f"  with retries               {sent} requests for {n} items ({args.error_rate:g} answered HTTP 500, "
            f"MAX_RETRY_PER_QUERY {args.retries}); requests sent / steady s / ideal = {pct(sent_ratio)}"
        )
    busy_ratio = (busy_rate or 0) / ideal
    print(f"  server busy time           {busy:.3f} s -> {pct(busy_rate)} items/s, ratio {busy_ratio:.3f}")
    print(f"  end to end                 {e2e:.1f} items/s  over {wall:.3f} s (rayeval.run wall time)")
    print(f"  end to end / ideal         {e2e / ideal:.3f}")
    print(f"  mid-run (10%..90% of reqs) {pct(mid)} items/s, ratio {pct(mid / ideal if mid else None)}")
    parts = steady_parts(poller, n, ideal)
    if parts:
        print(
            "  steady time vs ideal       "
            + ", ".join(f"{label} {took:.2f} s (ideal {want:.2f})" for label, took, want in parts)
        )
    if lat:
        attainable = c / (q[50] / 1000)
        print(
            f"  attainable at p50 latency  {attainable:.1f} items/s = C / {q[50]:.1f} ms; "
            f"steady / attainable {pct(steady / attainable if steady else None)}"
        )
    phases = phase_split(marks, poller, t_start, t_end)
    if phases:
        print("  wall time split            " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))
    print(f"  ray.init (not in the wall) {ray_init_s:.2f} s")
    print(f"  server max_in_flight       {stats['max_in_flight']} ({'<=' if within_c else '>'} C={c})")
    print(f"  busy time at C in flight   {at_c / busy if busy else 0.0:.3f}  (mean in flight {mean_in_flight:.2f})")
    print(f"  polled in flight (steady)  mean {pct(polled_mean)} over {len(steady_polls)} polls")
    if lat:
        print(
            f"  client request latency     p50 {q[50]:.1f} ms, p90 {q[90]:.1f} ms, p99 {q[99]:.1f} ms, "
            f"max {lat[-1]:.1f} ms (server sleeps {latency * 1000:g} ms; permit held at least this long)"
        )
    print(f"  server total_requests      {stats['total_requests']}")
    others = cpu.get("(other processes on this machine)", 0.0)
    ours = {k: v for k, v in cpu.items() if not k.startswith("(")}
    total_cpu = sum(ours.values())
    top = ", ".join(f"{k} {v:.1f}" for k, v in list(ours.items())[:7])
    print(
        f"  CPU during rayeval.run     ours {total_cpu:.1f} s = {total_cpu / wall:.2f} of {cores} cores; "
        f"other processes {others:.1f} s = {others / wall:.2f} cores (load avg now {os.getloadavg()[0]:.1f})"
    )
    print(f"  CPU seconds by process     {top}")
    if nm is not None:
        print(
            f"  summary numeric_match      value {nm['value']}, items {nm['items']}, scored {nm['scored']}, "
            f"errors {nm['errors']}"
        )
    if args.error_rate:
        print(f"  items stored once / failed {item_counts[0]} of {n} / {item_counts[1]} (every try failed)")
        print(f"  summary is consistent      {'yes' if succeeded else 'NO'}")
    else:
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
        "warmup": args.warmup,
        "ideal": ideal,
        "steady": steady,
        "steady_s": steady_s,
        "steady_ratio": steady / ideal if steady else None,
        "busy_s": busy,
        "busy_ratio": busy_ratio,
        "e2e": e2e,
        "wall_s": wall,
        "e2e_ratio": e2e / ideal,
        "startup_s": (poller.first - t_start) if poller.first is not None else None,
        "phases_s": phase_split(marks, poller, t_start, t_end),
        "tail_s": (t_end - poller.last) if poller.last is not None else None,
        "max_in_flight": stats["max_in_flight"],
        "fraction_at_c": at_c / busy if busy else 0.0,
        "mean_in_flight": mean_in_flight,
        "polled_mean_in_flight": polled_mean,
        "mid_rate": mid,
        "steady_parts_s": {label: [took, want] for label, took, want in parts},
        "cpu_s": cpu,
        "client_latency_ms": {"p50": q[50], "p90": q[90], "p99": q[99], "max": lat[-1] if lat else None},
        "total_requests": sent,
        "sent_ratio": sent_ratio,
        "summary": nm,
        "ok": succeeded and within_c,
    }


if __name__ == "__main__":
    raise SystemExit(main())
