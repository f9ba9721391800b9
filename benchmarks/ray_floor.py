"""The floor Ray puts under any run of rayeval's shape on this machine: the same processes, no work.

A new Python process that does what a `rayeval run` does before its first request and after its last
answer, with nothing of rayeval in it: imports Ray and Ray Data, starts a local cluster in-process (or
joins the one at --address), starts three plain actors (where rayeval has its coordinator, limiter
and writer) and runs a Ray Data pipeline of the same shape as rayeval's over a few rows: a read, a
repartition into blocks of 16 rows, an actor pool of 2 (inference), with --judge a second pool of 2
(judging), and a pool of 1 (scoring), each actor taking 0.25 CPU, every stage a no-op. Then it
shuts Ray down (a local cluster stops with it).

It prints one JSON line of time stamps (seconds since the process started): what Ray itself costs
here for that many processes, so that rayeval's fixed cost can be set against it (benchmarks/peers.py
--floor runs it beside rayeval and lm-eval)::

    python benchmarks/ray_floor.py [--address HOST:PORT] [--judge]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def _process_start() -> float:
    """This process's start, in Unix time (from /proc: Python's own start-up counts too)."""
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    lines = Path("/proc/stat").read_text().splitlines()
    boot = next(int(line.split()[1]) for line in lines if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


START = _process_start()


def since_start() -> float:
    return time.time() - START


class Noop:
    """A stage's actor that hands its batch on."""

    def __call__(self, batch):
        return batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", default=None, help="a running cluster to join (default: start one in-process)")
    p.add_argument("--judge", action="store_true", help="a second actor pool of 2, as a judge metric adds")
    p.add_argument("--rows", type=int, default=64, help="rows through the pipeline (default 64)")
    args = p.parse_args()
    marks: dict[str, float] = {"python started": 0.0}

    import ray
    import ray.data

    marks["ray imported"] = since_start()
    if args.address:
        ray.init(address=args.address, logging_level="warning", log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="warning", log_to_driver=False)
    marks["ray.init"] = since_start()
    ray.data.DataContext.get_current().enable_progress_bars = False

    @ray.remote(num_cpus=0.25)
    class Plain:
        def ready(self) -> bool:
            return True

    actors = [Plain.remote() for _ in range(3)]
    ray.get([a.ready.remote() for a in actors])
    marks["3 actors ready"] = since_start()

    pool = {"batch_format": "pyarrow", "num_cpus": 0.25}
    ds = ray.data.range(args.rows).repartition(target_num_rows_per_block=16)
    ds = ds.map_batches(Noop, batch_size=16, compute=ray.data.ActorPoolStrategy(size=2), **pool)
    if args.judge:
        ds = ds.map_batches(Noop, batch_size=16, compute=ray.data.ActorPoolStrategy(size=2), **pool)
    ds = ds.map_batches(Noop, batch_size=64, compute=ray.data.ActorPoolStrategy(size=1), **pool)
    rows = 0
    for batch in ds.iter_batches(batch_format="pyarrow"):
        if not rows:
            marks["first batch out of the pipeline"] = since_start()
        rows += batch.num_rows
    marks["pipeline done"] = since_start()
    if rows != args.rows:
        raise SystemExit(f"the pipeline gave {rows} rows of {args.rows}")
    ray.shutdown()
    marks["ray.shutdown"] = since_start()
    print(json.dumps(marks))


if __name__ == "__main__":
    main()
