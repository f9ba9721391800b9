"""Ray clusters for tests: the shared local one, several real Ray nodes on this host
(`ray.cluster_utils.Cluster`: a raylet per node, each with its own CPUs and custom resources), and
Ray's fake multi-node autoscaler (the one Ray's own autoscaler tests use).

A process is the driver of one cluster at a time: a test that needs a cluster of its own disconnects
from the shared one (which then stops, being this process's own) and the next test that needs the
shared one starts it again. Clusters started here are stopped by their own processes (the nodes'
PIDs, or the processes of their Ray session), never with `ray stop`, which would kill every Ray
process on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["FakeAutoscalingCluster", "HeadNode", "disconnect", "free_port", "head_node", "local_cluster", "multi_node"]

#: The logical CPUs of the shared local cluster (actors take 0.25 each on this 2-core machine).
LOCAL_CPUS = 4


def free_port() -> int:
    """A TCP port nothing listens on right now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HeadNode:
    """A `ray start --head --block` cluster started by `head_node`: its dashboard URL, GCS address, metrics
    port and temporary folder (its session's logs)."""

    def __init__(self, dashboard: str, gcs: str, metrics_port: int, temp_dir: str):
        self.dashboard, self.gcs, self.metrics_port, self.temp_dir = dashboard, gcs, metrics_port, temp_dir


@contextlib.contextmanager
def head_node(env: dict[str, str], prefix: str = "rh") -> Iterator[HeadNode]:
    """A separate Ray cluster from `ray start --head --block` run with `env` (which holds RAY_AUTH_MODE=token
    and RAY_AUTH_TOKEN: Ray's token authentication on, as a real cluster has it); stopped by its PID (never
    `ray stop`). Its ports are picked free, tried afresh up to three times (one may be taken by the time Ray
    binds it); its output goes to a file (a pipe nobody reads can fill and stall it, on its way out too)."""
    import httpx
    import pytest

    binary = Path(sys.executable).parent / "ray"
    temp_dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # short: Ray puts unix sockets in it
    auth = {"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"}
    proc = None
    try:
        for attempt in range(3):
            dashboard_port, metrics, gcs = free_port(), free_port(), free_port()
            dashboard = f"http://127.0.0.1:{dashboard_port}"
            cmd = [
                str(binary), "start", "--head", "--block", "--num-cpus=4", f"--temp-dir={temp_dir}",
                f"--port={gcs}", f"--dashboard-port={dashboard_port}", "--dashboard-host=127.0.0.1",
                f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={metrics}",
                f"--runtime-env-agent-port={free_port()}",
            ]  # fmt: skip
            log = Path(temp_dir) / "ray-start.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 90
            while proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{dashboard}/api/version", headers=auth, timeout=2).status_code == 200:
                        break
                time.sleep(0.5)
            else:
                text = log.read_text(errors="replace") if proc.poll() is not None else "(still starting)"
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                if attempt == 2:
                    pytest.fail(f"ray start --head did not come up: {text[-3000:]}")
                continue
            break
        yield HeadNode(dashboard, f"127.0.0.1:{gcs}", metrics, temp_dir)
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:  # `ray start --block` takes longer than that over its own exit: the group is killed then
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _quiet_data() -> None:
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False


def disconnect() -> None:
    """Leave the cluster this process is connected to (stopping it when this process started it)."""
    import ray

    if ray.is_initialized():
        _stop_background_runs()
        with contextlib.suppress(Exception):
            from ray import serve

            serve.shutdown()
        ray.shutdown()


def _stop_background_runs() -> None:
    """Stop the tasks this process still runs in background threads (`rayeval.run(wait=False)` in a test
    that failed half-way) before their cluster goes. Ray shut down under a running pipeline can end the
    whole process with exit status 1 and nothing printed: a pytest-xdist worker lost, and every test
    after it on that worker with it."""
    from rayeval import api

    for handle in list(api._background):
        with contextlib.suppress(Exception):
            handle.stop(wait=60)
        if handle._thread is not None:
            handle._thread.join(timeout=30)


_local: dict[str, str] = {}


def local_cluster() -> str:
    """The shared local cluster (started here, or again after a test used a cluster of its own); its
    GCS address."""
    import ray

    if ray.is_initialized() and _local.get("address") == ray.get_runtime_context().gcs_address:
        return _local["address"]
    disconnect()
    ray.init(address="local", num_cpus=LOCAL_CPUS, include_dashboard=False, logging_level="warning")
    _quiet_data()
    _local["address"] = ray.get_runtime_context().gcs_address
    return _local["address"]


@contextlib.contextmanager
def multi_node(head: dict[str, Any], workers: list[dict[str, Any]]) -> Iterator[Any]:
    """A cluster of real Ray nodes on this host (`ray.cluster_utils.Cluster`), this process its driver.

    Args:
        head: The head node's arguments (num_cpus, resources, ...).
        workers: One entry of arguments per worker node.

    Yields the Cluster; `cluster.worker_nodes` are the workers, in order, as `workers` gave them.
    """
    import ray
    from ray.cluster_utils import Cluster

    disconnect()
    cluster = Cluster(initialize_head=True, head_node_args={"include_dashboard": False, **head})
    nodes = [cluster.add_node(**args) for args in workers]
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address, logging_level="warning")
        _quiet_data()
        cluster.workers_in_order = nodes
        yield cluster
    finally:
        disconnect()
        cluster.shutdown()


def _processes_of(marker: str) -> list[int]:
    """PIDs of the processes of one Ray cluster: `marker` (its temp folder) is in their command line, or
    in a file they hold open (agents rename their process title, but keep their logs open)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if marker in Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(entry))
                continue
            fds = Path(f"/proc/{entry}/fd")
            if any(marker in os.readlink(fd) for fd in fds.iterdir()):
                pids.append(int(entry))
        except OSError:
            continue
    return pids


class FakeAutoscalingCluster:
    """Ray's fake multi-node autoscaler: a head from `ray start --head --autoscaling-config` whose
    autoscaler launches and removes worker nodes (real raylets on this host) of the given node types.

    Like `ray.cluster_utils.AutoscalingCluster`, with its own GCS port and temp folder, and stopped by
    the processes of its own session instead of `ray stop --force`.

    Args:
        config: A cluster config (`available_node_types`, `idle_timeout_minutes`, ...); its head node
            type is `ray.head.default`.
    """

    def __init__(self, config: dict[str, Any]):
        self.config = json.loads(json.dumps(config))
        self.port = free_port()
        self.temp_dir = tempfile.mkdtemp(prefix="rayeval-fake-")

    @property
    def address(self) -> str:
        import ray

        return f"{ray.util.get_node_ip_address()}:{self.port}"

    def start(self) -> FakeAutoscalingCluster:
        """Start the head (with the autoscaler) and connect this process to it."""
        import ray

        config = self.config
        config["provider"] = {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": self.address,
        }
        head = config["available_node_types"][config["head_node_type"]]["resources"]
        path = Path(self.temp_dir) / "autoscaling.json"
        path.write_text(json.dumps(config))
        disconnect()
        env = {**os.environ, "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_FAKE_CLUSTER": "1"}
        cmd = [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            f"--port={self.port}",
            f"--temp-dir={self.temp_dir}",
            f"--autoscaling-config={path}",
            f"--num-cpus={head.get('CPU', 0)}",
            f"--num-gpus={head.get('GPU', 0)}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ]
        others = {k: v for k, v in head.items() if k not in ("CPU", "GPU")}
        if others:
            cmd.append(f"--resources={json.dumps(others)}")
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
        try:
            ray.init(address=self.address, logging_level="warning")
        except Exception:
            self.shutdown()
            raise
        _quiet_data()
        return self

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's live nodes as Ray lists them."""
        import ray

        return [n for n in ray.nodes() if n.get("Alive")]

    def wait_for(self, predicate: Any, timeout: float, what: str) -> None:
        """Poll the live nodes until `predicate(nodes)` holds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.nodes()):
            if time.monotonic() > deadline:
                summary = [n.get("Resources") for n in self.nodes()]
                raise AssertionError(f"{what}: not within {timeout:.0f} s; nodes now: {summary}")
            time.sleep(1.0)

    def shutdown(self) -> None:
        """Disconnect and stop every process of this cluster (head, autoscaler, agents, fake nodes), found by
        its temp folder; also when `start` failed half-way."""
        disconnect()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _processes_of(self.temp_dir):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while _processes_of(self.temp_dir) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not _processes_of(self.temp_dir):
                return
