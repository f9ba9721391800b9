"""Judging overlaps inference on one stream (no barrier): wall time against the ideal.

Starts two OpenAI-compatible stub servers (tests/support/openai_server.py) in subprocesses: a
candidate model answering after a fixed latency L1 ("The answer is N.", N the prompt's length,
which is each item's reference) and a judge answering after a fixed latency L2 with
"Score: 1" when the answer's final number equals the reference's (else "Score: 0"). It runs an
Inference and Evaluation task of N items through `rayeval.run` on a local Ray cluster, with
MAX_CONCURRENCY C1 for the candidate, MAX_JUDGING_CONCURRENCY C2 for the judge, one judge
metric (regex parser `Score: ([01])`) and one rule metric (numeric_match), and prints:

* the ideal: max(N*L1/C1, N*L2/C2), what a pipeline pays when judging overlaps inference and
  the slower of the two servers is kept at its concurrency limit the whole time;
* the sum N*L1/C1 + N*L2/C2, what a phase-sequential evaluator (all inference, then all
  judging) pays at best;
* the wall time of `rayeval.run` (validation, Ray Data and actor start-up, the Parquet write and
  the summary included) and the stream time: the first request at either server .. the last
  response at either, taken by polling both servers' /_stats every --poll seconds (the servers
  keep no timestamps), with both ratios to the ideal (target <= 1.15);
* how the two streams overlap: how many judge requests had arrived when the candidate gave its
  last answer, how many candidate answers existed when the judge got its first request, and
  for how long both servers had requests in flight;
* per server: its span, busy time, rate in the middle 80% of its requests against C / L, mean
  in-flight, and max_in_flight (must be <= its C);
* errors and parse failures (must be 0) and whether every item was judged (judge metric scored
  N items with value 1.0, each server got exactly N requests).

Where the stream loses time, it says so: the slower server's late start, its span over its ideal
and the other server still answering after it. (An inference task hands its answers on only when
its whole block is answered, which is why rayeval cuts the items into small blocks before
inference; a late judge start points at that.) --block-kib is a what-if (Ray Data's target block
size for the whole run, in this process only); --warmup pays actor start-up once before the
measured run, so that the wall time shows the stream alone plus the fixed costs of a warm cluster.

Run from the repository root::

    python benchmarks/judging.py                            # 10,000 items, L1=L2=0.1 s, C1=C2=24
    python benchmarks/judging.py --preset judge-bound       # L2=0.2 s, C2=16: the judge is the bottleneck
    python benchmarks/judging.py --items 1000 --actors 4 --batch-size 8 --timeline benchmarks/out/judging.csv
    python benchmarks/judging.py --warmup 1000              # actor start-up paid once before the measured run
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
TARGET = 1.15
JUDGE_MODEL = "judge-model"
JUDGE_PROMPT = (
    "Question: {query}\nReference: {reference}\nAnswer: {prediction}\n"
    "Reply 'Score: 1' if the answer's final number is the reference's, else 'Score: 0'."
)
JUDGE_PATTERN = r"Score: ([01])"
PRESETS = {
    "balanced": {"l1": 0.1, "c1": 24, "l2": 0.1, "c2": 24},
    "judge-bound": {"l1": 0.1, "c1": 24, "l2": 0.2, "c2": 16},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="balanced", help="L1/C1/L2/C2 (default balanced)")
    p.add_argument("--items", type=int, default=10_000, help="items in the set (default 10000)")
    p.add_argument("--l1", type=float, default=None, help="candidate seconds per request (preset's; balanced 0.1)")
    p.add_argument("--c1", type=int, default=None, help="MAX_CONCURRENCY of the candidate (preset's; balanced 24)")
    p.add_argument("--l2", type=float, default=None, help="judge seconds per request (preset's; balanced 0.1)")
    p.add_argument("--c2", type=int, default=None, help="MAX_JUDGING_CONCURRENCY (preset's; balanced 24)")
    p.add_argument(
        "--actors", type=int, default=None, help="resources.inference_actors, also the judging actors (default 2)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="resources.batch_size (default: spec's, 16)")
    p.add_argument("--scoring-actors", type=int, default=None, help="resources.scoring_actors (default 1)")
    p.add_argument(
        "--warmup", type=int, default=0, help="first run a task of this many items on the same cluster (default 0)"
    )
    p.add_argument("--no-rule-metric", action="store_true", help="only the judge metric (no numeric_match)")
    p.add_argument(
        "--block-kib",
        type=int,
        default=None,
        help="what-if: Ray Data's target_max_block_size for this run, in KiB (default: Ray's, 128 MiB); small "
        "blocks let each inference task hand its items on while it runs instead of at its end",
    )
    p.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray cluster (default 4)")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between /_stats polls (default 0.25)")
    p.add_argument("--timeline", type=Path, default=None, help="write the polled stats of both servers as CSV")
    p.add_argument("--workdir", type=Path, default=None, help="where data and results go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (data, results) afterwards")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = p.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.items < 1 or args.c1 < 1 or args.c2 < 1 or args.l1 <= 0 or args.l2 <= 0 or args.poll <= 0:
        p.error("--items, --c1 and --c2 must be >= 1; --l1, --l2 and --poll > 0")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


class Track:
    """What the polls saw of one server: (t, total_requests, in_flight), first request, last response."""

    def __init__(self, items: int):
        self.items = items
        self.samples: list[tuple[float, int, int]] = []
        self.first: float | None = None  # perf_counter of the first poll seeing a request
        self.last: float | None = None  # first poll seeing total >= N and nothing in flight

    def add(self, now: float, total: int, in_flight: int) -> None:
        self.samples.append((now, total, in_flight))
        if self.first is None and total > 0:
            self.first = now
        if self.last is None and total >= self.items and in_flight == 0:
            self.last = now

    def total_at(self, t: float) -> int:
        """Requests received by the last poll at or before t."""
        got = 0
        for s, total, _ in self.samples:
            if s > t:
                break
            got = total
        return got

    def time_at(self, count: float) -> float | None:
        """The first poll at which at least `count` requests had arrived."""
        return next((t for t, c, _ in self.samples if c >= count), None)

    def mid_rate(self) -> float | None:
        """Requests/s between the polls where 10% and 90% of the requests had arrived."""
        lo = next(((t, c) for t, c, _ in self.samples if c >= 0.1 * self.items), None)
        hi = next(((t, c) for t, c, _ in self.samples if c >= 0.9 * self.items), None)
        if lo is None or hi is None or hi[0] <= lo[0]:
            return None
        return (hi[1] - lo[1]) / (hi[0] - lo[0])

    def polled_mean_in_flight(self) -> float | None:
        """Mean in-flight over the polls between 10% and 90% of the requests (ramp and tail left out)."""
        lo, hi = self.time_at(0.1 * self.items), self.time_at(0.9 * self.items)
        if lo is None or hi is None:
            return None
        seen = [inf for t, _, inf in self.samples if lo <= t <= hi]
        return sum(seen) / len(seen) if seen else None


class Poller(threading.Thread):
    """Polls both servers' /_stats at the same instants, every `every` seconds."""

    def __init__(self, servers: dict[str, StubProcess], items: int, every: float, cpu: CpuTracker):
        super().__init__(daemon=True, name="stats-poller")
        self.servers, self.every, self.cpu = servers, every, cpu
        self.tracks = {name: Track(items) for name in servers}
        self.stopped = threading.Event()

    def done(self) -> bool:
        return all(track.last is not None for track in self.tracks.values())

    def run(self) -> None:
        while not self.stopped.is_set():
            t_next = time.perf_counter() + self.every
            for name, server in self.servers.items():
                try:
                    stats = server.get("/_stats")
                except OSError:
                    continue
                self.tracks[name].add(time.perf_counter(), stats["total_requests"], stats["in_flight"])
            self.cpu.update()
            self.stopped.wait(max(0.0, t_next - time.perf_counter()))


# ----------------------------------------------------------------------------- benchmark


def build_task(
    args: argparse.Namespace, data: Path, output: Path, candidate: StubProcess, judge: StubProcess
) -> dict[str, Any]:
    from tests.support.tasks import inference_task

    judge_metric = {
        "name": "judged",
        "judge": {
            "model": "referee",
            "prompt": JUDGE_PROMPT,
            "parser": {"kind": "regex", "pattern": JUDGE_PATTERN, "min_score": 0, "max_score": 1},
        },
    }
    resources: dict[str, Any] = {}
    if args.actors is not None:
        resources["inference_actors"] = args.actors
    if args.batch_size is not None:
        resources["batch_size"] = args.batch_size
    if args.scoring_actors is not None:
        resources["scoring_actors"] = args.scoring_actors
    task = inference_task(
        data,
        output,
        [{"name": "m", "url": candidate.url, "model": "stub-model"}],
        parameters={"MAX_CONCURRENCY": args.c1, "MAX_JUDGING_CONCURRENCY": args.c2},
        resources=resources,
        judges=[{"name": "referee", "url": judge.url, "model": JUDGE_MODEL}],
        name="judging",
        reuse=False,  # the warm-up's results must not stand in for the measured run's
    )
    task["evaluation_sets"][0]["metrics"] = [judge_metric] + ([] if args.no_rule_metric else ["numeric_match"])
    return task


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir, own_workdir = bench_workdir(args.workdir, "rayeval-judging-")

    servers: dict[str, StubProcess] = {}
    ray = None
    try:
        from tests.support.tasks import write_items

        data = write_items(workdir / "items.jsonl", args.items)
        servers["candidate"] = StubProcess("candidate", args.l1)
        judge_args = ("--responder", "tests.support.responders:last_number_judge", "--model", JUDGE_MODEL)
        servers["judge"] = StubProcess("judge", args.l2, *judge_args)

        import ray

        import rayeval
        from rayeval.spec import parse_task

        t = time.perf_counter()
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="warning")
        ray.data.DataContext.get_current().enable_progress_bars = False
        if args.block_kib is not None:
            ray.data.DataContext.get_current().target_max_block_size = args.block_kib * 1024
        ray_init_s = time.perf_counter() - t

        task = build_task(args, data, workdir / "results", servers["candidate"], servers["judge"])
        resources = parse_task(task).resources
        warm_up(rayeval.run, task, workdir, args.warmup)
        for server in servers.values():
            server.post("/_reset")
        marks = time_phases()
        cpu_tracker = CpuTracker()
        poller = Poller(servers, args.items, args.poll, cpu_tracker)
        handle, t_start, t_end, cpu = measured_run(rayeval.run, task, poller, cpu_tracker, poller.done, args.poll)
        for track in poller.tracks.values():  # a poll sees the last response up to --poll s late
            if track.last is not None:
                track.last = min(track.last, marks.get("summarize.start", t_end), t_end)
        stats = {name: server.get("/_stats") for name, server in servers.items()}
        rows = handle.results()
        table = handle.items().to_table(columns=["latency_ms", "details"])
        latencies = {"candidate": table.column("latency_ms").to_pylist(), "judge": judge_latencies(table)}
        if args.timeline is not None:
            write_timeline(args.timeline, poller, t_start)
        figures = report(args, stats, rows, poller, latencies, cpu, marks, t_start, t_end, ray_init_s, resources)
        if args.json:
            print(json.dumps(figures))
        return 0 if figures["ok"] else 1
    finally:
        if ray is not None and ray.is_initialized():
            ray.shutdown()
        for server in servers.values():
            server.stop()
        if own_workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            print(f"work dir kept: {workdir}")


def judge_latencies(table: Any) -> list[float | None]:
    """The judge's latency_ms of each item, from its details."""
    out = []
    for raw in table.column("details").to_pylist():
        try:
            out.append((json.loads(raw) or {}).get("judged", {}).get("latency_ms"))
        except (TypeError, ValueError, AttributeError):
            out.append(None)
    return out


def write_timeline(path: Path, poller: Poller, t_start: float) -> None:
    """t, then total_requests and in_flight of each server, one row per poll round."""
    cand, judge = poller.tracks["candidate"].samples, poller.tracks["judge"].samples
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write("t,candidate_requests,candidate_in_flight,judge_requests,judge_in_flight\n")
        for (t, c_total, c_inf), (_, j_total, j_inf) in zip(cand, judge):
            f.write(f"{t - t_start:.3f},{c_total},{c_inf},{j_total},{j_inf}\n")


def both_busy_seconds(poller: Poller) -> float:
    """Seconds (at poll resolution) during which both servers had requests in flight or arriving."""
    cand, judge = poller.tracks["candidate"].samples, poller.tracks["judge"].samples
    rounds = list(zip(cand, judge))
    busy = 0.0
    for (a, b), (a2, b2) in zip(rounds, rounds[1:]):
        c_active = a[2] > 0 or a2[2] > 0 or a2[1] > a[1]
        j_active = b[2] > 0 or b2[2] > 0 or b2[1] > b[1]
        if c_active and j_active:
            busy += a2[0] - a[0]
    return busy


def phase_split(marks: dict[str, float], first: float | None, last: float | None, t_start: float, t_end: float):
    """rayeval.run's wall time cut at the phase marks and the stream's first request / last response."""
    points = [("prepare (checks, set scan, service checks)", marks.get("prepare.end"))]
    points.append(("coordinator + limiters", marks.get("build_dataset.start")))
    points.append(("pipeline start-up to 1st request", first))
    points.append(("stream", last))
    points.append(("last response to write done", marks.get("summarize.start")))
    points.append(("summary + finish", t_end))
    out, prev = {}, t_start
    for label, t in points:
        if t is None:
            continue
        out[label] = t - prev
        prev = t
    return out


def stream_excess(cand: Track, judge: Track, t_inf: float, t_judge: float) -> dict[str, float]:
    """The stream's time over the ideal, cut in three: the slower server's late start, its span over its
    ideal (it ran below C / L), and the other server still answering after it was done."""
    slow, other = (judge, cand) if t_judge >= t_inf else (cand, judge)
    if None in (slow.first, slow.last, other.first, other.last):
        return {}
    return {
        "slower server's late start": max(0.0, slow.first - other.first),
        "its span over its ideal": (slow.last - slow.first) - max(t_inf, t_judge),
        "other server after it": max(0.0, other.last - slow.last),
    }


def quantiles(values: list[float | None]) -> dict[str, float | None]:
    lat = sorted(x for x in values if x is not None)
    q: dict[str, float | None] = {
        f"p{k}": lat[min(len(lat) - 1, int(k / 100 * len(lat)))] if lat else None for k in (50, 90, 99)
    }
    q["max"] = lat[-1] if lat else None
    return q


def report(
    args: argparse.Namespace,
    stats: dict[str, dict[str, Any]],
    rows: list[dict[str, Any]],
    poller: Poller,
    latencies: dict[str, list[float | None]],
    cpu: dict[str, float],
    marks: dict[str, float],
    t_start: float,
    t_end: float,
    ray_init_s: float,
    resources: Any,
) -> dict[str, Any]:
    n = args.items
    conf = {"candidate": (args.l1, args.c1), "judge": (args.l2, args.c2)}
    t_inf, t_judge = n * args.l1 / args.c1, n * args.l2 / args.c2
    ideal, sequential = max(t_inf, t_judge), t_inf + t_judge
    wall = t_end - t_start
    cand, judge = poller.tracks["candidate"], poller.tracks["judge"]
    firsts = [t.first for t in (cand, judge) if t.first is not None]
    lasts = [t.last for t in (cand, judge) if t.last is not None]
    first = min(firsts) if firsts else None
    last = max(lasts) if len(lasts) == 2 else None
    stream = (last - first) if first is not None and last is not None else None

    def r(x: float | None, digits: int = 3) -> str:
        return "n/a" if x is None else f"{x:.{digits}f}"

    def na(x: Any) -> str:
        return "n/a" if x is None else str(x)

    per_server: dict[str, dict[str, Any]] = {}
    for name, track in poller.tracks.items():
        latency, c = conf[name]
        hist = {int(k): float(v) for k, v in stats[name]["in_flight_seconds"].items()}
        busy = sum(hist.values())
        span = (track.last - track.first) if track.first is not None and track.last is not None else None
        mid = track.mid_rate()
        per_server[name] = {
            "latency": latency,
            "concurrency": c,
            "ideal_rate": c / latency,
            "first_s": (track.first - t_start) if track.first is not None else None,
            "last_s": (track.last - t_start) if track.last is not None else None,
            "span_s": span,
            "busy_s": busy,
            "mean_in_flight": sum(k * s for k, s in hist.items()) / busy if busy else 0.0,
            "fraction_at_c": sum(s for k, s in hist.items() if k >= c) / busy if busy else 0.0,
            "polled_mean_in_flight_mid": track.polled_mean_in_flight(),
            "mid_rate": mid,
            "mid_ratio": mid / (c / latency) if mid else None,
            "max_in_flight": stats[name]["max_in_flight"],
            "total_requests": stats[name]["total_requests"],
            "faults": stats[name]["faults_injected"],
            "client_latency_ms": quantiles(latencies[name]),
        }
    # Overlap: how far each stream had gone when the other started or ended.
    judged_when_inference_ended = judge.total_at(cand.last) if cand.last is not None else None
    answered_when_judging_began = cand.total_at(judge.first) if judge.first is not None else None
    overlap = both_busy_seconds(poller)

    jm = next((row for row in rows if row["metric"] == "judged"), None)
    nm = next((row for row in rows if row["metric"] == "numeric_match"), None)
    errors = sum(row.get("errors", 0) for row in rows)
    parse_failures = sum(row.get("parse_failures", 0) or 0 for row in rows)
    all_judged = (
        jm is not None
        and jm["items"] == n
        and jm["scored"] == n
        and jm["value"] == 1.0
        and stats["judge"]["total_requests"] == n
    )
    answered = stats["candidate"]["total_requests"] == n and (nm is None or (nm["scored"] == n and nm["value"] == 1.0))
    within = {name: s["max_in_flight"] <= s["concurrency"] for name, s in per_server.items()}
    wall_ratio = wall / ideal
    stream_ratio = stream / ideal if stream is not None else None
    phases = phase_split(marks, first, last, t_start, t_end)
    shown = resources.model_dump()
    cores = os.cpu_count() or 1

    print()
    print("rayeval judging benchmark (judging overlaps inference on one stream)")
    print(f"  items (N)                    {n}")
    print(f"  candidate  L1 / C1           {args.l1:g} s / {args.c1}   -> N*L1/C1 = {t_inf:.2f} s")
    print(f"  judge      L2 / C2           {args.l2:g} s / {args.c2}   -> N*L2/C2 = {t_judge:.2f} s")
    print(
        f"  actors / batch / scoring     {shown['inference_actors']} inference + {shown['inference_actors']} judging"
        f" / {shown['batch_size']} / {shown['scoring_actors']}; metrics: judged (judge)"
        + ("" if args.no_rule_metric else " + numeric_match")
    )
    if args.block_kib is not None:
        print(f"  Ray Data block size          {args.block_kib} KiB target_max_block_size (what-if; Ray's: 128 MiB)")
    if args.warmup:
        print(f"  warm cluster                 after a {args.warmup}-item warm-up task")
    print(f"  ideal (overlapped)           {ideal:.2f} s  = max(N*L1/C1, N*L2/C2)")
    print(f"  phase-sequential             {sequential:.2f} s  = N*L1/C1 + N*L2/C2")
    print(f"  wall time (rayeval.run)      {wall:.2f} s  -> wall / ideal {wall_ratio:.3f}  (target <= {TARGET})")
    print(
        f"  stream time                  {r(stream, 2)} s  -> stream / ideal {r(stream_ratio)}  (target <= {TARGET}); "
        f"first request at either server .. last response, /_stats polled every {args.poll:g} s"
    )
    seq_stream = r(stream / sequential if stream else None)
    print(f"  vs phase-sequential          wall {wall / sequential:.3f}, stream {seq_stream}")
    if phases:
        print("  wall time split              " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))
    print(f"  ray.init (not in the wall)   {ray_init_s:.2f} s")
    print(
        f"  overlap                      judge had {na(judged_when_inference_ended)}/{n} requests when the "
        f"candidate gave its last answer; candidate had {na(answered_when_judging_began)}/{n} when the judge "
        f"got its first; both servers busy {overlap:.2f} s of the stream"
    )
    lag_first = (judge.first - cand.first) if judge.first is not None and cand.first is not None else None
    lag_last = (judge.last - cand.last) if judge.last is not None and cand.last is not None else None
    # A pipelined judge starts about one batch after the candidate and ends about one batch after it, or,
    # when the judge is the slower one, N*L2/C2 - N*L1/C1 later than that.
    expect_last = max(0.0, t_judge - t_inf)
    print(
        f"  judge behind the candidate   first request +{r(lag_first, 2)} s, last response +{r(lag_last, 2)} s "
        f"(pipelined: about one batch of {resources.batch_size} items each, ~{args.l1 + args.l2:g} s, "
        f"plus {expect_last:.2f} s at the end)"
    )
    excess = stream_excess(cand, judge, t_inf, t_judge)
    if excess:
        print("  stream - ideal               " + ", ".join(f"{k} {v:.2f} s" for k, v in excess.items()))
    if answered_when_judging_began is not None and answered_when_judging_began >= 0.1 * n:
        print(
            f"  NOTE: the judge began only after {answered_when_judging_began}/{n} answers. An inference task "
            "hands its output on as one block when its whole input block is answered: are the blocks going "
            "into inference small (one batch per block, rayeval.jobs.pipeline)?"
        )
    for name, s in per_server.items():
        q = s["client_latency_ms"]
        print(
            f"  {name:<10} span             {r(s['first_s'], 2)} .. {r(s['last_s'], 2)} s after start "
            f"({r(s['span_s'], 2)} s; ideal {n / s['ideal_rate']:.2f} s); busy {s['busy_s']:.2f} s"
        )
        print(
            f"  {name:<10} rate 10%..90%    {r(s['mid_rate'], 1)} req/s = {r(s['mid_ratio'])} of C/L "
            f"{s['ideal_rate']:.1f}; mean in flight {s['mean_in_flight']:.2f} (polled mid-run "
            f"{r(s['polled_mean_in_flight_mid'], 2)}), at C {s['fraction_at_c']:.3f} of busy time"
        )
        print(
            f"  {name:<10} max_in_flight    {s['max_in_flight']} "
            f"({'<=' if within[name] else '>'} C={s['concurrency']}); requests {s['total_requests']}; "
            f"client latency p50 {r(q['p50'], 1)} ms, p99 {r(q['p99'], 1)} ms, max {r(q['max'], 1)} ms"
        )
    others = cpu.get("(other processes on this machine)", 0.0)
    ours = {k: v for k, v in cpu.items() if not k.startswith("(")}
    total_cpu = sum(ours.values())
    print(
        f"  CPU during rayeval.run       ours {total_cpu:.1f} s = {total_cpu / wall:.2f} of {cores} cores; "
        f"other processes {others:.1f} s = {others / wall:.2f} cores (load avg now {os.getloadavg()[0]:.1f})"
    )
    print("  CPU seconds by process       " + ", ".join(f"{k} {v:.1f}" for k, v in list(ours.items())[:8]))
    for row in rows:
        print(
            f"  summary {row['metric']:<20} value {row['value']}, items {row['items']}, scored {row['scored']}, "
            f"errors {row['errors']}, parse failures {row.get('parse_failures', 0)}"
        )
    print(f"  errors / parse failures      {errors} / {parse_failures}  (must be 0 / 0)")
    print(f"  every item judged            {'yes' if all_judged else 'NO'}")
    print(f"  every item answered          {'yes' if answered else 'NO'}")
    if wall_ratio > TARGET or (stream_ratio is not None and stream_ratio > TARGET):
        print(f"  NOTE: a ratio is above the {TARGET} target")
    for name, ok in within.items():
        if not ok:
            print(f"  ERROR: the {name} server saw more than its concurrency limit in flight")
    ok = all_judged and answered and errors == 0 and parse_failures == 0 and all(within.values())
    return {
        "items": n,
        "l1": args.l1,
        "c1": args.c1,
        "l2": args.l2,
        "c2": args.c2,
        "resources": shown,
        "warmup": args.warmup,
        "ideal_s": ideal,
        "sequential_s": sequential,
        "wall_s": wall,
        "stream_s": stream,
        "wall_ratio": wall_ratio,
        "stream_ratio": stream_ratio,
        "phases_s": phases,
        "ray_init_s": ray_init_s,
        "judge_requests_when_inference_ended": judged_when_inference_ended,
        "candidate_requests_when_judging_began": answered_when_judging_began,
        "both_busy_s": overlap,
        "judge_lag_first_s": lag_first,
        "judge_lag_last_s": lag_last,
        "stream_excess_s": excess,
        "block_kib": args.block_kib,
        "servers": per_server,
        "cpu_s": cpu,
        "summary": rows,
        "errors": errors,
        "parse_failures": parse_failures,
        "all_judged": all_judged,
        "ok": ok,
    }


if __name__ == "__main__":
    raise SystemExit(main())
