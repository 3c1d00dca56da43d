"""The model repository extension without Ray (serve/model_control.py): load, reload and unload against a data plane over
ModelWorkers in this process, what is refused, a worker retired under load, both adapters, and the convergence of two
replicas through a shared store standing in for Ray's GCS."""
import asyncio
import json
import shutil

import grpc
import numpy as np
import pytest
from fastapi.testclient import TestClient

from streamserve_proto import service_pb2 as pb
from models.examples.export import build as build_examples
from serve import rest
from serve.dataplane import MODEL_REPOSITORY, DataPlane
from serve.errors import InvalidInput, ModelNotFound, ModelNotReady, NotOffered
from serve.grpc_servicer import GRPCInferenceServicer
from serve.model_control import ModelControl
from serve.replica import ModelPool
from serve.repository import ModelRepository
from serve.types import InferRequest

STARTED = ["simple", "slow_identity", "countdown_job"]  # countdown_job: "deployed" (a stand-in handle)


class Deployed:
    """Stands in for a deployment's handle (RayModelBackend)."""

    async def ready(self):
        return True

    async def infer(self, inputs, timeout_s=None):
        return {"Y": np.zeros(1, np.float32)}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples")
    build_examples(folder)
    return folder


@pytest.fixture()
def root(source, tmp_path):
    """A repository of its own per test: tests add, break and change folders."""
    shutil.copytree(source, tmp_path / "repo")
    return tmp_path / "repo"


def make_plane(root, token=None, **options):
    pool = ModelPool(str(root), ["simple/1", "slow_identity/1"], in_ingress=True)
    backends = {(key.split("/")[0], 1): worker for key, worker in pool.workers.items()} | {("countdown_job", 1): Deployed()}
    plane = DataPlane(ModelRepository(root, STARTED), backends, auth_token=token)
    settings = {"admission_check": None, "temp_dir": str(root.parent / "tmp"), "timeout_s": 60.0, "grace_s": 5.0} | options
    plane.control = ModelControl(plane, pool, **settings)
    return plane


def copy_model(root, source_name, name, edit=lambda text: text):
    shutil.copytree(root / source_name, root / name)
    config = root / name / "config.pbtxt"
    config.write_text(edit(config.read_text().replace(f'"{source_name}"', f'"{name}"')))


def simple_request(name="simple"):
    return InferRequest(name, None, {n: np.full((1, 16), 2, np.int32) for n in ("INPUT0", "INPUT1")})


def states(plane):
    return {(e["name"], e.get("version")): (e["state"], e.get("reason", "")) for e in plane.repository_index()}


def test_load_a_new_folder_infer_unload_and_load_again(root):
    plane = make_plane(root)
    assert states(plane)[("heat1d", None)][0] == "UNAVAILABLE"  # folders not loaded at start are listed
    copy_model(root, "simple", "simple_copy")
    assert "not loaded" in states(plane)[("simple_copy", None)][1]
    with pytest.raises(ModelNotFound):
        asyncio.run(plane.infer(simple_request("simple_copy"), "test"))

    async def scenario():
        await plane.control.load("simple_copy")
        answer = await plane.infer(simple_request("simple_copy"), "test")
        assert answer.outputs["OUTPUT0"].tolist() == [[4] * 16]
        assert states(plane)[("simple_copy", "1")] == ("READY", "")
        await plane.control.unload("simple_copy")
        with pytest.raises(ModelNotReady, match="'simple_copy' version 1 is unavailable: unloaded at"):
            await plane.infer(simple_request("simple_copy"), "test")
        assert not await plane.model_ready("simple_copy") and await plane.ready()  # the server stays ready
        state, reason = states(plane)[("simple_copy", "1")]
        assert state == "UNAVAILABLE" and reason.startswith("unloaded at")
        assert [e["name"] for e in plane.repository_index(ready=True)] == ["countdown_job", "simple", "slow_identity"]
        await plane.control.unload("simple_copy")  # unloading what is not served is no error
        await plane.control.load("simple_copy")
        assert (await plane.infer(simple_request("simple_copy"), "test")).outputs["OUTPUT1"].tolist() == [[0] * 16]
        assert "simple_copy/1" in plane.control.pool.workers

    asyncio.run(scenario())


def test_reload_picks_up_a_changed_config_and_retires_the_old_worker(root):
    plane = make_plane(root)

    async def scenario():
        old = plane.backends[("simple", 1)]
        await plane.infer(simple_request(), "test")  # the old worker has a batch queue to close
        config = root / "simple" / "config.pbtxt"
        config.write_text(config.read_text().replace("max_batch_size: 8", "max_batch_size: 16"))
        await plane.control.load("simple")
        assert plane.model("simple")[0].max_batch_size == 16 and plane.backends[("simple", 1)] is not old
        request = InferRequest("simple", None, {n: np.ones((12, 16), np.int32) for n in ("INPUT0", "INPUT1")})
        assert (await plane.infer(request, "test")).outputs["OUTPUT0"].shape == (12, 16)
        await asyncio.sleep(0.2)
        assert old.batcher.closed is not None  # drained (nothing was in flight) and its queue closed

    asyncio.run(scenario())


def test_reload_serves_a_new_version_folder(root):
    plane = make_plane(root)
    shutil.copytree(root / "simple" / "1", root / "simple" / "2")

    async def scenario():
        await plane.control.load("simple")
        assert plane.model("simple")[1] == 2
        assert (await plane.infer(simple_request(), "test")).version == "2"
        with pytest.raises(ModelNotFound, match="does not serve version 1"):
            plane.model("simple", "1")
        assert [e.get("version") for e in plane.repository_index() if e["name"] == "simple"] == ["2"]

    asyncio.run(scenario())


def test_a_config_override_changes_batching_until_the_next_load_and_reaches_the_other_replicas(root):
    store = SharedStore()
    a, b = make_plane(root), make_plane(root)
    a.control._store = b.control._store = store
    twelve = lambda: InferRequest("simple", None, {n: np.ones((12, 16), np.int32) for n in ("INPUT0", "INPUT1")})

    async def scenario():
        await a.control.load("simple", {"config": '{"max_batch_size": "16", "dynamic_batching": {"max_queue_delay_microseconds": 100}}'})
        await b.control.sync()
        for plane in (a, b):
            spec = plane.model("simple")[0]
            assert spec.max_batch_size == 16 and spec.max_queue_delay_s == 1e-4 and len(spec.inputs) == 2  # the rest: the folder's
            assert (await plane.infer(twelve(), "test")).outputs["OUTPUT0"].shape == (12, 16)
        assert "max_batch_size: 8" in (root / "simple" / "config.pbtxt").read_text()  # the folder is not written
        await a.control.load("simple")  # a load without the override reads the folder again
        assert a.model("simple")[0].max_batch_size == 8
        with pytest.raises(InvalidInput, match="batch size 12 must be between 1 and max_batch_size 8"):
            await a.infer(twelve(), "test")

    asyncio.run(scenario())


def test_a_broken_config_is_refused_naming_the_file_and_field_and_the_model_serves_on(root):
    plane = make_plane(root)
    copy_model(root, "simple", "broken", lambda text: text.replace("max_batch_size: 8", "max_batch_sizes: 8"))
    with pytest.raises(InvalidInput, match=r"failed to load 'broken': .*broken/config.pbtxt.*max_batch_sizes"):
        asyncio.run(plane.control.load("broken"))
    state, reason = states(plane)[("broken", None)]
    assert state == "UNAVAILABLE" and "max_batch_sizes" in reason
    config = root / "simple" / "config.pbtxt"
    config.write_text(config.read_text().replace('dims: [ 16 ]', 'dims: [ 0 ]', 1))
    with pytest.raises(InvalidInput, match="dims"):
        asyncio.run(plane.control.load("simple"))
    assert asyncio.run(plane.infer(simple_request(), "test")).outputs["OUTPUT0"].shape == (1, 16)  # still the old one
    assert states(plane)[("simple", "1")] == ("READY", "")


@pytest.mark.parametrize("parameters, message", [
    ({"file:1/model.onnx": b"\x08\x07"}, "parameter 'file:1/model.onnx' is refused"),
    ({"priority": 1}, "unknown parameter 'priority'"),
    ({"config": '{"max_batch_size": "sixteen"}'}, "config is not ModelConfig JSON"),
    ({"config": '{"platform": "python", "max_batch_size": 16}'}, r"config fields \['platform'\] cannot be overridden"),
    ({"config": '{"name": "other"}'}, "config names the model 'other'"),
    ({"config": '{"dynamic_batching": {}, "max_batch_size": 0}'}, "dynamic_batching needs max_batch_size > 0"),
    ({"config": {"max_batch_size": 16}}, "parameter 'config' must be a string"),
])
def test_load_parameters_carrying_files_or_a_config_beyond_batching_are_refused(root, parameters, message):
    plane = make_plane(root)
    with pytest.raises(InvalidInput, match=message):
        asyncio.run(plane.control.load("simple", parameters))
    asyncio.run(plane.control.unload("simple", {"unload_dependents": False}))  # what tritonclient sends


@pytest.mark.parametrize("name", ["../simple", ".hidden", "a/b", "", "_private"])
def test_names_are_folder_names(root, name):
    with pytest.raises(InvalidInput, match="name of a folder"):
        asyncio.run(make_plane(root).control.load(name))


def test_unknown_model(root):
    plane = make_plane(root)
    with pytest.raises(ModelNotFound, match="failed to load 'nope'"):
        asyncio.run(plane.control.load("nope"))
    with pytest.raises(ModelNotFound, match="failed to unload 'nope'"):
        asyncio.run(plane.control.unload("nope"))


def test_a_model_needing_a_deployment_loads_only_when_its_deployment_runs(root):
    plane = make_plane(root)
    copy_model(root, "countdown_job", "countdown_copy")
    with pytest.raises(InvalidInput, match=r"needs a deployment of its own \(its handler declares placement 'dedicated'\).*restart"):
        asyncio.run(plane.control.load("countdown_copy"))

    async def scenario():
        handle = plane.backends[("countdown_job", 1)]
        await plane.control.unload("countdown_job")
        assert not await plane.model_ready("countdown_job")
        await plane.control.load("countdown_job")  # unchanged: routed to again
        assert plane.backends[("countdown_job", 1)] is handle and await plane.model_ready("countdown_job")
        config = root / "countdown_job" / "config.pbtxt"
        config.write_text(config.read_text().replace("0.05", "0.01"))
        with pytest.raises(InvalidInput, match="runs in the deployment 'pool_jobs'.*needs a restart"):
            await plane.control.load("countdown_job")

    asyncio.run(scenario())


def test_a_model_refused_at_admission_stays_unavailable_with_the_verdict(root, monkeypatch):
    monkeypatch.setenv("STREAMSERVE_EXAMPLE_REFUSE", "simple_refused")
    plane = make_plane(root, admission_check="models.examples.admission:refuse_listed")
    copy_model(root, "simple", "simple_refused")
    with pytest.raises(InvalidInput, match="refused at admission: version 1: listed in STREAMSERVE_EXAMPLE_REFUSE"):
        asyncio.run(plane.control.load("simple_refused"))
    assert "listed in STREAMSERVE_EXAMPLE_REFUSE" in states(plane)[("simple_refused", None)][1]
    copy_model(root, "simple", "simple_admitted")
    asyncio.run(plane.control.load("simple_admitted"))
    assert states(plane)[("simple_admitted", "1")] == ("READY", "")


def test_a_load_past_its_time_limit_changes_nothing(root):
    plane = make_plane(root, timeout_s=0.0)
    copy_model(root, "simple", "simple_slow")

    async def scenario():
        with pytest.raises(ModelNotReady, match="not done after 0 s"):
            await plane.control.load("simple_slow")
        while plane.control.building:  # the abandoned build ends in its thread
            await asyncio.sleep(0.05)
        assert "simple_slow" not in plane.repository.models
        plane.control.timeout_s = 60.0
        await plane.control.load("simple_slow")

    asyncio.run(scenario())


def identity_request(value: float):
    return InferRequest("slow_identity", None, {"X": np.full((1, 1), value, np.float32)})


def test_unload_lets_requests_in_flight_finish_and_refuses_the_next(root):
    plane = make_plane(root)

    async def scenario():
        inside = [asyncio.ensure_future(plane.infer(identity_request(i), "test")) for i in range(4)]
        await asyncio.sleep(0.01)  # in the worker's batch queue
        await plane.control.unload("slow_identity")
        with pytest.raises(ModelNotReady, match="was unloaded|is unavailable"):
            await plane.infer(identity_request(9), "test")
        answers = await asyncio.wait_for(asyncio.gather(*inside), 5)
        assert [float(a.outputs["Y"][0, 0]) for a in answers] == [0, 1, 2, 3]

    asyncio.run(scenario())


def test_a_retired_worker_fails_what_outlasts_the_grace_period_and_nothing_hangs(root):
    config = root / "slow_identity" / "config.pbtxt"
    config.write_text(config.read_text().replace('string_value: "0.05"', 'string_value: "0.5"'))
    plane = make_plane(root, grace_s=0.1)

    async def scenario():
        inside = [asyncio.ensure_future(plane.infer(identity_request(i), "test")) for i in range(4)]
        await asyncio.sleep(0.05)
        worker = plane.backends[("slow_identity", 1)]
        await plane.control.unload("slow_identity")
        outcomes = await asyncio.wait_for(asyncio.gather(*inside, return_exceptions=True), 5)
        assert outcomes and all(isinstance(o, ModelNotReady) and "was unloaded while this request waited" in o.message
                                for o in outcomes), outcomes
        with pytest.raises(ModelNotReady):  # a request holding the old worker is refused by its closed queue
            await worker.infer({"X": np.zeros((1, 1), np.float32)})

    asyncio.run(scenario())


# -- the adapters ---------------------------------------------------------------------------------------------------
class Servicer(GRPCInferenceServicer):
    def __init__(self, plane):
        self.plane = plane


class FakeContext:
    def __init__(self, metadata=()):
        self.metadata, self.code, self.details = metadata, None, None

    def peer(self):
        return "ipv4:127.0.0.1:5000"

    def invocation_metadata(self):
        return list(self.metadata)

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details


def test_both_adapters_need_the_token_and_refuse_uploads(root):
    plane = make_plane(root, token="s3cret")
    rest.attach(plane)
    http = TestClient(rest.app, client=("127.0.0.1", 5000))
    auth = {"Authorization": "Bearer s3cret"}
    assert http.post("/v2/repository/models/simple/unload").status_code == 401
    assert http.post("/v2/repository/models/simple/load", json={}).status_code == 401
    assert http.post("/v2/repository/index").status_code == 401
    assert http.post("/v2/repository/models/simple/unload", json={"parameters": {"unload_dependents": False}}, headers=auth).status_code == 200
    assert "simple" not in [e["name"] for e in http.post("/v2/repository/index", json={"ready": True}, headers=auth).json()]
    assert http.post("/v2/repository/models/simple/load", headers=auth).status_code == 200
    refused = http.post("/v2/repository/models/simple/load", json={"parameters": {"file:1/model.onnx": "AAAA"}}, headers=auth)
    assert refused.status_code == 400 and "is refused" in refused.json()["error"]
    assert http.post("/v2/repository/models/simple/load", content=b"{", headers=auth).status_code == 400
    assert MODEL_REPOSITORY in http.get("/v2", headers=auth).json()["extensions"]

    servicer = Servicer(plane)
    context = FakeContext()
    asyncio.run(servicer.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="simple"), context))
    assert context.code == grpc.StatusCode.UNAUTHENTICATED
    context = FakeContext([("authorization", "Bearer s3cret")])
    request = pb.RepositoryModelLoadRequest(model_name="simple")
    request.parameters["config"].string_param = '{"backend": "python"}'
    asyncio.run(servicer.RepositoryModelLoad(request, context))
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "failed to load 'simple'" in context.details
    assert "cannot be overridden" in context.details
    context = FakeContext([("authorization", "Bearer s3cret")])
    asyncio.run(servicer.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="simple"), context))
    index = asyncio.run(servicer.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), context))
    assert context.code is None and "simple" not in [m.name for m in index.models]


def test_without_a_token_only_loopback_callers_may_load_or_unload(root):
    """STREAMSERVE_HTTP_HOST=0.0.0.0 without a token: a caller from another host is refused, as for every call."""
    rest.attach(make_plane(root))
    remote = TestClient(rest.app, client=("10.1.2.3", 5000))
    assert remote.post("/v2/repository/models/simple/unload").status_code == 401
    assert remote.post("/v2/repository/models/simple/load").status_code == 401
    assert TestClient(rest.app, client=("127.0.0.1", 5000)).post("/v2/repository/models/simple/unload").status_code == 200


def test_without_the_extension_the_index_alone_is_served(root):
    plane = make_plane(root)
    plane.control = None
    rest.attach(plane)
    http = TestClient(rest.app, client=("127.0.0.1", 5000))
    assert http.post("/v2/repository/models/simple/load").status_code == 400
    assert [e["name"] for e in http.post("/v2/repository/index").json()] == sorted(STARTED)
    assert MODEL_REPOSITORY not in http.get("/v2").json()["extensions"]
    context = FakeContext()
    asyncio.run(Servicer(plane).RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="simple"), context))
    assert context.code == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(NotOffered):
        plane.model_control()


# -- several replicas -----------------------------------------------------------------------------------------------
class SharedStore:
    """Stands in for Ray's GCS key-value store, shared by the replicas of one test."""

    def __init__(self):
        self.entries: dict[str, bytes] = {}

    async def put(self, payload: bytes, name: str | None = None) -> None:
        self.entries[name] = payload

    async def delete(self, name: str) -> None:
        self.entries.pop(name, None)

    async def read_all(self) -> list[bytes]:
        return list(self.entries.values())

    async def names(self) -> set[str]:
        return set(self.entries)


def test_replicas_converge_on_the_newest_call(root):
    store = SharedStore()
    a, b = make_plane(root), make_plane(root)
    a.control._store = b.control._store = store
    copy_model(root, "simple", "simple_copy")

    async def scenario():
        await a.control.load("simple_copy")
        await b.control.sync()
        assert states(b)[("simple_copy", "1")] == ("READY", "")
        await b.control.unload("simple")
        await a.control.load("simple_copy")
        await a.control.sync()
        await b.control.sync()
        assert states(a)[("simple", "1")][0] == states(b)[("simple", "1")][0] == "UNAVAILABLE"
        assert sorted(json.loads(v)["model"] for v in store.entries.values()) == ["simple", "simple_copy"]  # older ones deleted
        late = make_plane(root)  # a replica started after the calls: files read now, the unload applied
        late.control._store = store
        late.control.started_ns = max(json.loads(v)["generation"] for v in store.entries.values()) + 1
        await late.control.sync()
        assert states(late)[("simple", "1")][0] == "UNAVAILABLE" and states(late)[("simple_copy", "1")][0] == "READY"

    asyncio.run(scenario())
