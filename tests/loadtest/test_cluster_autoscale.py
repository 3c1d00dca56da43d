"""The simulated cluster of loadtest/cluster_autoscale.py: a GPU variant of the repository, the autoscaler config
derived from the rendered manifests (tests/deploy/test_k8s.py checks the mapping field by field), and (slow, gated)
the multi-minute run itself."""
import json
import os

import pytest

from loadtest import cluster_autoscale as ca
from serve.repository import load_model
from serve.serve_config import build_serve_config
from serve.settings import ServerSettings


def test_gpu_config_makes_a_kind_gpu_model_with_a_card_share(repository):
    text = (repository / "heat1d" / "config.pbtxt").read_text()
    assert "KIND_CPU" in text and "KIND_GPU" not in text
    made = ca.gpu_config(text, count=3, num_gpus=0.25)
    assert "KIND_GPU" in made and "KIND_CPU" not in made and "count: 3" in made
    assert 'string_value: "0.25"' in made and "rollout_state" in made  # the model's own parameters are kept


def test_gpu_repository_yields_a_dedicated_fractional_gpu_deployment(repository, tmp_path):
    repo = ca.gpu_repository(repository, tmp_path / "repo")
    assert sorted(p.name for p in repo.iterdir()) == sorted([ca.MODEL, *ca.ALSO_SERVED])
    spec = load_model(repo / ca.MODEL)
    assert spec.on_gpu and spec.instance_count == ca.GPU_COUNT and spec.server_params.num_gpus == ca.GPU_SHARE
    deployments = {d["name"]: d for d in build_serve_config(ServerSettings(repository=str(repo)))["applications"][0]["deployments"]}
    gpu = deployments[ca.DEPLOYMENT]
    assert gpu["ray_actor_options"]["num_gpus"] == ca.GPU_SHARE
    assert (gpu["autoscaling_config"]["min_replicas"], gpu["autoscaling_config"]["max_replicas"]) == (1, ca.GPU_COUNT)
    assert set(deployments) == {"Ingress", ca.DEPLOYMENT}  # `simple` runs in the ingress


def test_the_simulated_autoscaler_config_is_valid_for_the_fake_provider(repository):
    from ray.autoscaler._private.util import validate_config

    config = ca.simulated_autoscaler_config(ca.rendered_ray_cluster(repository), "127.0.0.1:12345")
    validate_config(config)
    assert config["provider"]["type"] == "fake_multinode" and config["provider"]["gcs_address"] == "127.0.0.1:12345"
    assert config["head_node_type"] == ca.HEAD_TYPE and config["available_node_types"][ca.HEAD_TYPE]["max_workers"] == 0
    assert all("memory" not in t["resources"] for t in config["available_node_types"].values())
    # the GPU variant holds 2 replicas per GPU node: GPU_COUNT replicas need every GPU node the group allows
    assert config["available_node_types"]["gpu"]["max_workers"] * (1 / ca.GPU_SHARE) >= ca.GPU_COUNT


def test_summary_and_outcomes():
    events = {"load_on_s": 10.0, "second_gpu_node_s": 31.5, "kill_s": 60.0, "loss_seen_s": 62.0, "full_service_s": 101.0,
              "load_off_s": 120.0, "node_removed_s": 230.0}
    s = ca.summary(events)
    assert s["second_gpu_node_after_load_s"] == 21.5 and s["full_service_after_kill_s"] == 41.0
    assert s["gpu_node_removed_after_load_off_s"] == 110.0 and s["node_replaced_after_kill_s"] is None
    assert ca.outcome_counts(["StatusCode.UNAVAILABLE: replica x lost", "StatusCode.UNAVAILABLE: y", "StatusCode.INTERNAL: z"]) == {
        "StatusCode.UNAVAILABLE": 2, "StatusCode.INTERNAL": 1}


@pytest.mark.skipif(not os.environ.get("STREAMSERVE_LOAD_TESTS"), reason="a simulated Ray cluster for minutes: set STREAMSERVE_LOAD_TESTS=1")
def test_cluster_run_scales_out_survives_a_node_loss_and_scales_in(repository, tmp_path):
    ca.main(["--repository", str(repository), "--output", str(tmp_path), "--temp-dir", f"/tmp/ssca-{os.getpid()}"])
    result = json.loads((tmp_path / "cluster_autoscale.json").read_text())
    s, events = result["summary"], result["events"]
    assert s["second_gpu_node_after_load_s"] is not None and s["full_service_after_kill_s"] is not None
    assert s["gpu_node_removed_after_load_off_s"] is not None
    assert set(events["outcomes"]) <= {"StatusCode.UNAVAILABLE"}  # no hang (DEADLINE_EXCEEDED), no other error
    assert all("the replica" in e for e in events["error_examples"])  # each failure names what was lost
    assert all(w["device"] == "cpu" and "device_fallback" in w for w in events["describe"].values())
