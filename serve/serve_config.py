"""The Serve config generated from the model repository: one file for `make serve`, `serve run` and KubeRay.

`placement` decides where each model version runs. Most run inside the ingress replica, as Triton hosts many
models in one process: a request is executed where it lands, without a second process, Ray's router and a
replica-to-replica call (on 2 cores that hop cost 2.5x the throughput of the whole path, loadtest/BENCH.md).
A version gets a deployment when it needs one: a GPU, a long job or a subprocess, a heavy handler whose work should
not share the ingress's cores, or a config asking for it (`parameters { key: "placement" value { string_value:
"dedicated" } }`). Versions that need their own process but not one each share a pool (`pool_<name>`, named by the
handler or a `pool` parameter): every idle replica process costs memory and a little CPU. A deployment's options
come from its models' config.pbtxt (batching sizes the concurrency, instance_group sizes autoscaling and devices);
the settings give the rest.
`deployment_options` and `ingress_options` are the single place those rules live: `app.build_app` applies the
same options when no config file is used, and the YAML written here overrides nothing by surprise.
"""
from pathlib import Path

import yaml

from streamserve_proto import SERVICER_FUNCTION

from .runtimes.python import handler_class
from .repository import ModelRepository, ModelSpec
from .settings import ServerSettings

APP_NAME = "streamserve"
INGRESS_NAME = "Ingress"


def deployment_name(model: str, version: int) -> str:
    return f"{model}_v{version}"


INGRESS, DEDICATED = "ingress", "dedicated"


def placement(spec: ModelSpec) -> tuple[str, str]:
    """(where the model runs, why): `ingress` (in the ingress replica) or `dedicated` (a deployment of its own, or
    of the pool it shares, see `deployment_of`)."""
    asked = spec.server_params.placement  # "ingress", "dedicated" or None: checked when the model loaded
    if spec.on_gpu:
        return DEDICATED, "KIND_GPU: its replicas hold a GPU"
    if asked:
        return asked, "config.pbtxt parameter 'placement'"
    if spec.platform != "python":
        return INGRESS, f"{spec.platform} on the CPU"
    declared = handler_class(spec.handler).placement
    return declared, f"its handler declares placement {declared!r}"


def deployment_of(spec: ModelSpec, version: int) -> str | None:
    """The deployment that runs this version: None for the ingress; a pool's (`pool_<name>`) when the config's `pool`
    parameter or the handler names one, so models that need their own process but no process each (a family's
    heavy handlers, the jobs) share a replica; otherwise its own. A GPU model always has its own."""
    if placement(spec)[0] == INGRESS:
        return None
    pool = None if spec.on_gpu else spec.server_params.pool or (handler_class(spec.handler).pool if spec.handler else None)
    return f"pool_{pool}" if pool else deployment_name(spec.name, version)


def hosted(repository: ModelRepository) -> dict[str | None, list[tuple[ModelSpec, int]]]:
    """deployment name (None: the ingress) -> the model versions it runs."""
    groups: dict[str | None, list[tuple[ModelSpec, int]]] = {}
    for spec in repository:
        for version in spec.versions:
            groups.setdefault(deployment_of(spec, version), []).append((spec, version))
    return groups


def _snapshots(versions: list[tuple[ModelSpec, int]]) -> dict:
    """The data snapshots of the hosted versions as a deployment's `user_config`: naming a new file is Serve's
    lightweight update, which each replica applies in place (ModelPool.reconfigure)."""
    snapshots = {f"{spec.name}/{version}": spec.snapshot for spec, version in versions if spec.snapshot}
    return {"user_config": {"snapshots": snapshots}} if snapshots else {}


def deployment_options(versions: list[tuple[ModelSpec, int]], settings: ServerSettings) -> dict:
    """Serve options for a deployment running these model versions (one, or a pool), read off their config.pbtxt."""
    specs = [spec for spec, _ in versions]
    gpu_share = max(spec.server_params.num_gpus for spec in specs)
    batch = max(max(spec.max_batch_size, 1) for spec in specs)
    # Batches only fill if a replica may hold at least one batch of single-row requests, twice over
    # so the next batch queues while one runs; a pool holds that for each of its models.
    max_ongoing = sum(max(2 * max(spec.max_batch_size, 1), 8) for spec in specs)
    max_replicas = max(spec.instance_count for spec in specs)
    queue_limits = [spec.config.dynamic_batching.default_queue_policy.max_queue_size if spec.dynamic_batching else 0 for spec in specs]
    on_gpu = any(spec.on_gpu for spec in specs)
    return {
        **_snapshots(versions),
        "max_ongoing_requests": max_ongoing,
        "max_queued_requests": sum(queue_limits) if all(queue_limits) else 4 * max_ongoing * max_replicas,
        "autoscaling_config": {
            "min_replicas": 1,
            "max_replicas": max_replicas,
            # Half a batch in flight per replica before another one starts: batches still fill, and
            # a burst gets a second replica before the queue builds up.
            "target_ongoing_requests": max(batch // 2, 2),
            "upscale_delay_s": 3.0,
            "downscale_delay_s": 30.0,
        },
        "ray_actor_options": {"num_cpus": settings.model_num_cpus, "num_gpus": gpu_share if on_gpu else 0.0},
        "graceful_shutdown_timeout_s": 10.0,
        "health_check_period_s": 5.0,
    }


def ingress_options(settings: ServerSettings, repository: ModelRepository) -> dict:
    """The ingress also hosts the models placed in it; their snapshots are its `user_config`, as for a deployment."""
    return {
        **_snapshots(hosted(repository).get(None, [])),
        "num_replicas": settings.ingress_replicas,
        "max_ongoing_requests": settings.ingress_max_ongoing_requests,
        "ray_actor_options": {"num_cpus": settings.ingress_num_cpus},
        "graceful_shutdown_timeout_s": 10.0,
    }


def grpc_message_limit(settings: ServerSettings) -> int:
    """Largest gRPC message the servers accept: twice the request limit, so that between the two the ingress answers
    with the limit it enforces (INVALID_ARGUMENT, naming it) and only far larger messages are cut unread."""
    return min(2 * settings.max_request_bytes, 2**31 - 1)


def build_serve_config(settings: ServerSettings, repository_path: str | None = None) -> dict:
    """The Serve deploy schema as a dict; `repository_path` is where replicas will find the repository
    (the local folder for `make serve`, the volume mount in Kubernetes)."""
    repository = ModelRepository(settings.repository)
    target = repository_path or str(Path(settings.repository).resolve())
    deployments = [{"name": INGRESS_NAME, **ingress_options(settings, repository)}]
    for name, versions in hosted(repository).items():
        if name is not None:
            deployments.append({"name": name, **deployment_options(versions, settings)})
    http_options = {"host": settings.http_host, "port": settings.http_port, "request_timeout_s": settings.request_timeout_s}
    if settings.tls_certfile or settings.tls_keyfile:
        if not (settings.tls_certfile and settings.tls_keyfile):
            raise ValueError("HTTPS needs both STREAMSERVE_TLS_CERTFILE and STREAMSERVE_TLS_KEYFILE")
        http_options |= {"ssl_certfile": settings.tls_certfile, "ssl_keyfile": settings.tls_keyfile}
    return {
        "proxy_location": "EveryNode",
        "http_options": http_options,
        "grpc_options": {"port": settings.grpc_port, "grpc_servicer_functions": [SERVICER_FUNCTION], "request_timeout_s": settings.request_timeout_s},
        "logging_config": {"enable_access_log": False, "log_level": "INFO"},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": "serve.app:build_app",
                # The served versions are listed so that adding or removing one changes the application itself
                # (`launcher.redeploy` refuses that live); build_app reads them from the repository again.
                "args": {"repository": target, "models": [f"{s.name}/{v}" for s in repository for v in s.versions]},
                "deployments": deployments,
            }
        ],
    }


def write_serve_config(path: str | Path, settings: ServerSettings, repository_path: str | None = None) -> dict:
    config = build_serve_config(settings, repository_path)
    Path(path).write_text(
        "# Generated by `python -m serve config` from the model repository; edit config.pbtxt, not this file.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return config
