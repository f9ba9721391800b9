"""cluster.yaml as Ray's cluster launcher reads it, and its node types under Ray's fake multi-node
autoscaler (the one Ray's own autoscaler tests use): CPU workers come for inference actors the head
cannot hold, a GPU worker comes for a hosted model's replica, and idle workers go away."""

from __future__ import annotations

import pytest
import yaml

import rayeval
from rayeval.spec import ModelSpec
from tests.conftest import REPO
from tests.support.clusters import FakeAutoscalingCluster
from tests.support.tasks import stub_task

CLUSTER_YAML = REPO / "cluster.yaml"


def _launcher_config() -> dict:
    """cluster.yaml with Ray's defaults filled in, as `ray up` prepares it."""
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(yaml.safe_load(CLUSTER_YAML.read_text()))


def test_cluster_yaml_passes_rays_own_validation():
    from ray.autoscaler._private.util import validate_config

    config = _launcher_config()
    validate_config(config)  # raises on anything Ray's cluster launcher would refuse
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu = [t for t, v in types.items() if v["resources"].get("GPU")]
    cpu = [t for t, v in types.items() if not v["resources"].get("GPU") and t != config["head_node_type"]]
    assert gpu and cpu, "a CPU worker type and a GPU worker type"
    assert all(types[t].get("min_workers", 0) == 0 for t in gpu + cpu), "workers come only when needed"


def _fake_config(idle_timeout_minutes: float) -> dict:
    """cluster.yaml's node types, scaled down to this host, under the fake provider."""
    real = _launcher_config()
    types = {}
    for name, node in real["available_node_types"].items():
        resources = {"CPU": 1} if name == real["head_node_type"] else {"CPU": 2}
        if node["resources"].get("GPU"):
            resources = {"CPU": 1, "GPU": node["resources"]["GPU"]}  # a GPU the node declares, not has
        types[name] = {
            "resources": resources,
            "node_config": {},
            "min_workers": 0,
            "max_workers": 0 if name == real["head_node_type"] else min(2, node.get("max_workers", 2)),
        }
    return {
        "cluster_name": "rayeval-fake",
        "max_workers": 4,
        "head_node_type": real["head_node_type"],
        "available_node_types": types,
        "idle_timeout_minutes": idle_timeout_minutes,
        "upscaling_speed": 1.0,
        "auth": {},
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


@pytest.mark.ray
@pytest.mark.cluster
def test_the_autoscaler_brings_cpu_and_gpu_workers_and_takes_idle_ones_away(stub_server, tmp_path, rayeval_home):
    from ray import serve

    from rayeval.serve_apps.builtins import resolve_source
    from rayeval.serve_apps.llm import llm_config

    cluster = FakeAutoscalingCluster(_fake_config(idle_timeout_minutes=0.1))
    try:
        cluster.start()
        assert len(cluster.nodes()) == 1  # the head only: 1 CPU
        server = stub_server(latency=0.02)
        task = stub_task(
            tmp_path,
            server,
            200,
            name="scale-up",
            # 4 inference actors of 0.5 CPU, a scoring actor and the writer: more than the head's 1 CPU.
            resources={"inference_actors": 4, "actor_num_cpus": 0.5, "wait_timeout_s": 240},
        )
        handle = rayeval.run(task)
        record = handle.status()
        assert record["state"] == "succeeded"
        head = next(n["NodeID"] for n in cluster.nodes() if "node:__internal_head__" in n["Resources"])
        assert set(record["placement"]["inference"]) - {head}, "inference actors ran on the new CPU workers"

        # A hosted model's replica asking for a GPU: the GPU node type comes. vLLM's CPU build cannot start
        # on a GPU that a fake node only declares, so a small deployment asks for exactly the resources
        # rayeval's LLM deployment asks for (its placement group's bundles) and runs there instead.
        model = ModelSpec.model_validate(
            {"name": "gpu-model", "builtin": "tiny-random-llama", "engine": {"gpus_per_replica": 1}}
        )
        bundles = llm_config(model, resolve_source(model)).placement_group_config["bundles"]
        assert any(b.get("GPU") for b in bundles)

        @serve.deployment(placement_group_bundles=bundles, placement_group_strategy="STRICT_PACK")
        class Replica:
            def __call__(self, request) -> str:
                import ray

                return ray.get_runtime_context().get_node_id()

        serve.run(Replica.bind(), name="gpu-replica", route_prefix="/gpu-replica")
        cluster.wait_for(lambda nodes: any(n["Resources"].get("GPU") for n in nodes), 120, "a GPU worker")
        gpu_node = next(n["NodeID"] for n in cluster.nodes() if n["Resources"].get("GPU"))
        handle = serve.get_app_handle("gpu-replica")
        assert handle.remote(None).result(timeout_s=60) == gpu_node
        serve.delete("gpu-replica")
        # Nothing runs any more: every worker goes after the idle timeout (6 s here).
        cluster.wait_for(lambda nodes: len(nodes) == 1, 180, "idle workers removed")
    finally:
        cluster.shutdown()


def test_the_kuberay_manifest_has_the_node_types_of_cluster_yaml():
    manifest = yaml.safe_load((REPO / "deploy" / "kuberay" / "raycluster.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayCluster"
    spec = manifest["spec"]
    import ray

    assert spec["rayVersion"] == ray.__version__  # the Ray rayeval runs on
    assert spec["authOptions"] == {"mode": "token"}  # KubeRay makes the token and sets it on every container
    assert spec["enableInTreeAutoscaling"] is True
    launcher = _launcher_config()
    assert spec["autoscalerOptions"]["idleTimeoutSeconds"] == launcher["idle_timeout_minutes"] * 60

    def cpus(group: dict) -> float:
        container = group["template"]["spec"]["containers"][0]
        assert container["name"] and container["image"].startswith("rayproject/ray:")
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), "KubeRay takes strings"
        assert container["resources"]["limits"]["cpu"] == group["rayStartParams"]["num-cpus"]
        return float(group["rayStartParams"]["num-cpus"])

    types = launcher["available_node_types"]
    assert cpus(spec["headGroupSpec"]) == types[launcher["head_node_type"]]["resources"]["CPU"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    workers = {t: v for t, v in types.items() if t != launcher["head_node_type"]}
    assert {f"ray.worker.{name}" for name in groups} == set(workers)
    for name, group in groups.items():
        node = workers[f"ray.worker.{name}"]
        assert cpus(group) == node["resources"]["CPU"]
        assert (group["minReplicas"], group["maxReplicas"]) == (node.get("min_workers", 0), node["max_workers"])
        assert group["replicas"] == group["minReplicas"]
        gpus = node["resources"].get("GPU", 0)
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits.get("nvidia.com/gpu", 0) == gpus and float(group["rayStartParams"].get("num-gpus", 0)) == gpus


def test_cluster_yaml_starts_every_node_with_a_token_it_makes_once(tmp_path):
    """The launcher file's head setup, run as written in a home of its own: it makes a token once (private,
    64 hex characters) and keeps it on the next setup; every node starts Ray with token authentication
    only when the token is there, and the workers get the head's copy."""
    import os
    import subprocess

    config = yaml.safe_load(CLUSTER_YAML.read_text())  # as written (Ray adds setup_commands to the head's)
    _launcher_config()  # and valid as Ray reads it
    env = {**os.environ, "HOME": str(tmp_path)}
    tokens = []
    for _ in range(2):  # `ray up` runs the setup again on a restart: the token stays the same
        for command in config["head_setup_commands"]:
            subprocess.run(["bash", "-c", command], env=env, check=True, timeout=60)
        tokens.append((tmp_path / ".ray" / "auth_token").read_text().strip())
    assert len(tokens[0]) == 64 and int(tokens[0], 16) >= 0 and tokens[1] == tokens[0]
    assert (tmp_path / ".ray" / "auth_token").stat().st_mode & 0o077 == 0  # its user's only
    assert "~/.ray/auth_token" in config["cluster_synced_files"]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in config[key] if "ray start" in c]
        assert start.startswith("test -s ~/.ray/auth_token && RAY_AUTH_MODE=token ray start"), start
        guard = start.split(" && ray", 1)[0].split(" RAY_AUTH_MODE", 1)[0].removesuffix(" &&")
        missing = subprocess.run(["bash", "-c", guard], env={**env, "HOME": str(tmp_path / "nobody")})
        assert missing.returncode != 0  # no token: the node does not start Ray at all
