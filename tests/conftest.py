"""Shared fixtures: one real local Ray cluster per test session, stub model services on 127.0.0.1.

Two tiers: tests that need a Ray cluster are marked `ray` (those using the `ray_cluster` fixture are
marked here; modules that start Ray another way mark themselves), and tests that take long without Ray
are marked `slow`. The rest is the fast tier (`pytest -m "not ray and not slow"`, under a minute),
which runs first in a run without pytest-xdist, and last under it (`-n 2`, README's test command).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.support.clusters import disconnect, free_port, local_cluster

# Quiet, fast, self-contained Ray for tests (set before ray is imported anywhere).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_enable_metrics_collection", "0")
# Ray's token authentication on, as a real cluster has it (Ray 2.60's default): every cluster the tests
# start, and every client, uses this session's token, given the way Ray documents it.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
# No Ray call may start a cluster by itself (a thread left over from an earlier test, after its cluster
# stopped): tests start the clusters they use.
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
# No hub access from tests: a built-in set without a local source fails at once instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Mark the tests that use the shared Ray cluster `ray`, and order them: the fast tier first, or under
    pytest-xdist the longest files first."""
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)

    # A stable sort: file order is kept within each tier; clusters of their own (tests/cluster) come last,
    # so that the shared cluster is started once, and once again at most.
    def tier(item) -> int:
        if item.get_closest_marker("cluster") is not None:
            return 2
        return int(any(item.get_closest_marker(m) is not None for m in ("ray", "slow")))

    # Under pytest-xdist (README's test command: two workers, a test file to one worker), the longest files
    # go first and the fast tier's small ones last, to fill the end: a worker left alone with a long file
    # at the end doubles what that file costs the run.
    heavy_first = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    items.sort(key=lambda item: -tier(item) if heavy_first else tier(item))


@pytest.fixture(scope="session")
def rayeval_home(tmp_path_factory) -> str:
    home = str(tmp_path_factory.mktemp("rayeval-home"))
    os.environ["RAYEVAL_HOME"] = home
    return home


@pytest.fixture(scope="session")
def _serve_port() -> None:
    # Serve's proxy defaults to port 8000 with SO_REUSEPORT: a free port keeps this cluster's apart.
    os.environ.setdefault("RAYEVAL_SERVE_PORT", str(free_port()))


@pytest.fixture(scope="module")
def ray_cluster(rayeval_home, _serve_port):
    """The shared real local Ray cluster (4 logical CPUs on this 2-core machine; actors take 0.25 each),
    started on first use and again after a test that needed a cluster of its own (tests/cluster)."""
    return local_cluster()


@pytest.fixture(scope="session", autouse=True)
def _stop_clusters():
    yield
    disconnect()


@pytest.fixture
def stub_server():
    """A fresh OpenAI-compatible stub server on 127.0.0.1 (see tests/support/openai_server.py)."""
    from tests.support.openai_server import OpenAIStubServer

    servers = []

    def make(**kwargs):
        server = OpenAIStubServer(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def gsm8k_predictions() -> Path:
    path = SHARED_DATA / "gsm8k" / "predictions"
    if not path.is_dir():
        pytest.skip(f"shared GSM8K data not found at {path}")
    return path
