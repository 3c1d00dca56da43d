"""System shared memory (serve/shared_memory.py) without Ray: the registry against real /dev/shm objects made with
tritonclient's own utilities, and both adapters (FastAPI's TestClient, the gRPC servicer with a stand-in context) on
Triton's example models. Each hostile case is refused with a client error naming the region or tensor; the real server
is called in tests/serve/test_shared_memory_server.py."""
import asyncio
import gc
import os
import re
import socket
import weakref
import uuid

import grpc
import numpy as np
import pytest
import tritonclient.utils.shared_memory as shm
from fastapi.testclient import TestClient
from tritonclient.utils import serialize_byte_tensor, serialized_byte_size

from models.examples.export import build as build_examples
from serve import rest, shared_memory
from serve.dataplane import DataPlane
from serve.errors import InvalidInput
from serve.replica import ModelWorker
from serve.repository import ModelRepository
from serve.shared_memory import Caller, RegionExists, RegionNotFound, SharedMemoryRegistry, grpc_address, peer_uid
from streamserve_proto import service_pb2 as pb
from tests.serve.test_dataplane import FakeContext, Servicer

A = np.arange(16, dtype=np.int32)[None]
B = np.full((1, 16), 3, np.int32)


@pytest.fixture()
def connection():
    """A real loopback TCP connection: the registry finds its client end's owner in /proc/net/tcp."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    served, _ = listener.accept()
    yield client.getsockname()
    for sock in (client, served, listener):
        sock.close()


@pytest.fixture()
def me(connection):
    return Caller("local", *connection)


@pytest.fixture()
def regions():
    """Shared memory objects made with tritonclient.utils.shared_memory, destroyed after the test."""
    made = []

    def make(byte_size, values=()):
        key = f"/ss-test-{uuid.uuid4().hex[:12]}"
        handle = shm.create_shared_memory_region(key, key, byte_size)
        made.append(handle)
        if values:
            shm.set_shared_memory_region(handle, list(values))
        return key, handle

    yield make
    for handle in made:
        shm.destroy_shared_memory_region(handle)


def placement(region, byte_size, offset=0):
    return {"shared_memory_region": region, "shared_memory_byte_size": byte_size} | ({"shared_memory_offset": offset} if offset else {})


def test_inputs_are_read_and_outputs_written_in_place(me, regions):
    key, handle = regions(128, [A, B])
    registry = SharedMemoryRegistry()
    registry.register(me, "in", key, 0, 128)
    out_key, out = regions(64)
    registry.register(me, "out", out_key, 0, 64)
    assert registry.status(me) == [{"name": "in", "key": key, "offset": 0, "byte_size": 128},
                                   {"name": "out", "key": out_key, "offset": 0, "byte_size": 64}]
    use = registry.use(me)
    np.testing.assert_array_equal(use.input("INPUT1", "INT32", [1, 16], placement("in", 64, offset=64)), B)
    use.place_output("OUTPUT0", placement("out", 64))
    assert use.write_output("OUTPUT0", A + B) and not use.write_output("OUTPUT1", A - B)
    np.testing.assert_array_equal(shm.get_contents_as_numpy(out, np.int32, [1, 16]), A + B)
    registry.unregister(me, "in")
    assert [r["name"] for r in registry.status(me)] == ["out"]
    registry.unregister(me)
    assert registry.status(me) == []


def test_a_registered_window_of_an_object_is_addressed_from_its_own_start(me, regions):
    key, _ = regions(192, [np.zeros(16, np.int32), A, B])
    registry = SharedMemoryRegistry()
    registry.register(me, "window", key, 64, 128)
    np.testing.assert_array_equal(registry.use(me).input("INPUT0", "INT32", [1, 16], placement("window", 64)), A)


def test_bytes_inputs_go_through_the_bounded_decoder(me, regions):
    strings = np.array([str(i).encode() for i in range(16)], dtype=object)
    serialized = serialize_byte_tensor(strings)
    size = serialized_byte_size(serialized)
    key, handle = regions(size + 8, [serialized])
    registry = SharedMemoryRegistry()
    registry.register(me, "text", key, 0, size + 8)
    use = registry.use(me)
    assert use.input("INPUT0", "BYTES", [1, 16], placement("text", size)).tolist() == [strings.tolist()]
    with pytest.raises(InvalidInput, match="'INPUT0': 8 bytes left over after 16 BYTES elements"):
        use.input("INPUT0", "BYTES", [1, 16], placement("text", size + 8))
    with pytest.raises(InvalidInput, match="'INPUT0': BYTES data ends after 16 of 17 elements"):
        use.input("INPUT0", "BYTES", [1, 17], placement("text", size))
    use.place_output("OUTPUT0", placement("text", size))
    assert use.write_output("OUTPUT0", strings.reshape(1, 16))
    assert shm.get_contents_as_numpy(handle, np.object_, [1, 16]).tolist() == [strings.tolist()]


@pytest.mark.parametrize("parameters, fragment", [
    (placement("in", 60), "shared_memory_byte_size is 60, but 16 INT32 elements of shape [1, 16] take 64 bytes"),
    (placement("in", 64, offset=128), "shared_memory_offset 128 + shared_memory_byte_size 64 is outside region 'in' (128 bytes)"),
    (placement("in", 64, offset=96), "shared_memory_offset 96 + shared_memory_byte_size 64 is outside region 'in'"),
    (placement("in", -1), "shared_memory_byte_size must be a non-negative integer, got -1"),
    (placement("in", 64, offset=True), "shared_memory_offset must be a non-negative integer, got True"),
    ({"shared_memory_region": "in"}, "needs shared_memory_byte_size"),
    ({"shared_memory_byte_size": 64}, "shared_memory_region must name a registered region, got None"),
])
def test_misplaced_inputs_are_refused_naming_the_tensor(me, regions, parameters, fragment):
    key, _ = regions(128, [A, B])
    registry = SharedMemoryRegistry()
    registry.register(me, "in", key, 0, 128)
    with pytest.raises(InvalidInput, match="input 'INPUT0': .*" + re.escape(fragment)):
        registry.use(me).input("INPUT0", "INT32", [1, 16], parameters)


def test_an_unknown_region_is_not_found(me):
    registry = SharedMemoryRegistry()
    with pytest.raises(RegionNotFound, match="input 'INPUT0': Unable to find shared memory region: 'nope'"):
        registry.use(me).input("INPUT0", "INT32", [1, 16], placement("nope", 64))
    with pytest.raises(RegionNotFound, match="Unable to find system shared memory region: 'nope'"):
        registry.status(me, "nope")
    registry.unregister(me, "nope")  # as in Triton: nothing to do is no error


def test_an_output_must_fit_the_byte_size_given_for_it(me, regions):
    key, _ = regions(128)
    registry = SharedMemoryRegistry()
    registry.register(me, "out", key, 0, 128)
    use = registry.use(me)
    use.place_output("OUTPUT0", placement("out", 32))
    with pytest.raises(InvalidInput, match="output 'OUTPUT0': its 64 bytes do not fit in the 32 bytes given by shared_memory_byte_size in region 'out'"):
        use.write_output("OUTPUT0", A)


@pytest.mark.parametrize("key", ["/a/b", "/..", "..", "/.", "/", "", "///", "/a\x00b", "/tab\there", "/" + "x" * 256, "/../etc/passwd"])
def test_keys_must_name_one_object_directly_under_dev_shm(me, key):
    with pytest.raises(InvalidInput, match="key .* must be '/' and the name of a shared memory object"):
        SharedMemoryRegistry().register(me, "r", key, 0, 1)


def test_leading_slashes_are_allowed_as_shm_open_allows_them(me, regions):
    key, _ = regions(64)
    SharedMemoryRegistry().register(me, "r", "//" + key.lstrip("/"), 0, 64)
    SharedMemoryRegistry().register(me, "r", key.lstrip("/"), 0, 64)


def test_symlinks_directories_and_missing_objects_are_refused(me, regions):
    key, _ = regions(64)
    name = f"ss-test-{uuid.uuid4().hex[:12]}"
    registry = SharedMemoryRegistry()
    try:
        os.symlink(key.lstrip("/"), f"/dev/shm/{name}-link")
        os.mkdir(f"/dev/shm/{name}-dir")
        with pytest.raises(InvalidInput, match="is a symbolic link"):
            registry.register(me, "r", f"/{name}-link", 0, 64)
        with pytest.raises(InvalidInput, match="is not a shared memory object"):
            registry.register(me, "r", f"/{name}-dir", 0, 64)
        with pytest.raises(InvalidInput, match="no such shared memory object in /dev/shm"):
            registry.register(me, "r", f"/{name}-missing", 0, 64)
    finally:
        os.unlink(f"/dev/shm/{name}-link")
        os.rmdir(f"/dev/shm/{name}-dir")
    assert registry.status(me) == []


def test_a_region_must_lie_within_the_object(me, regions):
    key, _ = regions(64)
    registry = SharedMemoryRegistry()
    with pytest.raises(InvalidInput, match=r"offset 32 \+ byte_size 64 runs past the end of .* \(64 bytes\)"):
        registry.register(me, "r", key, 32, 64)
    for offset, byte_size in ((-1, 8), (0, 0), (0, True)):
        with pytest.raises(InvalidInput, match="must be an integer of at least"):
            registry.register(me, "r", key, offset, byte_size)


def test_another_users_object_is_refused(me, regions, monkeypatch):
    """The caller's user is read from its connection; an object of another user cannot be registered by it."""
    key, _ = regions(64)
    monkeypatch.setattr(shared_memory, "peer_uid", lambda host, port: os.getuid() + 1)
    with pytest.raises(InvalidInput, match=f"belongs to uid {os.getuid()}, not to the caller \\(uid {os.getuid() + 1}\\)"):
        SharedMemoryRegistry().register(me, "r", key, 0, 64)
    monkeypatch.setattr(shared_memory, "peer_uid", lambda host, port: None)
    with pytest.raises(InvalidInput, match="cannot tell which local user this connection belongs to"):
        SharedMemoryRegistry().register(me, "r", key, 0, 64)


def test_the_callers_user_is_found_from_its_connection(connection):
    assert peer_uid(*connection) == os.getuid()
    assert peer_uid("127.0.0.1", 1) is None and peer_uid(None, None) is None


def test_callers_from_other_hosts_are_refused(regions):
    key, _ = regions(64)
    registry = SharedMemoryRegistry()
    for host in ("10.0.0.7", "2001:db8::1", None):
        stranger = Caller("local", host, 5555)
        for call in (lambda: registry.register(stranger, "r", key, 0, 64), lambda: registry.status(stranger),
                     lambda: registry.unregister(stranger), lambda: registry.use(stranger)):
            with pytest.raises(InvalidInput, match="system shared memory is only for clients on this host"):
                call()
    assert all(Caller("local", host, 1).local for host in ("127.0.0.1", "127.0.0.9", "::1", "::ffff:127.0.0.1"))


def test_regions_belong_to_the_caller_that_registered_them(connection, regions):
    key, _ = regions(128, [A, B])
    other_key, _ = regions(64)
    alice, bob = Caller("token:alice", *connection), Caller("token:bob", *connection)
    registry = SharedMemoryRegistry()
    registry.register(alice, "r", key, 0, 128)
    assert registry.status(bob) == []
    with pytest.raises(RegionNotFound):
        registry.status(bob, "r")
    with pytest.raises(RegionNotFound, match="Unable to find shared memory region: 'r'"):
        registry.use(bob).input("INPUT0", "INT32", [1, 16], placement("r", 64))
    with pytest.raises(RegionNotFound):
        registry.use(bob).place_output("OUTPUT0", placement("r", 64))
    registry.unregister(bob, "r")
    registry.unregister(bob)
    assert [r["key"] for r in registry.status(alice)] == [key]
    registry.register(bob, "r", other_key, 0, 64)  # the same name in another caller's namespace
    assert [r["key"] for r in registry.status(bob)] == [other_key] and [r["key"] for r in registry.status(alice)] == [key]
    with pytest.raises(RegionExists, match="shared memory region 'r' already in manager"):
        registry.register(alice, "r", other_key, 0, 64)


def test_caps_on_regions_and_bytes(me, regions):
    key, _ = regions(128, [A, B])
    registry = SharedMemoryRegistry(max_regions=2, max_bytes=150)
    registry.register(me, "a", key, 0, 64)
    with pytest.raises(InvalidInput, match=r"its 128 bytes and the 64 registered would pass the limit of 150 bytes \(STREAMSERVE_SHARED_MEMORY_MAX_BYTES\)"):
        registry.register(me, "b", key, 0, 128)
    registry.register(me, "b", key, 64, 64)
    with pytest.raises(InvalidInput, match=r"2 regions are registered, the limit is 2 \(STREAMSERVE_SHARED_MEMORY_MAX_REGIONS\)"):
        registry.register(me, "c", key, 0, 1)
    use = registry.use(me)  # one request may not read more than the cap, even from the same regions again
    for _ in range(2):
        use.input("INPUT0", "INT32", [1, 16], placement("a", 64))
    with pytest.raises(InvalidInput, match="read 192 bytes from shared memory, over the limit of 150"):
        use.input("INPUT0", "INT32", [1, 16], placement("a", 64))


def descriptor_target(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def test_unregister_closes_the_descriptor_once_no_request_holds_it(me, regions):
    key, _ = regions(64)
    registry = SharedMemoryRegistry()
    registry.register(me, "r", key, 0, 64)
    descriptor = weakref.ref(registry._regions[("local", "r")].descriptor)
    fd = descriptor().fd
    assert descriptor_target(fd) == "/dev/shm" + key
    use = registry.use(me)
    use.place_output("OUTPUT0", placement("r", 64))
    registry.unregister(me)
    assert descriptor() is not None and descriptor_target(fd) == "/dev/shm" + key, "a request in flight still holds it"
    assert use.write_output("OUTPUT0", A)
    del use
    gc.collect()
    assert descriptor() is None and descriptor_target(fd) != "/dev/shm" + key
    registry.register(me, "r", key, 0, 64)
    fd = registry._regions[("local", "r")].descriptor.fd
    registry.unregister(me, "r")
    assert descriptor_target(fd) != "/dev/shm" + key


def test_an_object_shrunk_after_registration_is_an_error_not_a_crash(me, regions):
    """Reads and writes go through the descriptor, not a mapping: past the end they come up short (no SIGBUS)."""
    key, _ = regions(128, [A, B])
    registry = SharedMemoryRegistry()
    registry.register(me, "r", key, 0, 128)
    fd = os.open("/dev/shm" + key, os.O_RDWR)
    try:
        os.ftruncate(fd, 32)
    finally:
        os.close(fd)
    use = registry.use(me)
    with pytest.raises(InvalidInput, match=f"region 'r': its object '{key}' now has 32 bytes, less than the 128"):
        use.input("INPUT1", "INT32", [1, 16], placement("r", 64, offset=64))
    use.place_output("OUTPUT0", placement("r", 64))
    with pytest.raises(InvalidInput, match="now has 32 bytes"):
        use.write_output("OUTPUT0", A)


def test_grpc_addresses():
    assert grpc_address("ipv4:127.0.0.1:51234") == ("127.0.0.1", 51234)
    assert grpc_address("ipv6:[::1]:51234") == ("::1", 51234)
    assert grpc_address("ipv6:%5B::1%5D:7") == ("::1", 7)
    assert grpc_address("unix:/tmp/socket") == (None, None) and grpc_address(None) == (None, None)


# -- both adapters ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    root = tmp_path_factory.mktemp("shm_examples")
    build_examples(root)
    repo = ModelRepository(root)
    plane = DataPlane(repo, {(s.name, v): ModelWorker(str(root), s.name, v) for s in repo for v in s.versions})
    plane.shared_memory = SharedMemoryRegistry()
    return plane


@pytest.fixture()
def any_local_user(monkeypatch):
    """The adapters' callers come from a stand-in address: their user is this process's."""
    monkeypatch.setattr(shared_memory, "peer_uid", lambda host, port: os.getuid())


def simple_request(out_region=None):
    """`simple` with both inputs in region "in" (INPUT1 at offset 64) and, if given, both outputs in `out_region`."""
    inputs = [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "parameters": placement("in", 64)},
              {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "parameters": placement("in", 64, offset=64)}]
    outputs = None
    if out_region:
        outputs = [{"name": "OUTPUT0", "parameters": placement(out_region, 64) | {"binary_data": False}},
                   {"name": "OUTPUT1", "parameters": placement(out_region, 64, offset=64)}]
    return {"inputs": inputs} | ({"outputs": outputs} if outputs else {})


@pytest.mark.usefixtures("any_local_user")
def test_http_adapter(plane, regions):
    rest.attach(plane)
    http = TestClient(rest.app, client=("127.0.0.1", 5000))
    key, _ = regions(128, [A, B])
    out_key, out = regions(128)
    assert http.post("/v2/systemsharedmemory/region/in/register", json={"key": key, "byte_size": 128}).status_code == 200
    assert http.post("/v2/systemsharedmemory/region/out/register", json={"key": out_key, "offset": 0, "byte_size": 128}).status_code == 200
    assert [r["name"] for r in http.get("/v2/systemsharedmemory/status").json()] == ["in", "out"]
    assert http.get("/v2/systemsharedmemory/region/out/status").json() == [{"name": "out", "key": out_key, "offset": 0, "byte_size": 128}]
    response = http.post("/v2/models/simple/infer", json=simple_request("out"))
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == [{"name": "OUTPUT0", "datatype": "INT32", "shape": [1, 16]},
                                          {"name": "OUTPUT1", "datatype": "INT32", "shape": [1, 16]}]
    np.testing.assert_array_equal(shm.get_contents_as_numpy(out, np.int32, [1, 16]), A + B)
    np.testing.assert_array_equal(shm.get_contents_as_numpy(out, np.int32, [1, 16], offset=64), A - B)
    mixed = simple_request()  # JSON data for one input, shared memory for the other, outputs in the body
    mixed["inputs"][0] = {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16}
    assert http.post("/v2/models/simple/infer", json=mixed).json()["outputs"][0]["data"] == (1 + B).ravel().tolist()

    bad = simple_request()
    bad["inputs"][0]["data"] = [1] * 16
    for body, status, fragment in (
        (bad, 400, "input 'INPUT0': set only one of 'data', parameters.binary_data_size and parameters.shared_memory_region"),
        (simple_request("nope"), 404, "output 'OUTPUT0': Unable to find shared memory region: 'nope'"),
        ({**simple_request("out"), "outputs": [{"name": "OUTPUT0", "parameters": placement("out", 64) | {"binary_data": True}}]},
         400, "output 'OUTPUT0': set either parameters.shared_memory_region or binary_data, not both"),
    ):
        response = http.post("/v2/models/simple/infer", json=body)
        assert response.status_code == status and fragment in response.json()["error"], response.text
    for body, fragment in (({"key": key}, "byte_size: Field required"), ({"key": key, "byte_size": 1.5}, "byte_size: Input should be a valid integer"),
                           ({"key": 7, "byte_size": 1}, "key: Input should be a valid string"), ({"key": key, "byte_size": 8, "extra": 1}, "extra: Extra inputs")):
        response = http.post("/v2/systemsharedmemory/region/x/register", json=body)
        assert response.status_code == 400 and fragment in response.json()["error"], response.text
    assert http.post("/v2/systemsharedmemory/region/x/register", content=b"{").status_code == 400
    assert http.post("/v2/systemsharedmemory/region/in/register", json={"key": key, "byte_size": 8}).status_code == 400  # already in manager
    # Without a token another host is refused by authentication already (with one: test_shared_memory_server.py).
    assert TestClient(rest.app, client=("10.0.0.7", 5000)).get("/v2/systemsharedmemory/status").status_code == 401

    assert http.get("/v2/cudasharedmemory/status").json() == []
    assert http.get("/v2/cudasharedmemory/region/x/status").status_code == 404
    assert http.post("/v2/cudasharedmemory/unregister").status_code == 200
    response = http.post("/v2/cudasharedmemory/region/x/register", json={"raw_handle": {"b64": ""}, "device_id": 0, "byte_size": 8})
    assert response.status_code == 400 and "CUDA shared memory is not supported" in response.json()["error"]

    assert http.post("/v2/systemsharedmemory/region/in/unregister").status_code == 200
    assert [r["name"] for r in http.get("/v2/systemsharedmemory/status").json()] == ["out"]
    assert http.post("/v2/systemsharedmemory/unregister").status_code == 200
    assert http.get("/v2/systemsharedmemory/status").json() == []


def grpc_placement(tensor, region, byte_size, offset=0):
    tensor.parameters["shared_memory_region"].string_param = region
    tensor.parameters["shared_memory_byte_size"].int64_param = byte_size
    if offset:
        tensor.parameters["shared_memory_offset"].int64_param = offset


@pytest.mark.usefixtures("any_local_user")
def test_grpc_adapter(plane, regions):
    servicer = Servicer(plane)

    def call(rpc, request):
        context = FakeContext()
        response = asyncio.run(getattr(servicer, rpc)(request, context))
        return response, context

    key, _ = regions(128, [A, B])
    out_key, out = regions(128)
    for name, object_key in (("in", key), ("out", out_key)):
        assert call("SystemSharedMemoryRegister", pb.SystemSharedMemoryRegisterRequest(name=name, key=object_key, byte_size=128))[1].code is None
    status, _ = call("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest())
    assert sorted(status.regions) == ["in", "out"] and status.regions["in"].key == key and status.regions["in"].byte_size == 128

    # INPUT0 raw, INPUT1 from shared memory: raw_input_contents counts the raw input only, as in Triton
    request = pb.ModelInferRequest(model_name="simple")
    request.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 16])
    request.raw_input_contents.append(A.tobytes())
    grpc_placement(request.inputs.add(name="INPUT1", datatype="INT32", shape=[1, 16]), "in", 64, offset=64)
    grpc_placement(request.outputs.add(name="OUTPUT0"), "out", 64)
    request.outputs.add(name="OUTPUT1")
    response, context = call("ModelInfer", request)
    assert context.code is None, context.details
    assert response.raw_output_contents[0] == b"" and [list(o.shape) for o in response.outputs] == [[1, 16], [1, 16]]
    np.testing.assert_array_equal(shm.get_contents_as_numpy(out, np.int32, [1, 16]), A + B)
    np.testing.assert_array_equal(np.frombuffer(response.raw_output_contents[1], "<i4").reshape(1, 16), A - B)

    with_contents = pb.ModelInferRequest(model_name="simple")
    tensor = with_contents.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 16])
    tensor.contents.int_contents.extend([1] * 16)
    grpc_placement(tensor, "in", 64)
    twice = pb.ModelInferRequest(model_name="simple")
    for _ in range(2):
        grpc_placement(twice.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 16]), "in", 64)
    wrong_size = pb.ModelInferRequest(model_name="simple")
    grpc_placement(wrong_size.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 16]), "in", 32)
    for bad, code, fragment in ((with_contents, grpc.StatusCode.INVALID_ARGUMENT, "has contents and a shared memory region"),
                                (twice, grpc.StatusCode.INVALID_ARGUMENT, "input 'INPUT0' appears twice"),
                                (wrong_size, grpc.StatusCode.INVALID_ARGUMENT, "shared_memory_byte_size is 32, but 16 INT32 elements"),
                                (pb.ModelInferRequest(model_name="simple", outputs=[request.outputs[0]]), grpc.StatusCode.INVALID_ARGUMENT, "missing input(s)")):
        _, context = call("ModelInfer", bad)
        assert context.code == code and fragment in context.details, context.details
    unknown = pb.ModelInferRequest()
    unknown.CopyFrom(request)
    unknown.outputs[0].parameters["shared_memory_region"].string_param = "nope"
    _, context = call("ModelInfer", unknown)
    assert context.code == grpc.StatusCode.NOT_FOUND and "Unable to find shared memory region: 'nope'" in context.details

    _, context = call("SystemSharedMemoryRegister", pb.SystemSharedMemoryRegisterRequest(name="in", key=key, byte_size=8))
    assert context.code == grpc.StatusCode.ALREADY_EXISTS
    _, context = call("SystemSharedMemoryRegister", pb.SystemSharedMemoryRegisterRequest(name="x", key="/../x", byte_size=8))
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "must be '/' and the name of a shared memory object" in context.details
    _, context = call("CudaSharedMemoryRegister", pb.CudaSharedMemoryRegisterRequest(name="x"))
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "CUDA shared memory is not supported" in context.details
    assert call("CudaSharedMemoryUnregister", pb.CudaSharedMemoryUnregisterRequest())[1].code is None
    assert call("CudaSharedMemoryStatus", pb.CudaSharedMemoryStatusRequest(name="x"))[1].code == grpc.StatusCode.NOT_FOUND

    plane.grpc_loopback_only = True  # behind the TLS terminator (no direct ingress): it hides the caller's address
    try:
        _, context = call("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest())
        assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "through the TLS terminator" in context.details
    finally:
        plane.grpc_loopback_only = False
    assert call("SystemSharedMemoryUnregister", pb.SystemSharedMemoryUnregisterRequest())[1].code is None
    assert not call("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest())[0].regions


def test_without_a_registry_the_extension_is_not_offered(tmp_path):
    build_examples(tmp_path)
    rest.attach(DataPlane(ModelRepository(tmp_path), {}))
    response = TestClient(rest.app, client=("127.0.0.1", 5000)).get("/v2/systemsharedmemory/status")
    assert response.status_code == 400 and "not offered" in response.json()["error"]


@pytest.mark.usefixtures("any_local_user")
def test_with_a_token_other_hosts_pass_authentication_but_not_shared_memory(plane):
    plane.auth_token = "t0ken"
    try:
        rest.attach(plane)
        stranger = TestClient(rest.app, client=("10.0.0.7", 5000), headers={"authorization": "Bearer t0ken"})
        assert stranger.post("/v2/models/simple/infer", json={"inputs": [
            {"name": n, "shape": [1, 16], "datatype": "INT32", "data": [1] * 16} for n in ("INPUT0", "INPUT1")]}).status_code == 200
        for response in (stranger.get("/v2/systemsharedmemory/status"), stranger.post("/v2/models/simple/infer", json=simple_request())):
            assert response.status_code == 400
            assert "system shared memory is only for clients on this host; this call came from 10.0.0.7" in response.json()["error"]
    finally:
        plane.auth_token = None
