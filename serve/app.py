"""The Ray Serve application: one ingress (HTTP + gRPC adapters over the data plane) that also runs the
models placed in it, and a deployment for the model versions that need one, alone or pooled (`serve.serve_config`).
`serve.app:build_app` is the import path in the Serve config.
"""
import time
from pathlib import Path

from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from .admission import admit
from .serve_config import INGRESS_NAME, deployment_options, grpc_message_limit, hosted, ingress_options
from .dataplane import DataPlane
from .errors import ModelNotReady, Overloaded
from .grpc_ingress import start_grpc_server
from .http_ingress import DirectIngressGuard, serve_directly
from .grpc_servicer import GRPCInferenceServicer
from .model_control import ModelControl
from .replica import ModelPool
from .repository import ModelRepository
from . import rest
from .settings import ServerSettings
from .shared_memory import SharedMemoryRegistry


def _rebindable_http_port() -> None:
    """Ray Serve 2.60 binds the direct-ingress HTTP socket without SO_REUSEADDR. When an ingress replica dies with
    HTTP clients connected, the kernel keeps its side of those connections in TIME_WAIT for a minute, the replacement's
    bind fails, and Serve then blocks that port for good: HTTP would never come back on the public port. Binding with
    Serve's own reuse option (SO_REUSEADDR and SO_REUSEPORT) lets the replacement listen at once; each ingress replica
    still gets its own port from Serve. `tests/serve/test_resilience_server.py` kills the ingress under HTTP load."""
    from ray.serve._private import replica

    original = replica.start_asgi_http_server
    if getattr(original, "rebindable", False):
        return

    async def start_asgi_http_server(app, http_options, *, event_loop, enable_so_reuseport=False):
        return await original(app, http_options, event_loop=event_loop, enable_so_reuseport=True)

    start_asgi_http_server.rebindable = True
    replica.start_asgi_http_server = start_asgi_http_server


_rebindable_http_port()

# Calls in flight on a stopping ingress's gRPC server get this long to finish, within the ingress's
# graceful_shutdown_timeout_s (serve_config.py), after Serve has drained the HTTP requests it tracks.
GRPC_DRAIN_S = 5.0

# A replica that died or is restarting: the request may be retried once Serve has replaced it.
_REPLICA_LOST = (RayActorError, ActorUnavailableError, ReplicaUnavailableError, DeploymentUnavailableError)


class RayModelBackend:
    """A model version reached through its deployment handle. A full queue becomes a clean 503
    RESOURCE_EXHAUSTED; a replica lost mid-request a 503 UNAVAILABLE naming what happened (for a stream,
    after the responses already sent, so a client never mistakes a cut rollout for a finished one)."""

    def __init__(self, handle: DeploymentHandle, key: str):
        self.handle, self.key = handle, key
        self.name = key.rsplit("/", 1)[0]
        self.deployment = handle.deployment_name

    async def infer(self, inputs, timeout_s: float | None = None):
        try:
            return await self.handle.infer.remote(self.key, inputs, timeout_s)
        except BackPressureError:
            raise Overloaded(f"model {self.name!r} is at capacity; retry later") from None
        except _REPLICA_LOST as e:
            raise ModelNotReady(f"model {self.name!r}: the replica serving this request stopped ({type(e).__name__}); retry") from None

    async def stream(self, inputs):
        responses = self.handle.options(stream=True).stream.remote(self.key, inputs)
        sent = 0
        try:
            async for outputs in responses:
                sent += 1
                yield outputs
        except BackPressureError:
            raise Overloaded(f"model {self.name!r} is at capacity; retry later") from None
        except _REPLICA_LOST as e:
            raise ModelNotReady(
                f"model {self.name!r}: the replica stopped after {sent} response(s) ({type(e).__name__}); the stream is "
                "incomplete, retry"
            ) from None
        finally:
            responses.cancel()  # a consumer that stopped early (client gone) stops the replica's rollout

    async def ready(self):
        return await self.handle.ready.remote()

    async def publish_statistics(self):
        """One replica of the deployment publishes its statistics now (serve/statistics.py)."""
        await self.handle.publish_statistics.remote()


@serve.deployment(name=INGRESS_NAME)
@serve.ingress(rest.app)
class Ingress(GRPCInferenceServicer):
    """Runs the `local` model versions ("name/version") itself, each with its own batch queue; `models` maps the
    others to the handle of the deployment that runs them."""

    async def __init__(
        self, repository: str, models: dict[str, DeploymentHandle], refused: dict[str, str] | None = None,
        local: list[str] | tuple = (), control: dict | None = None, grpc_server: dict | None = None,
        direct_http: dict | None = None,
    ):
        settings = ServerSettings()  # the token and limits come from the environment, never the config file
        started_ns = time.time_ns()
        self.pool = ModelPool(repository, local, in_ingress=True)
        backends = {_split(key): RayModelBackend(handle, key) for key, handle in models.items()}
        backends |= {_split(key): worker for key, worker in self.pool.workers.items()}
        refusals = {_split(key): reason for key, reason in (refused or {}).items()}
        names = {key.rsplit("/", 1)[0] for key in [*models, *local, *(refused or {})]}  # not folders added since
        self.plane = DataPlane(
            ModelRepository(repository, names), backends, settings.auth_token, settings.max_request_bytes, refusals,
            settings.max_response_bytes,
        )
        self.plane.grpc_loopback_only = bool(settings.tls_certfile) and grpc_server is None  # behind the terminator
        self.plane.shared_memory = SharedMemoryRegistry(settings.shared_memory_max_regions, settings.shared_memory_max_bytes)
        rest.attach(self.plane)
        if control is not None:  # load / unload while serving (serve/model_control.py)
            self.plane.control = ModelControl(self.plane, self.pool, **control, started_ns=started_ns)
            self.plane.control.start()
        # With direct ingress the replica serves gRPC itself (serve/grpc_ingress.py) and HTTP through Serve's server
        # without Serve's per-request wrapper (serve/http_ingress.py); otherwise Serve's proxies call in.
        self.grpc_server = await start_grpc_server(self, **grpc_server) if grpc_server else None
        if direct_http:  # Serve's HTTP server, started after this constructor, serves the app without its wrapper
            serve_directly(DirectIngressGuard(rest.served_app, **direct_http))

    async def __del__(self):
        """Serve's graceful shutdown: calls in flight on our gRPC server finish (Serve drains only the calls it saw)."""
        if self.grpc_server is not None:
            await self.grpc_server.stop(GRPC_DRAIN_S)

    async def reconfigure(self, user_config: dict) -> None:
        await self.pool.reconfigure(user_config)


def _split(key: str) -> tuple[str, int]:
    name, version = key.rsplit("/", 1)
    return name, int(version)


ModelDeployment = serve.deployment(ModelPool)


def build_app(args: dict) -> serve.Application:
    """Application builder: `args` is the Serve config's `args` (at least `repository`). `grpc_listen`, given by the
    launcher's direct ingress, is where the ingress replicas serve gRPC themselves (serve/grpc_ingress.py); their HTTP
    then skips Serve's per-request wrapper too (serve/http_ingress.py)."""
    settings = ServerSettings(**{k: v for k, v in args.items() if k in ServerSettings.model_fields})
    repository = ModelRepository(settings.repository)
    root = str(Path(settings.repository).resolve())
    refused = admit(repository, settings.admission_check, settings.temp_dir)
    handles, local = {}, []
    for name, versions in hosted(repository).items():
        keys = [f"{spec.name}/{version}" for spec, version in versions if (spec.name, version) not in refused]
        if name is None:
            local = keys
        elif keys:
            handle = ModelDeployment.options(name=name, **deployment_options(versions, settings)).bind(root, keys)
            handles |= {key: handle for key in keys}
    control = {
        "admission_check": settings.admission_check, "temp_dir": settings.temp_dir,
        "timeout_s": settings.model_load_timeout_s, "grace_s": settings.request_timeout_s,
    } if settings.model_control else None
    grpc_listen = args.get("grpc_listen")
    grpc_server = {
        "listen": grpc_listen, "timeout_s": settings.request_timeout_s,
        "max_concurrent_rpcs": settings.ingress_max_ongoing_requests, "max_message_bytes": grpc_message_limit(settings),
        "tls": (settings.tls_certfile, settings.tls_keyfile) if settings.tls_certfile else None,
    } if grpc_listen else None
    direct_http = {"timeout_s": settings.request_timeout_s, "max_ongoing": settings.ingress_max_ongoing_requests} if grpc_listen else None
    return Ingress.options(**ingress_options(settings, repository)).bind(
        root, handles, {f"{n}/{v}": r for (n, v), r in refused.items()}, local, control, grpc_server, direct_http
    )


__all__ = ["build_app", "Ingress", "ModelDeployment"]
