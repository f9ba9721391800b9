"""What happens to the cluster under a running task, as lines for its event log: nodes lost and
joined, and replicas of its hosted models that stopped and were replaced."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["ClusterEvents"]


class ClusterEvents:
    """Compares the cluster with how it was at the last `poll()` and says what changed.

    Args:
        say: Called with (level, message) for each change.
    """

    def __init__(self, say: Callable[[str, str], None]):
        self.say = say
        self.nodes: dict[str, str] | None = None  # live node id -> its address
        self.apps: dict[str, str] = {}  # Serve application -> the model it hosts
        self.replica_states: dict[str, str] = {}  # replica actor id -> its state when last seen
        self.replicas: dict[str, int] = {}  # application -> the most replica actors seen alive at once
        self.lost: dict[str, bool] = {}  # application -> a replica died and has not been replaced yet
        self.lock = threading.Lock()  # polled by the heartbeat's thread, watched from the driver's

    def watch_app(self, app: str, model: str) -> None:
        """Also follow the replicas of a Serve application hosting `model`, from now on: the replicas it
        has are noted at once, so that one lost before the next poll is still told."""
        with self.lock:
            self.apps[app] = model
            try:
                self._replicas()
            except Exception:  # noted at the next poll instead
                pass

    def poll(self) -> None:
        """Look at the nodes and the watched applications once; never raises."""
        with self.lock:
            try:
                self._nodes()
                if self.apps:
                    self._replicas()
            except Exception:  # a GCS or Serve controller that is restarting: look again next time
                pass

    def _nodes(self) -> None:
        import ray

        alive = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes() if n.get("Alive")}
        if self.nodes is not None:
            for node in sorted(set(self.nodes) - set(alive)):
                self.say(
                    "warning",
                    f"node {node[:12]} ({self.nodes[node]}) was lost; Ray runs what it held again elsewhere",
                )
            for node in sorted(set(alive) - set(self.nodes)):
                self.say("info", f"node {node[:12]} ({alive[node]}) joined the cluster")
        self.nodes = alive

    def _replicas(self) -> None:
        """Replica actors of the watched applications that died (Ray's actor table tells at once; Serve's
        own status only after its next health check) and the ones Serve started instead."""
        from ray._private.state import state

        alive: dict[str, int] = {}
        for actor_id, info in state.actor_table(None).items():
            name = info.get("ActorClassName", "")
            app = next((a for a in self.apps if name.startswith(f"ServeReplica:{a}:")), None)
            if app is None:
                continue
            before = self.replica_states.get(actor_id)
            now = info.get("State")
            self.replica_states[actor_id] = now
            if now == "ALIVE":
                alive[app] = alive.get(app, 0) + 1
            # An actor not seen before started after watch_app's first look: its death is news too.
            if now == "DEAD" and before != "DEAD":
                self.lost[app] = True
                self.say(
                    "warning",
                    f"model {self.apps[app]}: a replica ({name.split(':', 2)[-1]}) stopped; Serve starts another, "
                    "and the requests it had in flight are retried per MAX_RETRY_PER_QUERY",
                )
        for app in self.apps:
            n = alive.get(app, 0)
            if self.lost.get(app) and n >= self.replicas.get(app, 0):
                self.say("info", f"model {self.apps[app]}: {n} replica(s) running again")
                self.lost[app] = False
            self.replicas[app] = max(n, self.replicas.get(app, 0))
