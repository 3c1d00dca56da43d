"""The embedded single-node mode: start Ray on loopback, deploy the generated Serve config, wait. With
`STREAMSERVE_RAY_ADDRESS` (`--ray-address`) the same deployment goes onto a running Ray cluster instead.

This is what `serve run serve_config.yaml` does, plus the settings a single machine needs: Ray held to
127.0.0.1, no dashboard, a fixed metrics port, and gRPC messages capped. Deploying a config file
without the dashboard's REST API takes Serve's own `serve_start` + `deploy_apps`, as `serve run` uses.

SIGHUP (`python -m serve reload`) regenerates the config and redeploys it when it changes only what Serve
updates without restarting the ingress: a model's data snapshot (its `user_config`) or its deployment options.
The outcome is written to `<temp_dir>/reload.json` for the command that asked.
"""
import json
import os
import random
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from .serve_config import INGRESS_NAME, deployment_name, grpc_message_limit
from .private_files import UnsafeFile, private_dir, write_private
from .settings import ServerSettings


QUIET_PORTS = range(20000, 32768)
"""Above Ray's worker ports (10002-19999) and below the kernel's ephemeral range (32768 and up), from which Ray's own
processes take the local ports of their connections while the server starts: a port chosen there (bind to port 0)
can be gone by the time the server binds it (Serve's proxy once failed so in CI)."""


def free_loopback_port() -> int:
    """A port in QUIET_PORTS free on loopback now."""
    while True:
        port = random.randrange(QUIET_PORTS.start, QUIET_PORTS.stop)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def public_ports(settings: ServerSettings, grpc_port: int) -> dict[int, str]:
    """Every port this machine's server will listen on, with what listens there: with direct ingress, replica i of
    `ingress_replicas` takes http_port + i, and every replica serves gRPC on grpc_port (serve/grpc_ingress.py)."""
    replicas = range(settings.ingress_replicas if settings.direct_ingress else 1)
    ports = {settings.metrics_port: "metrics", grpc_port: "gRPC"}
    ports |= {settings.http_port + i: f"HTTP (ingress replica {i + 1})" for i in replicas}
    if grpc_port != settings.grpc_port:
        ports[settings.grpc_port] = "gRPC (TLS terminator)"
    return ports


def check_ports_free(settings: ServerSettings, grpc_port: int) -> None:
    """Exits naming the port when one is taken. Serve itself would retry an ingress replica whose port is taken for
    ever, and the server would wait for it in silence."""
    for port, role in public_ports(settings, grpc_port).items():
        on_http_host = role.startswith("HTTP") or role == "gRPC (TLS terminator)" or (role == "gRPC" and settings.direct_ingress)
        host = settings.http_host if on_http_host else ""
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: a closed connection's TIME_WAIT is no conflict
            try:
                s.bind((host, port))
            except OSError as e:
                sys.exit(f"error: port {port}, for {role}, is not free ({e.strerror}); choose other ports "
                         f"(--http-port, --grpc-port, --metrics-port)")


def serve_grpc_port(settings: ServerSettings) -> int:
    """Where the gRPC server listens (the ingress replicas' own with direct ingress, else Serve's proxy): the public
    port, or, for Serve's proxy in TLS mode, a private one behind the TLS terminator (the ingress's own server speaks
    TLS itself)."""
    if not settings.tls_certfile or settings.direct_ingress:
        return settings.grpc_port
    if not settings.auth_token:
        sys.exit("error: TLS mode needs STREAMSERVE_AUTH_TOKEN (behind the TLS terminator every gRPC peer looks local)")
    return free_loopback_port()


def grpc_host(settings: ServerSettings) -> str:
    """Where the public gRPC port binds: where HTTP binds (loopback unless exposing the server is chosen) when the
    ingress serves gRPC itself (direct ingress, the default) or a TLS terminator stands in front; every interface for
    Serve's gRPC proxy in plaintext, which has no host option."""
    host = settings.http_host if (settings.direct_ingress or settings.tls_certfile) else "::"
    return f"[{host}]" if ":" in host else host


METRICS_REPORT_INTERVAL_MS = 5000
"""How often every Ray process hands its metrics to the node's metrics agent, which the Prometheus endpoint serves
(Ray's `RAY_metrics_report_interval_ms`). Each report is work in the C++ core of every process and in the agent: an
idle server with the full repository used 0.18-0.20 of a core reporting every 2 s, 0.13-0.17 every 5 s (the metrics
agent itself 0.034-0.038 and 0.021-0.024; loadtest/BENCH.md).
5 s still refreshes every series more than once per Prometheus scrape at its default 15 s."""

ALLOCATOR_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(20 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(32 * 2**20)}


def prepare_environment(settings: ServerSettings, grpc_port: int | None = None) -> None:
    """Environment Ray reads at start; replicas inherit it (that is how they get the auth token).
    `grpc_port` is where the gRPC server listens (`serve_grpc_port`)."""
    grpc_port = grpc_port or settings.grpc_port
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # makes Ray bind 127.0.0.1
    # Each replica also opens an inter-deployment gRPC server on every interface; Ray's token auth is what
    # keeps other hosts off it, so it stays on (Ray generates the token on first start).
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_metrics_report_interval_ms", str(METRICS_REPORT_INTERVAL_MS))
    # glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB), after which a large request's
    # buffers come from the heap and stay resident when freed: one 60 MB request left a process ~400 MB larger.
    # A fixed threshold gives every block of 20 MiB or more back to the system when it is freed (loadtest/working_set.py).
    # Not 32 MiB: a thread's arena grows in heaps of 64 MiB, only two blocks of over a third of one fit in each, and in
    # an ingress that had served other models a 64-member FNO ensemble (26 MB temporaries) grew it 71-462 MB per request
    # against 245 in a fresh process (50-116 at 20 MiB, four passes of every model's largest request). The cost: each
    # mmapped block is zero-filled page by page when touched; in-process the FNO at batch 8 of 64² ran 0-16 % slower
    # and its 64-member ensemble of 80² 5-34 % (three pairs), and at 4 MiB a 32-member Koopman ensemble, whose
    # per-step temporaries are a few MiB each, ran 2.5x slower.
    # A fixed mmap threshold also fixes the trim threshold at its 128 KiB default: the heap gave back every few MiB
    # freed at its top and faulted it in again on the next request (a served 64² Koopman step took ~5,000 page faults
    # and ran 2-3x slower than in-process). Up to 32 MiB free at the top of each heap is now kept for reuse.
    for key, value in ALLOCATOR_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    # Serve's controller reconciles every 0.1 s by default: a fifth of a core on this machine with nothing to do
    # (0.026 at 0.5 s, 0.020 at 1 s). Once a second still reacts to a lost replica or an autoscaling decision well
    # within their own delays (a 10 s health-check period, upscale and downscale delays of seconds).
    os.environ.setdefault("RAY_SERVE_CONTROL_LOOP_INTERVAL_S", "1.0")
    # Ray's log monitor, which prints every replica's output on this console, globs the session's log folder for new
    # files every 0.1 s while it holds fewer than a thousand: 0.014-0.015 of a core on an idle server. Looking for new
    # files once a second costs 0.006 (loadtest/BENCH.md); lines of the files it knows still go out within 0.1 s, and a
    # new replica's file is read from its first line once found.
    os.environ.setdefault("RAY_LOG_MONITOR_MANY_FILES_THRESHOLD", "0")
    os.environ.setdefault("LOG_NAME_UPDATE_INTERVAL_S", "1")
    message_limit = str(grpc_message_limit(settings))  # for Serve's gRPC proxy, where direct ingress is off
    os.environ.setdefault("RAY_SERVE_GRPC_MAX_MESSAGE_SIZE", message_limit)
    os.environ.setdefault("RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH", message_limit)  # ingress -> model calls
    for field in ("auth_token", "max_request_bytes", "max_response_bytes", "tls_certfile", "tls_keyfile"):
        value = getattr(settings, field)
        if value is not None:
            os.environ[f"STREAMSERVE_{field.upper()}"] = str(value)
    if not settings.direct_ingress:
        return
    # Serve's throughput-optimised mode: handle calls over direct gRPC, user code on the replica's loop,
    # and "direct ingress": the ingress replica itself listens on the HTTP and gRPC ports, no proxy hop.
    # On this 2-core machine that is ~4x the throughput of the proxy path (loadtest/BENCH.md).
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    # Serve keeps a stopping ingress listening 30 s for load balancers to notice; none sits in front here.
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    # Serve holds a dead replica's port out of use for 150 s so that HAProxy workers in front drop it first; none sit
    # in front here, and the public ports are the only ones the ingress may take: a replaced ingress listens at once.
    os.environ.setdefault("RAY_SERVE_PORT_QUARANTINE_S", "0")
    http_ports = range(settings.http_port, settings.http_port + settings.ingress_replicas)
    if grpc_port in http_ports:
        sys.exit(f"error: {settings.ingress_replicas} ingress replicas listen on HTTP ports {http_ports.start}-{http_ports[-1]}, "
                 f"which include the gRPC port {grpc_port}; set STREAMSERVE_GRPC_PORT to {http_ports[-1] + 1} or above "
                 f"(or STREAMSERVE_HTTP_PORT below {grpc_port - settings.ingress_replicas + 1})")
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", str(settings.http_port))
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT", str(settings.http_port + settings.ingress_replicas))


def run(settings: ServerSettings, load_config, ready_file: str | None = None) -> None:
    """`load_config()` gives the Serve config (generated from the repository, or read from a file); it is
    called again on each reload."""
    grpc_port = serve_grpc_port(settings)
    try:
        private_dir(settings.temp_dir)  # Ray's session files and our control files
    except UnsafeFile as e:
        sys.exit(f"error: {e}")
    prepare_environment(settings, grpc_port)
    if not settings.ray_address:  # on a cluster the ingress listens on other nodes
        check_ports_free(settings, grpc_port)
    import ray
    from ray import serve
    from ray.serve._private import api as serve_api
    from ray.serve.config import gRPCOptions
    from ray.serve.schema import ServeDeploySchema

    # With direct ingress the ingress replicas listen on the public ports themselves: Serve's HTTP server, and our
    # gRPC server in place of Serve's (serve/grpc_ingress.py; no servicer functions turn Serve's off). Serve still
    # reserves the proxy's configured ports, so those move to free loopback ports nobody uses (the same on every reload).
    proxy_ports = (free_loopback_port(), free_loopback_port()) if settings.direct_ingress else None
    grpc_listen = f"{grpc_host(settings)}:{grpc_port}"

    def deployable(config: dict) -> dict:
        if proxy_ports:
            return config | {
                "proxy_location": "Disabled",
                "http_options": config["http_options"] | {"port": proxy_ports[0]},
                "grpc_options": config["grpc_options"] | {"port": proxy_ports[1], "grpc_servicer_functions": []},
                "applications": [app | {"args": app.get("args", {}) | {"grpc_listen": grpc_listen}} for app in config["applications"]],
            }
        if grpc_port != settings.grpc_port:
            return config | {"grpc_options": config["grpc_options"] | {"port": grpc_port}}
        return config

    config = deployable(load_config())
    schema = ServeDeploySchema.model_validate(config)
    started = time.perf_counter()
    if settings.ray_address:
        # A cluster of its own: its autoscaler adds the nodes the minimum replicas need, so no capacity check here.
        ray.init(address=settings.ray_address, namespace="serve", logging_level="WARNING", log_to_driver=True)
    else:
        ray.init(
            include_dashboard=False,
            namespace="serve",
            _metrics_export_port=settings.metrics_port,
            _temp_dir=settings.temp_dir,
            logging_level="WARNING",
            log_to_driver=True,
        )
        _check_capacity(config, ray.cluster_resources())
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(),
        grpc_options=gRPCOptions(**schema.grpc_options.model_dump()),
        proxy_location=schema.proxy_location,
        global_logging_config=schema.logging_config,
    )
    client.deploy_apps(schema, _blocking=False)
    _wait_running(serve, timeout_s=600)
    terminator = None
    if grpc_port != settings.grpc_port:
        from .tls import TlsTerminator

        terminator = TlsTerminator(settings.http_host, settings.grpc_port, grpc_port, settings.tls_certfile, settings.tls_keyfile).start()
    stop, reload = threading.Event(), threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (stop.set(), reload.set()))
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    pid_file, reloads = Path(settings.temp_dir) / "streamserve.pid", 0
    write_private(pid_file, f"{os.getpid()}\n".encode())
    print(banner(settings, time.perf_counter() - started), flush=True)
    if ready_file:
        Path(ready_file).write_text("ready\n")

    while not stop.is_set():
        reload.wait()
        reload.clear()
        if stop.is_set():
            break
        reloads += 1
        try:
            wanted = deployable(load_config())
            ok, message = redeploy(client, serve, config, wanted)
        except Exception as e:  # e.g. a repository that no longer loads: the deployed config keeps serving
            ok, message = False, f"reload failed, still serving the previous config: {e}"
        if ok:
            config = wanted
        print(message, flush=True)
        _write_json(Path(settings.temp_dir) / "reload.json", {"count": reloads, "ok": ok, "message": message})
    pid_file.unlink(missing_ok=True)
    print("shutting down ...", flush=True)
    if terminator:
        terminator.stop()
    serve.shutdown()
    ray.shutdown()
    print("stopped", flush=True)


def redeploy(client, serve, deployed: dict, config: dict) -> tuple[bool, str]:
    """Deploy `config` if it differs from `deployed` only in what Serve changes without rebuilding the application:
    per-deployment options, among them `user_config` (a data snapshot, swapped in place by the replicas). A model or
    version added or removed rebuilds the application, which restarts the ingress: that needs a restart."""
    def deployments(c):
        return {d["name"]: d for app in c["applications"] for d in app["deployments"]}

    def apps(c):
        return [{k: v for k, v in app.items() if k != "deployments"} for app in c["applications"]]

    def served(c):  # every served version, whether it runs in the ingress or in a deployment of its own
        return {deployment_name(*key.rsplit("/", 1)) for app in c["applications"] for key in app["args"].get("models", [])}

    before, after = deployments(deployed), deployments(config)
    if apps(deployed) != apps(config) or set(before) != set(after):
        added = sorted((set(after) - set(before)) | (served(config) - served(deployed)))
        removed = sorted((set(before) - set(after)) | (served(deployed) - served(config)))
        return False, (f"reload refused: the repository's models or versions changed (added {added}, removed {removed}); "
                       "restart the server to serve them, or load a model that runs in the ingress while serving (POST "
                       "v2/repository/models/<model>/load). Only snapshots and deployment options reload in place.")
    changed = sorted(name for name in after if after[name] != before[name])
    if INGRESS_NAME in changed:  # name the models hosted in the ingress whose snapshot changed
        snapshots = [(after[INGRESS_NAME].get("user_config") or {}).get("snapshots", {}),
                     (before[INGRESS_NAME].get("user_config") or {}).get("snapshots", {})]
        hosted = [deployment_name(*key.rsplit("/", 1)) for key in sorted(snapshots[0]) if snapshots[0][key] != snapshots[1].get(key)]
        if hosted and {k: v for k, v in after[INGRESS_NAME].items() if k != "user_config"} == {
            k: v for k, v in before[INGRESS_NAME].items() if k != "user_config"
        }:
            changed = sorted(set(changed) - {INGRESS_NAME} | set(hosted))
    if not changed:
        return True, "reload: nothing changed"
    started = time.perf_counter()
    from ray.serve.schema import ServeDeploySchema

    client.deploy_apps(ServeDeploySchema.model_validate(config), _blocking=False)
    _wait_running(serve, timeout_s=600, exit_on_failure=False)
    return True, f"reloaded {', '.join(changed)} in {time.perf_counter() - started:.1f}s"


def _write_json(path: Path, payload: dict) -> None:
    write_private(path, json.dumps(payload).encode())


def _check_capacity(config: dict, resources: dict) -> None:
    """Fail at once, with the remedy, when the minimum replicas cannot all be placed: Serve would otherwise
    wait forever for a replica that cannot be scheduled, and the application never starts."""
    needed = {"CPU": 0.0, "GPU": 0.0}
    for app in config["applications"]:
        for deployment in app["deployments"]:
            count = deployment.get("autoscaling_config", {}).get("min_replicas", deployment.get("num_replicas", 1))
            options = deployment.get("ray_actor_options", {})
            needed["CPU"] += count * options.get("num_cpus", 1.0)
            needed["GPU"] += count * options.get("num_gpus", 0.0)
    for resource, amount in needed.items():
        if amount > resources.get(resource, 0.0) + 1e-9:
            sys.exit(
                f"error: the model repository needs {amount:g} {resource} reserved for its minimum replicas, this "
                f"machine offers {resources.get(resource, 0.0):g}; lower STREAMSERVE_MODEL_NUM_CPUS (or num_gpus in "
                "config.pbtxt), serve fewer models, or add machines"
            )


def _wait_running(serve, timeout_s: float, exit_on_failure: bool = True) -> None:
    fail = sys.exit if exit_on_failure else _raise
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        apps = serve.status().applications
        statuses = {name: str(app.status) for name, app in apps.items()}
        if apps and all(s.endswith("RUNNING") for s in statuses.values()):
            return
        failed = {n: apps[n].message for n, s in statuses.items() if s.endswith(("DEPLOY_FAILED", "UNHEALTHY"))}
        if failed:
            fail(f"deployment failed: {failed}")
        time.sleep(0.5)
    fail(f"applications not running after {timeout_s:.0f}s: {serve.status().applications}")


def _raise(message: str):
    raise RuntimeError(message)


def banner(settings: ServerSettings, seconds: float) -> str:
    auth = "bearer token required" if settings.auth_token else "no token: other hosts are refused"
    scheme, tls = ("https", ", TLS") if settings.tls_certfile else ("http", "")
    return "\n".join(
        [
            f"streamserve ready in {seconds:.1f}s (Ctrl-C stops it)",
            f"  HTTP     {scheme}://{settings.http_host}:{settings.http_port}/v2  (KServe v2 REST)",
            f"  gRPC     {grpc_host(settings)}:{settings.grpc_port}  inference.GRPCInferenceService ({auth}{tls})",
            f"  metrics  http://127.0.0.1:{settings.metrics_port}/metrics  (Prometheus)",
            f"  models   {Path(settings.repository).resolve()}",
        ]
    )
