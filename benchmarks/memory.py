"""Peak memory of an Evaluation Only task at a small and a large set size (is it flat?).

For each size N (default 10,000 and 1,000,000) the script starts a fresh Python process
(``python benchmarks/memory.py --single N``), so nothing from one run stays in memory for
the next. That process stream-writes a JSONL set of N rows (id, query, reference
"#### <number>", prediction: a short solution ending in a number; every 10th one wrong),
starts a local Ray cluster as its children, and runs an Evaluation Only task with
numeric_match over it while a thread samples, every --interval seconds:

* the RSS (and, with --pss, the PSS and USS) of the driver and of every descendant process:
  ``ray.init(address="local")`` starts gcs_server, raylet (which holds the object store),
  the agents and every ``ray::`` worker as children of the driver, so the descendants are
  exactly this Ray session's processes;
* the object store bytes in use, as reported by the raylet (``ray memory --stats-only``),
  every 5th sample.

Before it measures, each process runs the same kind of task once on --warm-up items (default
200,000) on the same cluster: Ray starts its worker processes, and they import pyarrow and
rayeval, as tasks first land on them. That cost is bounded by the cluster's size, and a small
set pays only part of it, so without the warm-up the comparison would be of how warm the
cluster got, not of what the set's size changes. The cold cluster's RSS is printed too.

It also splits the run into rayeval's phases (prepare: checks and the scan of the set; the
Ray Data pipeline; the driver-side summary) and reports the peak RSS and CPU seconds of each
kind of process, so that a growth can be traced to where it happens.

The child prints one JSON line; the parent prints a table and the ratio of the peaks.
Summed RSS counts shared pages (the object store's shared memory, shared libraries) once
per process that touches them; PSS shares them out and is the better total.

Run from the repository root::

    python benchmarks/memory.py                      # 10,000 vs 1,000,000 items
    python benchmarks/memory.py --sizes 10000 100000 --pss
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import CpuTracker, bench_workdir, kind_of, session_processes, time_phases

REPO = Path(__file__).resolve().parents[1]
MARK = "MEMORY-BENCH-RESULT "
MiB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000], help="set sizes to compare")
    p.add_argument("--single", type=int, default=None, metavar="N", help="(internal) measure one size, print JSON")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between memory samples (default 0.2)")
    p.add_argument(
        "--pss", action="store_true", help="also sample PSS/USS (reads smaps_rollup: ~0.1 s a sample; slows the run)"
    )
    p.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray cluster (default 4)")
    p.add_argument(
        "--warm-up",
        type=int,
        default=200_000,
        metavar="N",
        help="items of a first, unmeasured run on the same cluster (default 200,000; 0: none), so that every "
        "size finds the same warm worker pool and the peaks compare what the set's size changes",
    )
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed per size (default 3600)")
    p.add_argument("--workdir", type=Path, default=None, help="where data and results go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (data, results) afterwards")
    args = p.parse_args(argv)
    if any(n < 1 for n in args.sizes) or (args.single is not None and args.single < 1) or args.interval <= 0:
        p.error("sizes must be >= 1 and --interval > 0")
    return args


# ----------------------------------------------------------------------------- data


def write_set(path: Path, n: int) -> int:
    """Stream-write n GSM8K-like rows; returns how many predictions are right."""
    right = 0
    with path.open("w", encoding="utf-8", buffering=1 << 20) as f:
        for i in range(n):
            a, b = 3 + i % 97, 7 + i % 13
            answer = a * b
            predicted = answer + 1 if i % 10 == 9 else answer
            right += predicted == answer
            row = {
                "id": f"q{i}",
                "query": f"A box holds {a} rows of {b} apples. How many apples are in the box? (item {i})",
                "reference": f"#### {answer}",
                "prediction": f"Each row has {b} apples and there are {a} rows, so {a} * {b} = {predicted}. "
                f"The answer is {predicted}.",
            }
            f.write(json.dumps(row) + "\n")
    return right


# ----------------------------------------------------------------------------- sampling


class MemorySampler(threading.Thread):
    """Samples memory of this process and all its descendants every `interval` seconds."""

    def __init__(self, interval: float, pss: bool, gcs_address: str | None):
        super().__init__(daemon=True, name="memory-sampler")
        import psutil  # vendored by Ray (ray/thirdparty_files); importable once ray is imported

        self.psutil = psutil
        self.me = psutil.Process()
        self.interval, self.pss = interval, pss
        self.gcs_address = gcs_address
        self.stopped = threading.Event()
        self.samples = 0
        self.peak: dict[str, Any] = {"total_rss": 0, "driver_rss": 0, "total_pss": 0, "total_uss": 0}
        self.peak_by_kind: dict[str, int] = {}  # kind -> RSS, at the total-RSS peak
        self.peak_store = 0
        self.store_samples = 0
        self.sample_seconds = 0.0
        self._state = None
        self.cpu: CpuTracker | None = None  # updated with each sample once set
        self.marks: dict[str, float] = {}  # rayeval phase time stamps (see time_phases)
        self.by_phase: dict[str, dict[str, int]] = {}  # phase -> peak driver / total RSS in it

    def run(self) -> None:
        while not self.stopped.is_set():
            t_next = time.perf_counter() + self.interval
            self.sample()
            self.stopped.wait(max(0.0, t_next - time.perf_counter()))

    def sample(self) -> dict[str, int]:
        t = time.perf_counter()
        psutil = self.psutil
        total_rss = total_pss = total_uss = driver_rss = 0
        by_kind: dict[str, int] = {}
        for proc in session_processes():
            try:
                if self.pss:
                    info = proc.memory_full_info()
                    total_pss += info.pss
                    total_uss += info.uss
                else:
                    info = proc.memory_info()
                kind = kind_of(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            total_rss += info.rss
            by_kind[kind] = by_kind.get(kind, 0) + info.rss
            if proc.pid == self.me.pid:
                driver_rss = info.rss
        if total_rss > self.peak["total_rss"]:
            self.peak_by_kind = by_kind
        if self.cpu is not None:  # sampling the run, not the baseline
            phase = self.by_phase.setdefault(phase_of(self.marks), {"driver_rss": 0, "total_rss": 0})
            phase["driver_rss"] = max(phase["driver_rss"], driver_rss)
            phase["total_rss"] = max(phase["total_rss"], total_rss)
        for key, value in (
            ("total_rss", total_rss),
            ("driver_rss", driver_rss),
            ("total_pss", total_pss),
            ("total_uss", total_uss),
        ):
            self.peak[key] = max(self.peak[key], value)
        # The object store is cheap to ask about, but not every 0.2 s: every 5th sample.
        if self.gcs_address and self.samples % 5 == 0:
            used = self.object_store_used()
            if used is not None:
                self.store_samples += 1
                self.peak_store = max(self.peak_store, used)
        if self.cpu is not None:
            self.cpu.update()
        self.samples += 1
        self.sample_seconds += time.perf_counter() - t
        return {"total_rss": total_rss, "driver_rss": driver_rss, "total_pss": total_pss}

    def object_store_used(self) -> int | None:
        try:
            from ray._private.internal_api import get_memory_info_reply, get_state_from_address

            if self._state is None:
                self._state = get_state_from_address(self.gcs_address)
            reply = get_memory_info_reply(self._state, timeout_seconds=5)
            return int(reply.store_stats.object_store_bytes_used)
        except Exception:  # private API: degrade to "not available"
            return None


def phase_of(marks: dict[str, float]) -> str:
    """The rayeval run phase going on now, from the time stamps set so far."""
    if "prepare.end" not in marks:
        return "prepare (checks, set scan)"
    if "summarize.start" not in marks:
        return "pipeline (read, score, write)"
    if "summarize.end" not in marks:
        return "summary"
    return "finish"


# ----------------------------------------------------------------------------- one size


def single(args: argparse.Namespace) -> int:
    n = args.single
    workdir, own_workdir = bench_workdir(None if args.workdir is None else args.workdir / f"n{n}", "rayeval-memory-")
    ray = None
    try:
        data = workdir / "set.jsonl"
        t = time.perf_counter()
        right = write_set(data, n)
        write_s = time.perf_counter() - t
        if args.warm_up:
            write_set(workdir / "warmup.jsonl", args.warm_up)

        import ray

        import rayeval

        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="warning")
        ray.data.DataContext.get_current().enable_progress_bars = False
        sampler = MemorySampler(args.interval, args.pss, ray.get_runtime_context().gcs_address)
        time.sleep(1.0)  # let the cluster's processes settle before the baseline
        cold = sampler.sample()
        task = {
            "name": f"memory-{n}",
            "mode": "evaluation_only",
            "output": str(workdir / "results"),
            "models": [{"name": "m"}],
            "evaluation_sets": [
                {
                    "name": "s",
                    "path": str(data),
                    "columns": {"id": "id"},
                    "predictions": {"m": "prediction"},
                    "metrics": ["numeric_match"],
                }
            ],
            "reuse": False,  # the warm-up holds the set's first items: they must be evaluated, not reused
        }
        warm_s = 0.0
        if args.warm_up:
            # Ray starts worker processes, and they load pyarrow and rayeval, as tasks first land on
            # them: a bounded cost of the cluster's size that a small set pays only in part.
            t = time.perf_counter()
            warm_sets = [{**task["evaluation_sets"][0], "path": str(workdir / "warmup.jsonl")}]
            rayeval.run({**task, "name": "warmup", "output": str(workdir / "warmup"), "evaluation_sets": warm_sets})
            warm_s = time.perf_counter() - t
            time.sleep(1.0)
        baseline = sampler.sample()
        sampler.peak = dict.fromkeys(sampler.peak, 0)
        sampler.peak_store = sampler.store_samples = 0
        sampler.marks = time_phases()
        sampler.cpu = CpuTracker()
        sampler.start()
        t = time.perf_counter()
        handle = rayeval.run(task)
        t_end = time.perf_counter()
        wall = t_end - t
        marks = sampler.marks
        bounds = [("prepare.end", "prepare"), ("summarize.start", "pipeline"), ("summarize.end", "summary")]
        phases, prev = {}, t
        for key, label in bounds:
            if key in marks:
                phases[label], prev = marks[key] - prev, marks[key]
        phases["finish"] = t_end - prev
        cpu, others = sampler.cpu.spent()
        sampler.stopped.set()
        sampler.join()
        rows = handle.results()
        row = next(r for r in rows if r["metric"] == "numeric_match")
        result = {
            "items": n,
            "file_mib": data.stat().st_size / MiB,
            "write_s": write_s,
            "wall_s": wall,
            "items_per_s": n / wall,
            "warm_up_items": args.warm_up,
            "warm_up_s": warm_s,
            "cold_total_rss": cold["total_rss"],
            "baseline_total_rss": baseline["total_rss"],
            "baseline_driver_rss": baseline["driver_rss"],
            "baseline_total_pss": baseline["total_pss"],
            "peak_total_rss": sampler.peak["total_rss"],
            "peak_driver_rss": sampler.peak["driver_rss"],
            "peak_total_pss": sampler.peak["total_pss"] if args.pss else None,
            "peak_total_uss": sampler.peak["total_uss"] if args.pss else None,
            "peak_object_store": sampler.peak_store if sampler.store_samples else None,
            "peak_rss_by_kind": dict(sorted(sampler.peak_by_kind.items(), key=lambda kv: -kv[1])),
            "processes_at_end": len(session_processes()),
            "cpu_s": cpu,
            "phases_s": phases,
            "peak_rss_by_phase": sampler.by_phase,
            "other_cpu_s": others,
            "samples": sampler.samples,
            "sample_ms": 1000 * sampler.sample_seconds / max(1, sampler.samples),
            "summary": row,
            "expected_value": right / n,
            "ok": row["items"] == n and row["errors"] == 0 and abs(row["value"] - right / n) < 1e-12,
        }
        print(MARK + json.dumps(result), flush=True)
        return 0 if result["ok"] else 1
    finally:
        if ray is not None and ray.is_initialized():
            ray.shutdown()
        if own_workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


# ----------------------------------------------------------------------------- driver


def run_child(n: int, args: argparse.Namespace) -> dict[str, Any] | None:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--single", str(n), "--interval", str(args.interval)]
    cmd += ["--num-cpus", str(args.num_cpus), "--warm-up", str(args.warm_up)]
    if args.pss:
        cmd.append("--pss")
    if args.workdir is not None:
        cmd += ["--workdir", str(args.workdir)]
    if args.keep:
        cmd.append("--keep")
    print(f"running {n} items in a fresh process ...", flush=True)
    # Its own session, so that on a timeout or Ctrl-C we end its whole group (and only it).
    # Ray's log lines go to a temporary file, shown only if the run fails.
    log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=args.timeout)
    except BaseException:
        log.close()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    with log:
        for line in out.splitlines():
            if line.startswith(MARK):
                return json.loads(line[len(MARK) :])
        log.seek(0)
        err = log.read()
    print(f"  size {n}: no result (exit {proc.returncode}); its output:\n{out[-2000:]}\n{err[-4000:]}", flush=True)
    return None


def mib(x: float | None) -> str:
    return "n/a" if x is None else f"{x / MiB:.0f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.single is not None:
        return single(args)
    results = {n: run_child(n, args) for n in args.sizes}
    print()
    print("rayeval memory benchmark: Evaluation Only, numeric_match (MiB; RSS summed over driver + Ray processes)")
    if args.warm_up:
        print(
            f"  each size runs on a fresh local cluster after an unmeasured warm-up run of {args.warm_up} items "
            "(idle RSS: the new cluster; warm RSS: after the warm-up)"
        )
    cols = ["items", "wall s", "items/s", "peak total RSS", "peak driver RSS", "idle RSS", "warm RSS", "peak store"]
    if args.pss:
        cols += ["peak total PSS", "peak total USS"]
    cols += ["summary items", "value", "ok"]
    table = [cols]
    for n, r in results.items():
        if r is None:
            table.append([str(n), "failed"] + [""] * (len(cols) - 2))
            continue
        line = [
            str(n),
            f"{r['wall_s']:.1f}",
            f"{r['items_per_s']:.0f}",
            mib(r["peak_total_rss"]),
            mib(r["peak_driver_rss"]),
            mib(r["cold_total_rss"]),
            mib(r["baseline_total_rss"]),
            mib(r["peak_object_store"]),
        ]
        if args.pss:
            line += [mib(r["peak_total_pss"]), mib(r["peak_total_uss"])]
        line += [str(r["summary"]["items"]), f"{r['summary']['value']:.4f}", "yes" if r["ok"] else "NO"]
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for i, row in enumerate(table):
        print("  " + "  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    done = [(n, r) for n, r in results.items() if r is not None]
    if len(done) >= 2:
        (n0, r0), (n1, r1) = min(done), max(done)
        print()
        for key, label in (("peak_total_rss", "total RSS"), ("peak_driver_rss", "driver RSS")):
            print(f"  peak {label} ratio {n1} / {n0} items = {r1[key] / r0[key]:.3f}")
        inc0 = r0["peak_total_rss"] - r0["baseline_total_rss"]
        inc1 = r1["peak_total_rss"] - r1["baseline_total_rss"]
        print(f"  growth over the warm cluster: {inc0 / MiB:.0f} MiB at {n0}, {inc1 / MiB:.0f} MiB at {n1}")
        if args.pss and r0["peak_total_pss"]:
            print(f"  peak total PSS ratio {n1} / {n0} items = {r1['peak_total_pss'] / r0['peak_total_pss']:.3f}")
            print(
                f"  peak total USS ratio {n1} / {n0} items = {r1['peak_total_uss'] / r0['peak_total_uss']:.3f} "
                "(private memory; RSS and PSS also count the object store's shared pages each process maps)"
            )
    for n, r in done:
        kinds = ", ".join(f"{k} {v / MiB:.0f}" for k, v in list(r["peak_rss_by_kind"].items())[:6])
        print(f"  {n}: RSS by process kind at the peak (MiB): {kinds}")
        split = ", ".join(f"{k} {v:.1f} s" for k, v in r["phases_s"].items())
        print(f"  {n}: wall time split: {split}")
        peaks = "; ".join(
            f"{k}: driver {v['driver_rss'] / MiB:.0f}, total {v['total_rss'] / MiB:.0f}"
            for k, v in r["peak_rss_by_phase"].items()
        )
        print(f"  {n}: peak RSS by phase (MiB): {peaks}")
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in list(r["cpu_s"].items())[:6])
        print(f"  {n}: CPU seconds during the run: {cpu}; other processes on the machine {r['other_cpu_s']:.1f}")
        print(
            f"  {n}: set file {r['file_mib']:.0f} MiB written in {r['write_s']:.1f} s; {r['samples']} samples, "
            f"{r['sample_ms']:.1f} ms each; {r['processes_at_end']} processes at the end"
        )
    ok = len(done) == len(results) and all(r["ok"] for _, r in done)
    print(f"  every run's summary has items == n and the expected value: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
