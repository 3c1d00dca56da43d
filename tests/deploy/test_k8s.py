"""deploy/k8s/: the committed manifests are the generator's output for this repository, valid against KubeRay's
CRDs, Kubernetes' schemas and Ray Serve's, and carry the Serve config `make serve` runs. No cluster, no network."""
import copy
import importlib.util
import os
import shutil
from pathlib import Path
from unittest import mock

import pytest
import yaml

from serve.serve_config import build_serve_config
from serve.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"k8s_{name}", K8S / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _load("generate")
validate = _load("validate")

needs_schemas = pytest.mark.skipif(
    not validate.KUBERAY_SCHEMAS.is_dir(), reason=f"KubeRay CRD schemas absent: {validate.KUBERAY_SCHEMAS.resolve()}"
)


@pytest.fixture(scope="module")
def rendered(repository) -> dict[str, str]:
    return generate.render(repository, **generate.DEFAULTS)


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _rayservice(text: str) -> dict:
    (service,) = _docs(text)
    return service


def _env(container: dict) -> dict:
    return {e["name"]: e for e in container["env"]}


def test_committed_manifests_are_rendered_from_the_repository(rendered):
    committed = {p.name for p in K8S.glob("*.yaml")}
    assert committed == set(rendered), "stray or missing manifest in deploy/k8s/"
    for name, text in rendered.items():
        assert (K8S / name).read_text() == text, f"{name} is stale: run python deploy/k8s/generate.py"


@needs_schemas
@pytest.mark.parametrize("name", ["rayservice.yaml", "model-repository.yaml", "monitoring.yaml"])
def test_committed_manifests_are_valid(name):
    assert validate.file_errors(K8S / name) == []


def test_serve_config_is_the_one_make_serve_runs(rendered, repository):
    embedded = yaml.safe_load(_rayservice(rendered["rayservice.yaml"])["spec"]["serveConfigV2"])
    assert embedded == build_serve_config(generate.cluster_settings(repository), repository_path="/models")

    # `make serve`'s config (defaults, no STREAMSERVE_* from this shell) differs only where a pod must:
    # the repository is the volume mount, and HTTP/gRPC listen on every interface of the pod.
    with mock.patch.dict(os.environ, {k: v for k, v in os.environ.items() if not k.startswith("STREAMSERVE_")}, clear=True):
        local = build_serve_config(ServerSettings(repository=str(repository)))
    local["applications"][0]["args"]["repository"] = "/models"
    local["http_options"]["host"] = generate.cluster_settings(repository).http_host  # every interface of the pod
    assert embedded == local


def test_pods_mount_the_repository_where_the_config_points(rendered):
    service = _rayservice(rendered["rayservice.yaml"])
    target = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"]["repository"]
    cluster = service["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        (container,) = group["template"]["spec"]["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["models"] == target
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in group["template"]["spec"]["volumes"]}
        assert claims["models"] == generate.PVC_NAME
    pvc, job = _docs(rendered["model-repository.yaml"])
    assert pvc["metadata"]["name"] == generate.PVC_NAME and job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == target


def test_ports_probes_gpus_and_autoscaling(rendered):
    service = _rayservice(rendered["rayservice.yaml"])
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    ports = {p["name"]: p["port"] for p in service["spec"]["serveService"]["spec"]["ports"]}
    assert ports == {"http": config["http_options"]["port"], "grpc": config["grpc_options"]["port"]}
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True and cluster["authOptions"] == {"mode": "token"}
    gpu, cpu = cluster["workerGroupSpecs"]
    assert (gpu["groupName"], cpu["groupName"]) == ("gpu", "cpu")
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (0, generate.DEFAULTS["gpu_max_workers"])
    (worker,) = gpu["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in cpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "tolerations" in gpu["template"]["spec"] and "tolerations" not in cpu["template"]["spec"]
    assert worker["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": config["http_options"]["port"]}
    for group in (cluster["headGroupSpec"], gpu, cpu):
        (container,) = group["template"]["spec"]["containers"]
        assert {"name": "metrics", "containerPort": ServerSettings().metrics_port} in container["ports"]
        assert group["rayStartParams"]["metrics-export-port"] == str(ServerSettings().metrics_port)
        assert container["resources"]["requests"] == container["resources"]["limits"]
    models = [d for d in config["applications"][0]["deployments"] if d["name"] != "Ingress"]
    assert models and all(d["autoscaling_config"]["min_replicas"] >= 1 for d in models)


def test_environment_follows_the_launcher_and_the_token_comes_from_a_secret(rendered):
    from serve.launcher import prepare_environment

    with mock.patch.dict(os.environ, {}, clear=True):
        prepare_environment(ServerSettings())
        launcher = dict(os.environ)
    service = _rayservice(rendered["rayservice.yaml"])
    cluster = service["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        env = _env(group["template"]["spec"]["containers"][0])
        for key in ("RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE", "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH"):
            assert env[key]["value"] == launcher[key], key
        assert env["RAY_SERVE_ENABLE_HA_PROXY"]["value"] == "1"
        token = env["STREAMSERVE_AUTH_TOKEN"]
        assert "value" not in token and token["valueFrom"]["secretKeyRef"] == {"name": generate.AUTH_SECRET, "key": "token"}


def test_rendering_ignores_the_shell_environment(repository, rendered, monkeypatch):
    monkeypatch.setenv("STREAMSERVE_MODEL_NUM_CPUS", "3")
    monkeypatch.setenv("STREAMSERVE_AUTH_TOKEN", "do-not-render-me")
    again = generate.render(repository, **generate.DEFAULTS)
    assert again == rendered and "do-not-render-me" not in "".join(again.values())


def test_a_gpu_model_asks_for_a_fraction_of_a_card(repository, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(repository / "simple", repo / "simple")
    config = repo / "simple" / "config.pbtxt"
    text = config.read_text().replace("kind: KIND_CPU", "kind: KIND_GPU")
    config.write_text(text + '\nparameters { key: "num_gpus" value { string_value: "0.25" } }\n')
    service = _rayservice(generate.render(repo, **generate.DEFAULTS)["rayservice.yaml"])
    (deployment,) = [d for d in yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["deployments"] if d["name"] == "simple_v1"]
    assert deployment["ray_actor_options"]["num_gpus"] == 0.25
    if validate.KUBERAY_SCHEMAS.is_dir():
        assert validate.object_errors(service) == []


def _set(obj: dict, path: str, value):
    *parents, last = path.split(".")
    for key in parents:
        obj = obj[int(key)] if key.isdigit() else obj[key]
    obj[int(last) if last.isdigit() else last] = value


BROKEN = [
    # (file, document index, dotted path, bad value, what the error names)
    ("rayservice.yaml", 0, "spec.rayClusterConfig.workerGroupSpecs.0.maxReplicas", "four", "maxReplicas"),
    ("rayservice.yaml", 0, "spec.rayClusterConfig.enableInTreeAutoScaling", True, "enableInTreeAutoScaling"),
    ("rayservice.yaml", 0, "spec.rayClusterConfig.headGroupSpec.template.spec.containers.0.ports.0.containerPort", "6379", "containerPort"),
    ("rayservice.yaml", 0, "spec.serveService.spec.ports.0.port", "http", "port"),
    ("model-repository.yaml", 0, "spec.accessModes", "ReadWriteMany", "accessModes"),
    ("model-repository.yaml", 1, "spec.template.spec.restartPolicyy", "Never", "restartPolicyy"),
    ("monitoring.yaml", 0, "metadata.labels", "streamserve", "labels"),
]


@needs_schemas
@pytest.mark.parametrize("name,index,path,value,named", BROKEN, ids=[b[2] for b in BROKEN])
def test_a_broken_manifest_is_rejected(name, index, path, value, named):
    obj = copy.deepcopy(_docs((K8S / name).read_text())[index])
    assert validate.object_errors(obj) == []
    _set(obj, path, value)
    errors = validate.object_errors(obj)
    assert errors and named in " ".join(errors), errors


@needs_schemas
@pytest.mark.parametrize(
    "old,new",
    [
        ("proxy_location: EveryNode", "proxy_location: Everywhere"),
        ("target_ongoing_requests: 2", "target_ongoing_requests: lots"),
        ("max_ongoing_requests: 256", "max_ongoing_requests: -1"),  # the ingress's: stays when a pool's models change
        ("num_replicas: 1", "num_replicas: 0.5"),
    ],
)
def test_a_broken_serve_config_is_rejected(old, new):
    service = _rayservice((K8S / "rayservice.yaml").read_text())
    assert old in service["spec"]["serveConfigV2"]
    service["spec"]["serveConfigV2"] = service["spec"]["serveConfigV2"].replace(old, new, 1)
    assert validate.object_errors(service), f"{new!r} passed"


@needs_schemas
def test_validate_script_fails_on_a_broken_file(tmp_path):
    broken = tmp_path / "rayservice.yaml"
    broken.write_text((K8S / "rayservice.yaml").read_text().replace("minReplicas: 0", "minReplicas: none"))
    with pytest.raises(SystemExit) as exit_:
        validate.main([str(broken)])
    assert "minReplicas" in str(exit_.value.code)


def test_the_simulated_cluster_is_the_manifests_cluster(repository, rendered):
    """loadtest/cluster_autoscale.py runs the autoscaler config KubeRay's autoscaler derives from the rendered RayCluster:
    each simulated setting is a manifest field (deploy/k8s/README.md, "The simulated run and the manifests")."""
    from loadtest import cluster_autoscale

    ray_cluster = cluster_autoscale.rendered_ray_cluster(repository)
    service = _rayservice(rendered["rayservice.yaml"])
    assert ray_cluster["spec"] == service["spec"]["rayClusterConfig"]  # the committed manifest's cluster, not another
    simulated = cluster_autoscale.simulated_autoscaler_config(ray_cluster, "127.0.0.1:1")
    spec = ray_cluster["spec"]
    assert simulated["idle_timeout_minutes"] * 60 == spec["autoscalerOptions"]["idleTimeoutSeconds"] == generate.IDLE_TIMEOUT_S
    assert spec["autoscalerOptions"]["upscalingMode"] == generate.UPSCALING_MODE == "Default" and simulated["upscaling_speed"] == 1000
    types = simulated["available_node_types"]
    assert set(types) == {cluster_autoscale.HEAD_TYPE, *generate.WORKER_GROUPS}
    assert types[cluster_autoscale.HEAD_TYPE]["resources"] == {"CPU": int(generate.HEAD_RESOURCES["cpu"])}
    for group in spec["workerGroupSpecs"]:
        shape, node_type = generate.WORKER_GROUPS[group["groupName"]], types[group["groupName"]]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert (node_type["min_workers"], node_type["max_workers"]) == (group["minReplicas"], group["maxReplicas"]) == (shape["min"], shape["max"])
        assert node_type["resources"]["CPU"] == int(limits["cpu"]) == int(shape["resources"]["cpu"])
        assert node_type["resources"].get("GPU", 0) == int(limits.get("nvidia.com/gpu", 0))
    assert types["gpu"]["resources"]["GPU"] == 1 and "GPU" not in types["cpu"]["resources"]
