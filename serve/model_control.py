"""Triton's model repository extension: load, reload and unload models while serving, and an index of every folder.

    POST /v2/repository/index                  gRPC RepositoryIndex          every model folder, READY or UNAVAILABLE
    POST /v2/repository/models/{m}/load        gRPC RepositoryModelLoad      (re)load m from the repository directory
    POST /v2/repository/models/{m}/unload      gRPC RepositoryModelUnload    stop serving m

**Load** reads the model's folder again, exactly as startup does (`repository.load_model`: the config against Triton's
schema, typed parameters, the handler), runs the admission check when one is configured (`serve/admission.py`), and
starts serving it. A model placed in the ingress (ONNX / TorchScript on the CPU, a handler with placement "ingress":
`serve_config.placement`) gets a `ModelWorker` per served version in the ingress's own pool, built in a thread while
every other model keeps serving, then swapped in at once: a reload picks up a changed config.pbtxt, model file or set of
version folders, requests already in the old worker finish there, and new ones reach the new worker. The load is
all or nothing: a folder that does not validate (400 naming the file and the field), a version refused at admission
(400 with the verdict), a runtime that fails to build, or a load past `STREAMSERVE_MODEL_LOAD_TIMEOUT_S` (503; the
build is left to finish in its thread and dropped) changes nothing, the model serves as before, and one not served is
listed UNAVAILABLE with the reason. Unlike startup, which serves a model's admitted versions beside its refused ones,
a load with a refused version serves none of it.

A model that needs a deployment (a GPU, a dedicated or pooled handler) cannot get one without rebuilding the Serve
application, which restarts the ingress: a load of such a model is refused with that message unless its deployment is
already running, and then it only resumes routing to it (after an unload) when its config and versions are those the
deployment started with. Its replicas read their files at start; a changed config is refused, a changed file is not
seen, until a restart.

**Unload** takes the model out of service at once: its versions stay listed (UNAVAILABLE, "unloaded at ..."), requests
to it answer 503 / UNAVAILABLE naming the unload, as versions refused at admission do; `ModelWorker.retire` lets the
requests already inside finish (within `request_timeout_s`), then fails whatever is left with UNAVAILABLE and stops
its batch queue, and the worker's runtime goes with the last reference. A model in a deployment of its own is only no
longer routed to: its replica stays until the server restarts. The metadata and config routes keep answering.

**Config override.** Triton's `config` load parameter (ModelConfig JSON) replaces the fields it sets of the folder's
config.pbtxt, for how the model is batched, scaled and versioned only (`repository.OVERRIDABLE`: max_batch_size,
dynamic_batching, instance_group, version_policy), then the result is validated as at startup. It lasts until the next
load or a restart; the folder is not written. Any other field is refused naming it.

**What is refused.** Triton's `file:<version>/<name>` load parameters (model files uploaded in the request): models come
only from the repository directory, which the server only reads; through the API a caller can at most unload a model,
load what that directory already holds, or change how it is batched. Model names
are folder names (no path separators, not hidden). The calls need the bearer token when one is set; without one only
loopback callers may make them, over HTTP and gRPC alike (`DataPlane.authenticate`): with `STREAMSERVE_HTTP_HOST=0.0.0.0`
and no token, other hosts get 401 for these calls as for every other. `STREAMSERVE_MODEL_CONTROL=0` turns load and
unload off (UNIMPLEMENTED); the index is served either way.

**Several ingress replicas.** A call reaches one replica, which applies it at once and answers. The desired state is
then shared through Ray's GCS key-value store (the store `serve/statistics.py` uses): one record per call,
`models/<model>/<generation>`, the generation being the call's time in nanoseconds. Every ingress replica polls the
records every `POLL_S` (0.5 s; one call listing the keys, the records read only when those changed) and applies, per
model, the newest one it has not applied yet (a load, with the same checks, or an unload): the other replicas follow
within half a second plus the load's own time (0.3 and 0.5 s measured by tests/serve/test_model_control_replicas_server.py),
and a client that alternates replicas may see the old state meanwhile. When two replicas take conflicting calls for one
model at once, the later call wins everywhere (the replicas' clocks agree: one machine, or NTP). Older records of a
model are deleted by the poll. A replica Serve starts later (a replacement, or autoscaling) reads its models' files at
start and applies the records newer than that. Records live as long as the Ray cluster: with `make serve` a restart
starts from the repository again. A load that fails on the replica that got it is answered with the error and not
shared; one that fails on another replica (its files changed in between) leaves that replica as it was, with the
reason in its index.

Limits: after loading a folder added since start, `python -m serve reload` refuses to reload snapshots (the
repository's models differ from the deployed config) until a restart. A sequence open on an unloaded model keeps its
state in the data plane until its idle timeout: its requests are refused while the model is unloaded and continue
after a load.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

from .admission import admit
from .errors import InferenceError, InvalidInput, ModelNotFound, ModelNotReady, RepositoryError
from .replica import ModelPool, ModelWorker
from .repository import ModelSpec, load_model, model_folders, override_config
from .serve_config import deployment_of, placement
from .statistics import STATS, GcsStore

logger = logging.getLogger("ray.serve")

POLL_S = 0.5
"""How often each ingress replica reads the desired model states (the lag of the replicas that did not get the call)."""
PREFIX = b"models/"
LOAD_PARAMETERS = ("config",)  # Triton's override of config fields (repository.OVERRIDABLE); never files
UNLOAD_PARAMETERS = ("unload_dependents",)  # tritonclient always sends it; no model here has dependents


class ModelControl:
    """The ingress's side of the extension: `plane` is its DataPlane (whose repository, backends and states this
    changes), `pool` its ModelPool. `started_ns`: when the ingress began reading its models (records older than that
    are already in its files)."""

    def __init__(self, plane, pool: ModelPool, *, admission_check: str | None, temp_dir: str, timeout_s: float,
                 grace_s: float, started_ns: int = 0):
        self.plane, self.pool = plane, pool
        self.root = Path(plane.repository.root)
        self.admission_check, self.temp_dir = admission_check, temp_dir
        self.timeout_s, self.grace_s, self.started_ns = timeout_s, grace_s, started_ns
        self.remote = {key: b for key, b in plane.backends.items() if not isinstance(b, ModelWorker)}
        """(model, version) -> the handle of the deployment running it since start, kept while it is unloaded."""
        self.deployed = {name: plane.repository.models[name] for name, _ in self.remote}
        self.failures: dict[str, str] = {}
        """model not served -> why its last load failed (shown in the index)."""
        self.applied: dict[str, int] = {}
        """model -> the generation of the last call applied here."""
        self.building: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._store: GcsStore | None = None
        self._seen: set[str] | None = None

    # -- the calls ----------------------------------------------------------------------------------------------------
    async def load(self, name: str, parameters: dict | None = None) -> None:
        """Load or reload `name` from the repository directory, with the fields a `config` parameter overrides; raises
        with the reason when nothing changed."""
        _check_request("load", name, parameters, LOAD_PARAMETERS)
        config = (parameters or {}).get("config")
        if config is not None and not isinstance(config, str):
            raise InvalidInput(f"failed to load {name!r}: parameter 'config' must be a string of ModelConfig JSON")
        if not (self.root / name).is_dir():
            raise ModelNotFound(f"failed to load {name!r}: no folder {name!r} in the model repository")
        async with self._lock(name):
            await self._load(name, config)
            await self._publish(name, "loaded", config)

    async def unload(self, name: str, parameters: dict | None = None) -> None:
        """Stop serving `name` (nothing to do for a model not served)."""
        _check_request("unload", name, parameters, UNLOAD_PARAMETERS)
        if name not in self.plane.repository.models and not (self.root / name).is_dir():
            raise ModelNotFound(f"failed to unload {name!r}: no such model in the model repository")
        async with self._lock(name):
            self._unload(name)
            await self._publish(name, "unloaded")

    def index(self) -> list[dict]:
        """The plane's versions (READY, or UNAVAILABLE with the reason) and every other folder of the repository; an
        unloaded model whose folder is gone is left out."""
        entries = [e for e in self.plane.index() if e["name"] not in self.plane.unloaded or (self.root / e["name"]).is_dir()]
        known = set(self.plane.repository.models)
        for name in model_folders(self.root) if self.root.is_dir() else ():
            if name not in known:
                reason = self.failures.get(name) or f"not loaded; POST v2/repository/models/{name}/load serves it"
                entries.append({"name": name, "state": "UNAVAILABLE", "reason": reason})
        return sorted(entries, key=lambda e: (e["name"], int(e.get("version") or 0)))

    # -- applying a state ---------------------------------------------------------------------------------------------
    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _load(self, name: str, config: str | None = None) -> None:
        if name in self.building:
            raise ModelNotReady(f"failed to load {name!r}: an earlier load of it passed the {self.timeout_s:g} s limit and "
                                "is still running; retry once it ends")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            spec, where = await self._in_thread(name, self._read, name, config, deadline=deadline)
            if where is not None:
                self._resume(spec)
                return
            for version in spec.versions:  # the counters exist before the worker is built in a thread
                STATS.get(name, str(version))
            workers = await self._in_thread(name, self._build, spec, deadline=deadline)
        except InferenceError as e:
            self._failed(name, e.message)
            raise
        self._install(spec, workers)

    async def _in_thread(self, name: str, function, *args, deadline: float):
        """`function(*args)` in a worker thread, within the load's time limit. Past it the thread runs on (a runtime
        cannot be interrupted while it builds) and its result is dropped; `building` refuses another load meanwhile."""
        loop = asyncio.get_running_loop()

        def run():
            try:
                return function(*args)
            finally:
                loop.call_soon_threadsafe(self.building.discard, name)

        self.building.add(name)
        running = loop.run_in_executor(None, run)
        running.add_done_callback(lambda done: done.cancelled() or done.exception())  # a result dropped after a timeout
        try:
            # shielded: a timeout must not cancel a job still waiting for a thread (`building` would never clear)
            return await asyncio.wait_for(asyncio.shield(running), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise ModelNotReady(f"failed to load {name!r}: not done after {self.timeout_s:g} s "
                                "(STREAMSERVE_MODEL_LOAD_TIMEOUT_S); the model serves as before") from None

    def _read(self, name: str, config: str | None) -> tuple[ModelSpec, str | None]:
        """The folder validated as at startup (with the fields `config` overrides), and admitted; with the deployment it
        needs (None: the ingress). In a worker thread."""
        try:
            spec = load_model(self.root / name, override_config(config) if config is not None else None)
            where = deployment_of(spec, spec.latest)
        except (RepositoryError, OSError) as e:
            raise InvalidInput(f"failed to load {name!r}: {e}") from None
        if where is not None:
            self._check_deployed(spec, where)
            return spec, where
        refused = admit([spec], self.admission_check, self.temp_dir)
        if refused:
            verdicts = "; ".join(f"version {version}: {reason}" for (_, version), reason in sorted(refused.items()))
            raise InvalidInput(f"failed to load {name!r}: refused at admission: {verdicts}")
        return spec, None

    def _check_deployed(self, spec: ModelSpec, where: str) -> None:
        deployed = self.deployed.get(spec.name)
        if deployed is None or any((spec.name, v) not in self.remote for v in spec.versions):
            raise InvalidInput(
                f"failed to load {spec.name!r}: it needs a deployment of its own ({placement(spec)[1]}), which only a "
                "restart of the server creates; models placed in the ingress (ONNX or TorchScript on the CPU, handlers "
                "with placement 'ingress') load while serving"
            )
        if deployed.config != spec.config or deployed.versions != spec.versions:
            raise InvalidInput(
                f"failed to load {spec.name!r}: it runs in the deployment {where!r}, whose replicas read its folder when "
                "the server started; its config.pbtxt or version folders changed since, which needs a restart"
            )

    def _build(self, spec: ModelSpec) -> dict[int, ModelWorker]:
        """One worker per served version (in a worker thread): the runtime loads here."""
        try:
            return {v: ModelWorker(str(self.root), spec.name, v, spec.instance_count, spec=spec) for v in spec.versions}
        except Exception as e:  # a model file the runtime cannot load is the folder's fault, said as such
            logger.exception("loading %s failed", spec.name)
            raise InvalidInput(f"failed to load {spec.name!r}: {type(e).__name__}: {e}") from None

    def _install(self, spec: ModelSpec, workers: dict[int, ModelWorker]) -> None:
        """Swap the new workers in at once (no await here): a request sees the old model or the new one."""
        plane, name = self.plane, spec.name
        old = plane.repository.models.get(name)
        replaced = [plane.backends.get((name, v)) for v in old.versions] if old else []
        plane.repository.models[name] = spec
        for version in old.versions if old else ():
            if version not in workers:  # a version no longer served: requests that got past the lookup fail cleanly
                plane.backends[(name, version)] = _Unavailable(f"model {name!r} version {version} is no longer served")
                self.pool.workers.pop(f"{name}/{version}", None)
        for version, worker in workers.items():
            plane.backends[(name, version)] = worker
            self.pool.workers[f"{name}/{version}"] = worker
        for key in [key for key in plane.refused if key[0] == name]:
            del plane.refused[key]
        plane.unloaded.pop(name, None)
        self.failures.pop(name, None)
        self._retire(replaced, f"model {name!r} was reloaded while this request waited; retry")
        logger.info("model %s loaded: versions %s", name, list(spec.versions))

    def _resume(self, spec: ModelSpec) -> None:
        """A model in a deployment of its own, unchanged since start: route to it again."""
        for version in spec.versions:
            self.plane.backends[(spec.name, version)] = self.remote[(spec.name, version)]
        self.plane.repository.models[spec.name] = self.deployed[spec.name]
        self.plane.unloaded.pop(spec.name, None)
        self.failures.pop(spec.name, None)

    def _unload(self, name: str) -> None:
        plane = self.plane
        spec = plane.repository.models.get(name)
        if spec is None or name in plane.unloaded:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        plane.unloaded[name] = f"unloaded at {stamp}; POST v2/repository/models/{name}/load serves it again"
        replaced = []
        for version in spec.versions:
            replaced.append(plane.backends.get((name, version)))
            plane.backends[(name, version)] = _Unavailable(f"model {name!r} version {version} was unloaded")
            self.pool.workers.pop(f"{name}/{version}", None)
        self._retire(replaced, f"model {name!r} was unloaded while this request waited")
        logger.info("model %s unloaded", name)

    def _failed(self, name: str, message: str) -> None:
        if name not in self.plane.repository.models:
            self.failures[name] = message
        elif name in self.plane.unloaded:
            self.plane.unloaded[name] = f"unloaded; the last load failed: {message}"
        logger.warning("%s", message)

    def _retire(self, backends: list, reason: str) -> None:
        for backend in backends:
            if isinstance(backend, ModelWorker):
                task = asyncio.get_running_loop().create_task(backend.retire(reason, self.grace_s))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    # -- several ingress replicas -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Inside Ray, on the replica's event loop: share calls through the GCS and follow the others' (module doc)."""
        self._store = GcsStore.connect(PREFIX)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # built outside an event loop (a script): calls apply to this process alone
            self._store = None
        if self._store is not None:
            self._tasks.add(loop.create_task(self._follow()))

    async def _publish(self, name: str, state: str, config: str | None = None) -> None:
        generation = max(time.time_ns(), self.applied.get(name, 0) + 1)
        self.applied[name] = generation
        if self._store is None:
            return
        record = json.dumps({"model": name, "state": state, "generation": generation, "config": config}).encode()
        try:
            await self._store.put(record, f"{name}/{generation:020d}")
        except Exception as e:  # the GCS busy or restarting: applied here, not yet shared
            raise ModelNotReady(f"model {name!r} {state} on this ingress replica, but the other replicas could not be told "
                                f"({type(e).__name__}); repeat the call") from None

    async def _follow(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception as e:  # the GCS busy or restarting: the next round catches up
                logger.warning("model states not read: %s", e)
            await asyncio.sleep(POLL_S)

    async def sync(self) -> None:
        """Apply, per model, the newest record this replica has not applied; delete the older ones. The records are
        read only when their keys changed since the last poll (an idle poll is one call to the GCS)."""
        names = await self._store.names()
        if names == self._seen:
            return
        self._seen = names
        newest: dict[str, dict] = {}
        for value in await self._store.read_all():
            record = json.loads(value)
            name, current = record["model"], newest.get(record["model"])
            if current is None or record["generation"] > current["generation"]:
                if current is not None:
                    await self._store.delete(f"{name}/{current['generation']:020d}")
                newest[name] = record
            else:
                await self._store.delete(f"{name}/{record['generation']:020d}")
        for name, record in newest.items():
            if record["generation"] > self.applied.get(name, -1):
                async with self._lock(name):
                    if record["generation"] > self.applied.get(name, -1):
                        await self._apply(name, record)

    async def _apply(self, name: str, record: dict) -> None:
        self.applied[name] = record["generation"]
        if record["state"] == "unloaded":
            self._unload(name)
        elif record["generation"] > self.started_ns or name not in self.plane.repository.models:
            try:
                await self._load(name, record.get("config"))
            except InferenceError:
                pass  # kept as it was, the reason in the index (`_failed`)


class _Unavailable:
    """Stands in for a version taken out of service, for a request that got past the data plane's check just before:
    it fails with UNAVAILABLE naming why, never with a missing backend."""

    def __init__(self, message: str):
        self.message = message

    async def infer(self, inputs, timeout_s=None):
        raise ModelNotReady(self.message)

    async def stream(self, inputs):
        yield await self.infer(inputs)

    async def ready(self) -> bool:
        return False


def _check_request(call: str, name: str, parameters: dict | None, accepted: tuple[str, ...]) -> None:
    """A model name is a folder name of the repository; a config or files in the request are refused."""
    if not name or Path(name).name != name or name.startswith((".", "_")) or len(name) > 255 or "\0" in name:
        raise InvalidInput(f"failed to {call} {name[:80]!r}: a model name is the name of a folder of the model repository")
    for key in parameters or {}:
        if key.startswith("file:"):
            raise InvalidInput(
                f"failed to {call} {name!r}: parameter {key[:80]!r} is refused: models are loaded only from the server's "
                "model repository directory, never from files sent with the request; write the model's folder there and "
                "load it by name"
            )
        if key not in accepted:
            raise InvalidInput(f"failed to {call} {name!r}: unknown parameter {key[:80]!r}; accepted: {list(accepted)}")
