"""Which result files count: the fence between a task's runs.

A task has at most one live run, the one holding its lease (rayeval.actors.coordinator). Each run
has an epoch, written into the name of every file its writer commits, with the file's number in
the run. When a run takes over from one whose driver went silent, the earlier epoch is sealed with
the number of files it was allowed to commit; a file of a sealed epoch numbered past that was
renamed into place by a run that had lost its lease (a frozen driver, thawed), and is not a result:
readers skip it, and the run that took over deletes it.
"""

from __future__ import annotations

import re

__all__ = ["fenced_out", "result_file_name"]

_NAME = re.compile(r"^part-e(\d+)-[^-]+-(\d+)-")


def result_file_name(epoch: int | None, run_id: str, seq: int, suffix: str) -> str:
    """The name of a run's `seq`-th result file (`epoch` None: a writer outside any lease, e.g. a test)."""
    run = f"e{epoch}-{run_id}" if epoch is not None else run_id
    return f"part-{run}-{seq:06d}-{suffix}.parquet"


def fenced_out(name: str, sealed: dict[str, int] | None) -> bool:
    """True when the file named `name` (base name) was committed by a run after it lost its lease:
    its epoch is sealed (`sealed`: epoch -> files it was allowed to commit) and its number is past that."""
    if not sealed:
        return False
    m = _NAME.match(name)
    if m is None:  # written before runs were fenced, or by a writer outside a lease
        return False
    allowed = sealed.get(m.group(1))
    return allowed is not None and int(m.group(2)) > allowed
