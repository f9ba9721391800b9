"""The code sandbox: each program in its own process group, with time, memory, file and process limits,
no network and a throwaway directory; a program that misbehaves fails alone."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from rayeval.metrics.sandbox import network_isolated, run_python


def test_exit_status_decides_and_the_traceback_is_kept():
    assert run_python("assert sorted([3, 1, 2]) == [1, 2, 3]").status == "passed"
    failed = run_python("def f():\n    return 1\nassert f() == 2, 'wrong'")
    assert failed.status == "failed" and "AssertionError: wrong" in failed.detail


def test_a_hang_is_killed_at_the_time_limit_with_what_it_started():
    started = time.monotonic()
    result = run_python("import time\nwhile True:\n    time.sleep(0.01)", timeout=1.0)
    assert result.status == "timed out" and time.monotonic() - started < 5
    assert run_python("while True: pass", timeout=1.0).status == "timed out"


def test_memory_files_and_processes_are_limited():
    assert "MemoryError" in run_python("x = bytearray(8 * 1024**3)", memory_mb=512).detail
    assert "File too large" in run_python("open('f', 'wb').write(b'x' * (64 * 1024 * 1024))").detail
    bomb = run_python("import os\nwhile True:\n    os.fork()")
    assert bomb.status == "failed" and "NoneType" in bomb.detail  # fork is taken away: it fails alone
    assert run_python("import subprocess\nsubprocess.run(['true'])").status == "failed"
    assert run_python("print('still fine')").status == "passed"  # the next program is not affected


def test_no_network_even_to_a_server_on_this_machine():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    try:
        result = run_python(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)")
        assert result.status == "failed" and not accepted
        assert ("unreachable" if network_isolated() else "disabled") in result.detail
    finally:
        server.close()


def test_the_working_directory_is_thrown_away():
    result = run_python("import os\nopen('left-behind', 'w').write('x')\nprint(os.getcwd())\nraise SystemExit(3)")
    assert result.status == "failed"
    where = run_python("import os, sys\nsys.stderr.write(os.getcwd())\nraise SystemExit(1)").detail.strip()
    assert where.startswith("/") and "rayeval-sandbox-" in where
    import os

    assert not os.path.exists(where)


def test_a_program_cannot_kill_the_worker_that_runs_it_nor_leave_a_daemon(tmp_path):
    import os

    import pytest

    from rayeval.metrics.sandbox import pid_isolated

    if not pid_isolated():
        pytest.skip("this machine gives no PID namespace to unprivileged users")
    killer = "import ctypes, os\nlibc = ctypes.CDLL(None)\nlibc.kill(os.getppid(), 9)\nlibc.kill(-1, 9)\n"
    result = run_python(killer)
    assert os.getpid() and result.status in ("passed", "failed")  # this process is still here
    marker = tmp_path / "daemon-alive"
    daemon = (
        "import ctypes, os, time\nlibc = ctypes.CDLL(None)\n"
        "if libc.fork() == 0:\n    libc.setsid()\n    if libc.fork() == 0:\n"
        f"        time.sleep(2)\n        open({str(marker)!r}, 'w').write('x')\n    os._exit(0)\n"
    )
    assert run_python(daemon).status == "passed"
    time.sleep(3)
    assert not marker.exists()  # the double-forked daemon died with the program


def test_working_directories_of_killed_workers_are_cleaned_up():
    import os
    import subprocess
    import sys
    import tempfile

    from rayeval.metrics import sandbox

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that is gone
    left = tempfile.mkdtemp(prefix=f"rayeval-sandbox-{pid}-")
    mine = tempfile.mkdtemp(prefix=f"rayeval-sandbox-{os.getpid()}-")
    sandbox.clean_leftovers.cache_clear()
    assert sandbox.clean_leftovers() >= 1
    assert not os.path.exists(left) and os.path.exists(mine)
    os.rmdir(mine)


def test_a_sample_that_kills_its_worker_fails_after_two_deaths(ray_cluster):
    """Without a PID namespace (as on machines that give none), a sample can kill the Ray worker running it;
    the worker's journal of running samples makes the third start fail it instead of dying forever."""
    import ray

    from rayeval.metrics.sandbox import ISOLATION_ENV

    @ray.remote(num_cpus=0, max_restarts=5, max_task_retries=5, runtime_env={"env_vars": {ISOLATION_ENV: "none"}})
    class Worker:
        def run(self, program):
            import os

            return os.getpid(), run_python(program)

    killer = "import ctypes, os\nctypes.CDLL(None).kill(os.getppid(), 9)\nimport time\ntime.sleep(5)\n"
    worker = Worker.remote()
    pid, result = ray.get(worker.run.remote(killer), timeout=120)
    assert result.status == "failed" and "not run again: the worker running this sample died 2 times" in result.detail
    pid_after, fine = ray.get(worker.run.remote("print('fine')"), timeout=60)
    assert fine.passed and pid_after == pid  # the third worker goes on with the next samples
    ray.kill(worker)


def _overlap(log) -> int:
    """The most programs running at once, from their (start, end) lines in `log`."""
    events = []
    for line in log.read_text().splitlines():
        start, end = map(float, line.split())
        events += [(start, 1), (end, -1)]
    running = most = 0
    for _, step in sorted(events):
        running += step
        most = max(most, running)
    return most


def test_programs_from_several_threads_run_at_once_but_never_more_than_the_slots(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from rayeval.metrics import sandbox

    monkeypatch.setenv(sandbox.PARALLEL_ENV, "3")
    monkeypatch.setattr(sandbox._Slots, "_semaphore", None)  # sized again, from the variable
    log = tmp_path / "runs.log"
    # Each program notes when it ran in a file outside its sandbox (the filesystem is shared).
    program = (
        "import time\nt = time.time()\ntime.sleep(1.0)\n"
        f"with open({str(log)!r}, 'a') as f:\n    f.write(f'{{t}} {{time.time()}}\\n')\n"
    )
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: run_python(program, timeout=10), range(8)))
    assert [r.status for r in results] == ["passed"] * 8  # identical programs at once are not "deaths"
    assert 2 <= _overlap(log) <= 3  # at once, within the slots


def test_parallelism_is_bounded_by_cores_and_memory(monkeypatch):
    from rayeval.metrics import sandbox

    monkeypatch.delenv(sandbox.PARALLEL_ENV, raising=False)
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(sandbox, "_available_memory", lambda: 64 * 1024**4)
    assert sandbox.parallelism(1024) == sandbox.PROGRAMS_PER_CORE * cores
    monkeypatch.setattr(sandbox, "_available_memory", lambda: 3 * 1024**3)
    assert sandbox.parallelism(1024) == min(3, sandbox.PROGRAMS_PER_CORE * cores)
    assert sandbox.parallelism(8192) == 1  # never none
    monkeypatch.setenv(sandbox.PARALLEL_ENV, "lots")
    with pytest.raises(ValueError, match="RAYEVAL_SANDBOX_PARALLEL must be a whole number"):
        sandbox.parallelism()


def test_the_time_limit_does_not_count_waiting_for_a_cpu(monkeypatch):
    """The limit counts the time a program ran or waited on its own, not the time it stood ready to run
    without a CPU (its run delay): a program taking 1.6 s of wall-clock time against a 1 s limit passes
    when it waited 1 s of that for a CPU, and is killed at the limit when it did not."""
    import rayeval.metrics.sandbox as sandbox

    slow = "import time\ntime.sleep(1.6)"
    monkeypatch.setattr(sandbox, "_run_delays", lambda pid: {pid: 1.0})
    assert run_python(slow, timeout=1.0).status == "passed"
    monkeypatch.setattr(sandbox, "_run_delays", lambda pid: {pid: 0.0})
    started = time.perf_counter()
    assert run_python(slow, timeout=1.0).status == "timed out" and time.perf_counter() - started < 1.5
    monkeypatch.setattr(sandbox, "_run_delays", lambda pid: {pid: 1e9})  # starved for ever: still bounded
    monkeypatch.setattr(sandbox, "STARVED_CAP", 2)
    started = time.perf_counter()
    assert run_python("import time\ntime.sleep(30)", timeout=1.0).status == "timed out"
    assert time.perf_counter() - started < 4


def test_the_wait_of_a_program_that_exited_still_counts(monkeypatch):
    """The program (a child of `unshare`) may wait for a CPU, finish and be reaped while `unshare` itself
    still waits to exit: the program's wait is no longer in /proc then, and the limit still allows for it.
    Here the first look sees the program's 5 s wait and every later one sees `unshare` alone: a 2 s
    program against a 1 s limit passes (were only the last look counted, it would be killed at 1 s)."""
    import rayeval.metrics.sandbox as sandbox

    looks = []

    def program_then_gone(pid):
        looks.append(pid)
        return {pid: 0.0, pid + 1: 5.0} if len(looks) == 1 else {pid: 0.0}

    monkeypatch.setattr(sandbox, "_run_delays", program_then_gone)
    assert run_python("import time\ntime.sleep(2.0)", timeout=1.0).status == "passed"
    assert len(looks) > 1  # it looked again after the program was gone


def test_run_delays_are_read_for_the_program_and_its_wrapper():
    """Both the `unshare` wrapper and the Python program under it are measured, each by its pid."""
    import subprocess
    import sys

    from rayeval.metrics.sandbox import _run_delays

    proc = subprocess.Popen(["sh", "-c", f"{sys.executable} -c 'import time; time.sleep(3)'; true"])
    try:
        deadline = time.monotonic() + 10
        while len(delays := _run_delays(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.pid in delays and len(delays) == 2, delays
        assert all(seconds >= 0 for seconds in delays.values())
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_loaded_machine_does_not_fail_a_program_for_its_load():
    """Busy processes, four for each CPU, share the machine with the program: it is measured waiting for a
    CPU (Linux's run delay), and a program needing about 0.6 s of CPU passes a limit of 1.5 times what it
    took alone, however long the load made it take. A program that sleeps past its limit is still killed."""
    import multiprocessing

    from rayeval.metrics.sandbox import _run_delays

    work = "t = 0\nfor i in range(6_000_000):\n    t += i\n"
    alone = run_python(work, timeout=10.0)
    assert alone.status == "passed"
    hogs = [multiprocessing.get_context("fork").Process(target=_spin, daemon=True) for _ in range(4 * os.cpu_count())]
    try:
        for h in hogs:
            h.start()
        time.sleep(0.5)  # all of them spinning
        assert _run_delays(hogs[0].pid)[hogs[0].pid] > 0  # they wait for the CPUs, and it shows
        loaded = run_python(work, timeout=max(1.0, 1.5 * alone.seconds))
        assert loaded.status == "passed", (loaded, alone.seconds)
        started = time.perf_counter()
        sleeper = run_python("import time\ntime.sleep(30)", timeout=1.0)
        assert sleeper.status == "timed out" and time.perf_counter() - started < 8
    finally:
        for h in hogs:
            h.terminate()


def _spin() -> None:
    while True:
        pass
