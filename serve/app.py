"""The Ray Serve application: one ingress (HTTP + gRPC adapters over the data plane) that also runs the
models placed in it, and one deployment per model version that needs its own (`serve.config.placement`).
`serve.app:build_app` is the import path in the Serve config.
"""
from pathlib import Path

from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from .admission import admit
from .config import INGRESS, INGRESS_NAME, dedicated_versions, deployment_name, deployment_options, ingress_options, placement
from .dataplane import DataPlane
from .errors import ModelNotReady, Overloaded
from .grpc_servicer import GRPCInferenceServicer
from .model import ModelWorker
from .repository import ModelRepository
from . import rest
from .settings import ServerSettings


# A replica that died or is restarting: the request may be retried once Serve has replaced it.
_REPLICA_LOST = (RayActorError, ActorUnavailableError, ReplicaUnavailableError, DeploymentUnavailableError)


class RayModelBackend:
    """A model version reached through its deployment handle. A full queue becomes a clean 503
    RESOURCE_EXHAUSTED; a replica lost mid-request a 503 UNAVAILABLE naming what happened (for a stream,
    after the responses already sent, so a client never mistakes a cut rollout for a finished one)."""

    def __init__(self, handle: DeploymentHandle, name: str):
        self.handle, self.name = handle, name

    async def infer(self, inputs, timeout_s: float | None = None):
        try:
            return await self.handle.infer.remote(inputs, timeout_s)
        except BackPressureError:
            raise Overloaded(f"model {self.name!r} is at capacity; retry later") from None
        except _REPLICA_LOST as e:
            raise ModelNotReady(f"model {self.name!r}: the replica serving this request stopped ({type(e).__name__}); retry") from None

    async def stream(self, inputs):
        responses = self.handle.options(stream=True).stream.remote(inputs)
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


@serve.deployment(name=INGRESS_NAME)
@serve.ingress(rest.app)
class Ingress(GRPCInferenceServicer):
    """`local` model versions ("name/version") run here, each with its own batch queue; `models` are the
    handles of the dedicated deployments."""

    def __init__(
        self, repository: str, models: dict[str, DeploymentHandle], refused: dict[str, str] | None = None,
        local: list[str] | tuple = (),
    ):
        settings = ServerSettings()  # the token and limits come from the environment, never the config file
        self.local: dict[str, ModelWorker] = {}
        backends = {}
        for key, handle in models.items():
            name, version = _split(key)
            backends[(name, version)] = RayModelBackend(handle, name)
        model_repository = ModelRepository(repository)
        for key in local:
            name, version = _split(key)
            worker = ModelWorker(repository, name, version, instance_count=model_repository.get(name).instance_count)
            self.local[key] = backends[(name, version)] = worker
        refusals = {_split(key): reason for key, reason in (refused or {}).items()}
        self.plane = DataPlane(model_repository, backends, settings.auth_token, settings.max_request_bytes, refusals)
        rest.attach(self.plane)

    async def reconfigure(self, user_config: dict) -> None:
        """The data snapshots of the models hosted here (`ingress_options`): each is swapped in place."""
        for key, snapshot in (user_config.get("snapshots") or {}).items():
            if key in self.local:
                await self.local[key].reconfigure({"snapshot": snapshot})


def _split(key: str) -> tuple[str, int]:
    name, version = key.rsplit("/", 1)
    return name, int(version)


ModelDeployment = serve.deployment(ModelWorker)


def build_app(args: dict) -> serve.Application:
    """Application builder: `args` is the Serve config's `args` (at least `repository`)."""
    settings = ServerSettings(**{k: v for k, v in args.items() if k in ServerSettings.model_fields})
    repository = ModelRepository(settings.repository)
    root = str(Path(settings.repository).resolve())
    refused = admit(repository, settings.admission_check, settings.temp_dir)
    models = {}
    for spec, version in dedicated_versions(repository):
        if (spec.name, version) not in refused:
            models[f"{spec.name}/{version}"] = ModelDeployment.options(
                name=deployment_name(spec.name, version), **deployment_options(spec, settings)
            ).bind(root, spec.name, version)
    local = [
        f"{spec.name}/{version}" for spec in repository if placement(spec)[0] == INGRESS
        for version in spec.versions if (spec.name, version) not in refused
    ]
    return Ingress.options(**ingress_options(settings, repository)).bind(
        root, models, {f"{n}/{v}": r for (n, v), r in refused.items()}, local
    )


__all__ = ["build_app", "Ingress", "ModelDeployment"]
