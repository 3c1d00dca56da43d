"""System shared memory on the real server (session fixtures): tritonclient's own shared-memory utilities over HTTP and
gRPC on `simple`, Triton's example clients run unchanged, and the hostile cases, each refused with a client error that
names the region or tensor while the server keeps serving.

The example clients in tests/serve/triton_examples/ are Triton's own, unchanged: src/python/examples/ of
https://github.com/triton-inference-server/client at commit 58a44caa0dce77303115302e6dbdf64626b2b093 (BSD-3-Clause,
NVIDIA; the licence header is in each file). They use fixed keys (/input_simple, ...) and unregister every region of
their caller first, so they run one at a time.
"""
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

EXAMPLES = Path(__file__).with_name("triton_examples")
A = np.arange(16, dtype=np.int32)[None]
B = np.full((1, 16), 3, np.int32)


@pytest.fixture()
def objects():
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


def clients(http, grpc, protocol):
    return (http, httpclient) if protocol == "http" else (grpc, grpcclient)


def refused(call) -> tuple[str, str]:
    """(status, message) of the error a tritonclient call raises: '400' / '404' over HTTP, 'StatusCode.X' over gRPC."""
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value.status(), caught.value.message()


def client_error(status: str) -> bool:
    return status in ("400", "StatusCode.INVALID_ARGUMENT", "StatusCode.ALREADY_EXISTS")


def simple_tensors(module, inputs_region="in", outputs_region="out"):
    inputs = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_shared_memory(inputs_region, 64)
    inputs[1].set_shared_memory(inputs_region, 64, offset=64)
    outputs = [module.InferRequestedOutput("OUTPUT0"), module.InferRequestedOutput("OUTPUT1")]
    outputs[0].set_shared_memory(outputs_region, 64)
    outputs[1].set_shared_memory(outputs_region, 64, offset=64)
    return inputs, outputs


def infer_simple(client, module):
    inputs, outputs = simple_tensors(module)
    return client.infer("simple", inputs, outputs=outputs)


def status_of(client, protocol, name=""):
    if protocol == "http":
        return client.get_system_shared_memory_status(name)
    return list(client.get_system_shared_memory_status(name, as_json=True).get("regions", {}).values())


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_simple_with_inputs_and_outputs_in_shared_memory(http, grpc, protocol, objects):
    client, module = clients(http, grpc, protocol)
    key_in, _ = objects(128, [A, B])
    key_out, out = objects(128)
    client.unregister_system_shared_memory()
    client.register_system_shared_memory("in", key_in, 128)
    client.register_system_shared_memory("out", key_out, 128)
    try:
        for _ in range(2):  # the same regions serve several requests
            result = infer_simple(client, module)
            np.testing.assert_array_equal(shm.get_contents_as_numpy(out, np.int32, [1, 16]), A + B)
            np.testing.assert_array_equal(shm.get_contents_as_numpy(out, np.int32, [1, 16], offset=64), A - B)
        if protocol == "http":  # no data in the body for outputs placed in shared memory, as Triton does
            assert result.get_response()["outputs"] == [{"name": "OUTPUT0", "datatype": "INT32", "shape": [1, 16]},
                                                        {"name": "OUTPUT1", "datatype": "INT32", "shape": [1, 16]}]
        else:
            assert list(result.get_response().raw_output_contents) == [b"", b""]
            assert [list(result.get_output(n).shape) for n in ("OUTPUT0", "OUTPUT1")] == [[1, 16], [1, 16]]
        regions = sorted(status_of(client, protocol), key=lambda r: r["name"])
        assert [(r["name"], r["key"], int(r["byte_size"])) for r in regions] == [("in", key_in, 128), ("out", key_out, 128)]
        assert [r["key"] for r in status_of(client, protocol, "out")] == [key_out]
        client.unregister_system_shared_memory("in")
        assert [r["name"] for r in status_of(client, protocol)] == ["out"]
        status, message = refused(lambda: infer_simple(client, module))
        assert status in ("404", "StatusCode.NOT_FOUND") and "input 'INPUT0': Unable to find shared memory region: 'in'" in message
    finally:
        client.unregister_system_shared_memory()
    assert status_of(client, protocol) == []


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_hostile_regions_are_client_errors(http, grpc, protocol, objects):
    client, module = clients(http, grpc, protocol)
    key, data = objects(128, [A, B])
    client.unregister_system_shared_memory()
    client.register_system_shared_memory("in", key, 128)
    client.register_system_shared_memory("out", key, 64, offset=64)  # OUTPUT0 overwrites INPUT1's place
    try:
        def infer(input0=("in", 64, 0), output0=("out", 64, 0)):
            inputs, outputs = simple_tensors(module, "in", "out")
            inputs[0].set_shared_memory(input0[0], input0[1], offset=input0[2])
            outputs[0].set_shared_memory(output0[0], output0[1], offset=output0[2])
            return lambda: client.infer("simple", inputs, outputs=outputs[:1])

        cases = [
            (infer(input0=("nope", 64, 0)), "input 'INPUT0': Unable to find shared memory region: 'nope'"),
            (infer(output0=("nope", 64, 0)), "output 'OUTPUT0': Unable to find shared memory region: 'nope'"),
            (infer(input0=("in", 64, 96)), "input 'INPUT0': shared_memory_offset 96 + shared_memory_byte_size 64 is outside region 'in' (128 bytes)"),
            (infer(input0=("in", 64, 128)), "shared_memory_offset 128 + shared_memory_byte_size 64 is outside region 'in'"),
            (infer(output0=("out", 128, 0)), "output 'OUTPUT0': shared_memory_offset 0 + shared_memory_byte_size 128 is outside region 'out' (64 bytes)"),
            (infer(input0=("in", 60, 0)), "input 'INPUT0': shared_memory_byte_size is 60, but 16 INT32 elements of shape [1, 16] take 64 bytes"),
            (infer(output0=("out", 32, 0)), "output 'OUTPUT0': its 64 bytes do not fit in the 32 bytes given by shared_memory_byte_size in region 'out'"),
            (lambda: client.register_system_shared_memory("big", key, 64, offset=96), "offset 96 + byte_size 64 runs past the end of"),
            (lambda: client.register_system_shared_memory("in", key, 8), "shared memory region 'in' already in manager"),
            (lambda: client.register_system_shared_memory("x", "/ss-missing-" + uuid.uuid4().hex, 8), "no such shared memory object in /dev/shm"),
        ]
        cases += [(lambda k=k: client.register_system_shared_memory("x", k, 8), "must be '/' and the name of a shared memory object")
                  for k in ("/a/b", "/..", "/../../etc/passwd", key + "/..", "/")]
        for call, fragment in cases:
            status, message = refused(call)
            assert fragment in message, (fragment, message)
            assert client_error(status) or ("Unable to find" in fragment and status in ("404", "StatusCode.NOT_FOUND")), (status, message)
            assert "Traceback" not in message and "internal" not in message
        name = f"ss-test-{uuid.uuid4().hex[:12]}"
        os.symlink("/etc/passwd", f"/dev/shm/{name}")
        try:
            status, message = refused(lambda: client.register_system_shared_memory("x", "/" + name, 8))
            assert client_error(status) and "is a symbolic link in /dev/shm" in message
        finally:
            os.unlink(f"/dev/shm/{name}")
        assert sorted(r["name"] for r in status_of(client, protocol)) == ["in", "out"]
        assert infer()().get_output("OUTPUT0") is not None  # still serving, the regions intact
        np.testing.assert_array_equal(shm.get_contents_as_numpy(data, np.int32, [1, 16], offset=64), A + B)
    finally:
        client.unregister_system_shared_memory()


@pytest.mark.skipif(os.geteuid() != 0, reason="making an object another user owns needs root")
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_another_users_object_cannot_be_registered(http, grpc, protocol, objects):
    """The server finds the caller's user from its loopback connection (/proc/net/tcp*): an object of another user
    is refused even though the server could open it."""
    client, _ = clients(http, grpc, protocol)
    key, _ = objects(64)
    os.chown("/dev/shm" + key, 65534, 65534)
    status, message = refused(lambda: client.register_system_shared_memory("theirs", key, 64))
    assert client_error(status) and f"belongs to uid 65534, not to the caller (uid {os.geteuid()})" in message
    assert status_of(client, protocol) == []


def test_too_many_regions(http, objects):
    key, _ = objects(64)
    http.unregister_system_shared_memory()
    try:
        for i in range(64):  # the default cap (STREAMSERVE_SHARED_MEMORY_MAX_REGIONS)
            http.register_system_shared_memory(f"r{i}", key, 1, offset=i)
        status, message = refused(lambda: http.register_system_shared_memory("one-more", key, 1))
        assert status == "400" and "64 regions are registered, the limit is 64 (STREAMSERVE_SHARED_MEMORY_MAX_REGIONS)" in message
    finally:
        http.unregister_system_shared_memory()
    assert http.get_system_shared_memory_status() == []


def test_cuda_shared_memory_is_not_offered(http, grpc):
    for client in (http, grpc):
        client.unregister_cuda_shared_memory()  # nothing registered: succeeds, as Triton's example clients expect
        status, message = refused(lambda: client.register_cuda_shared_memory("gpu", b"\0" * 64, 0, 64))
        assert client_error(status) and "CUDA shared memory is not supported by this server" in message
    assert http.get_cuda_shared_memory_status() == []
    assert "system_shared_memory" in http.get_server_metadata()["extensions"]
    assert "system_shared_memory" in grpc.get_server_metadata().extensions


@pytest.mark.parametrize("client, protocol", [
    ("simple_http_shm_client.py", "http"), ("simple_grpc_shm_client.py", "grpc"), ("simple_http_shm_string_client.py", "http"),
    ("simple_grpc_shm_string_client.py", "grpc"), ("reuse_infer_objects_client.py", "http"), ("reuse_infer_objects_client.py", "grpc"),
])
def test_triton_example_clients_pass_unchanged(server, client, protocol):
    url = server.http if protocol == "http" else server.grpc
    command = [sys.executable, str(EXAMPLES / client), "-u", url] + (["-i", "grpc"] if client.startswith("reuse") and protocol == "grpc" else [])
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    if client.startswith("reuse"):  # shared memory, then the same objects without it, then with it again
        assert result.stdout.count("======== SHARED_MEMORY") == 2 and result.stdout.count("======== END") == 3
    else:
        assert "PASS: system shared memory" in result.stdout
