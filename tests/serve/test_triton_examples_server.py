"""The calls Triton's example clients make (tritonclient's src/python/examples), made here with tritonclient against
the real server, with the clients' own checks: HTTP and gRPC, sync, async, asyncio and streaming; raw gRPC stubs
with typed contents; Triton's example models (models/examples/triton.py).

Elsewhere: the statistics clients run unchanged in tests/serve/test_statistics_server.py, the system shared memory
clients in tests/serve/test_shared_memory_server.py, the model-control clients' calls in
tests/serve/test_model_control_server.py. Not anywhere: the image clients (their models are not in the repository)
and the server name the health clients check ("triton"). The repeat client's one-second delays are shortened
to keep the test quick; everything else is the clients' data.
"""
import asyncio
import queue
import uuid

import grpc as grpclib
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor

VALUES = [11, 7, 5, 3, 2, 0, 1]
IN0 = np.arange(16, dtype=np.int32)[None]
IN1 = np.ones((1, 16), np.int32)


def simple_inputs(module, binary=None):
    inputs = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]
    for tensor, data, as_binary in zip(inputs, (IN0, IN1), (False, True)):
        tensor.set_data_from_numpy(data, **({"binary_data": as_binary} if binary else {}))
    return inputs


def check_simple(result):
    assert (result.as_numpy("OUTPUT0") == IN0 + IN1).all() and (result.as_numpy("OUTPUT1") == IN0 - IN1).all()


def as_strings(array):
    return np.array([str(x).encode("utf-8") for x in array.ravel()], dtype=np.object_).reshape(array.shape)


# -- simple_{http,grpc}_infer_client, simple_{http,grpc}_async_infer_client, the keepalive and custom-args clients -----
def test_http_infer_client(http):
    outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True), httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)]
    query = {"test_1": 1, "test_2": 2}
    check_simple(http.infer("simple", simple_inputs(httpclient, binary=True), outputs=outputs, query_params=query, headers={"test": "1"}))
    check_simple(http.infer("simple", simple_inputs(httpclient, binary=True), outputs=None, query_params=query))
    with pytest.raises(InferenceServerException) as caught:
        http.infer("wrong_model_name", simple_inputs(httpclient, binary=True), outputs=outputs).get_response()
    assert caught.value.message().startswith("Request for unknown model")


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_http_infer_client_with_compression(http, compression):  # simple_http_infer_client --request-compression-algorithm
    result = http.infer("simple", simple_inputs(httpclient, binary=True), request_compression_algorithm=compression,
                        response_compression_algorithm=compression)
    check_simple(result)


@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_grpc_infer_client(grpc, compression):
    outputs = [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")]
    check_simple(grpc.infer("simple", simple_inputs(grpcclient), outputs=outputs, client_timeout=10, headers={"test": "1"},
                            compression_algorithm=compression))
    check_simple(grpc.infer("simple", simple_inputs(grpcclient), outputs=None, compression_algorithm=compression))


def test_async_infer_clients(http, grpc):
    check_simple(http.async_infer("simple", simple_inputs(httpclient), request_id="1",
                                  outputs=[httpclient.InferRequestedOutput("OUTPUT0"), httpclient.InferRequestedOutput("OUTPUT1")]).get_result())
    done: queue.Queue = queue.Queue()
    grpc.async_infer("simple", simple_inputs(grpcclient), lambda result, error: done.put((result, error)), request_id="1",
                     outputs=[grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")])
    result, error = done.get(timeout=30)
    assert error is None
    check_simple(result)


def test_keepalive_and_custom_channel_args_clients(server):
    keepalive = grpcclient.KeepAliveOptions(keepalive_time_ms=2**31 - 1, keepalive_timeout_ms=20000,
                                            keepalive_permit_without_calls=False, http2_max_pings_without_data=2)
    channel_args = [
        ("grpc.max_send_message_length", 1024 * 1024), ("grpc.max_receive_message_length", 1024 * 1024),
        ("grpc.keepalive_time_ms", 2**31 - 1), ("grpc.keepalive_timeout_ms", 20000), ("grpc.keepalive_permit_without_calls", False),
        ("grpc.http2.max_pings_without_data", 2), ("grpc.dns_enable_srv_queries", 1),
    ]
    for options in ({"keepalive_options": keepalive}, {"channel_args": channel_args}):
        client = grpcclient.InferenceServerClient(server.grpc, **options)
        outputs = [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")]
        check_simple(client.infer("simple", simple_inputs(grpcclient), outputs=outputs, headers={"test": "1"}))
        client.close()


# -- simple_{http,grpc}_aio_infer_client ---------------------------------------------------------------------------
def test_asyncio_infer_clients(server):
    async def main():
        for module, url in ((httpaio, server.http), (grpcaio, server.grpc)):
            async with module.InferenceServerClient(url) as client:
                outputs = [module.InferRequestedOutput("OUTPUT0"), module.InferRequestedOutput("OUTPUT1")]
                check_simple(await client.infer("simple", simple_inputs(module), outputs=outputs, headers={"test": "1"}))
                for result in await asyncio.gather(*(client.infer("simple", simple_inputs(module), outputs=None) for _ in range(2))):
                    check_simple(result)

    asyncio.run(main())


# -- simple_{http,grpc}_string_infer_client: simple_string and simple_identity ---------------------------------------
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_string_infer_client(http, grpc, protocol):
    client, module = (http, httpclient) if protocol == "http" else (grpc, grpcclient)
    inputs = [module.InferInput("INPUT0", [1, 16], "BYTES"), module.InferInput("INPUT1", [1, 16], "BYTES")]
    if protocol == "http":  # the HTTP client sends INPUT0 binary and INPUT1 as JSON, and asks for one output of each
        inputs[0].set_data_from_numpy(as_strings(IN0), binary_data=True)
        inputs[1].set_data_from_numpy(as_strings(IN1), binary_data=False)
        outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True), httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)]
    else:
        inputs[0].set_data_from_numpy(as_strings(IN0))
        inputs[1].set_data_from_numpy(as_strings(IN1))
        outputs = [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")]
    result = client.infer("simple_string", inputs, outputs=outputs)
    assert [int(x) for x in result.as_numpy("OUTPUT0")[0]] == (IN0 + IN1)[0].tolist()
    assert [int(x) for x in result.as_numpy("OUTPUT1")[0]] == (IN0 - IN1)[0].tolist()

    null_chars = np.array(["he\x00llo".encode("utf-8")] * 16, dtype=np.object_).reshape([1, 16])
    raw_bytes = np.array([b"\x00\x01\x02\x03"] * 16, dtype=np.bytes_).reshape([1, 16])
    for data in (null_chars, raw_bytes):
        for as_binary in ((True, False) if protocol == "http" else (None,)):
            flag = {"binary_data": as_binary} if as_binary is not None else {}
            tensor = module.InferInput("INPUT0", data.shape, "BYTES")
            tensor.set_data_from_numpy(data, **flag)
            out = client.infer("simple_identity", [tensor], outputs=[module.InferRequestedOutput("OUTPUT0", **flag)]).as_numpy("OUTPUT0")
            if data.dtype != np.object_:
                assert np.array_equal(data, np.char.encode(out.astype(str)))
            elif as_binary is False:  # JSON output: strings, which the client encodes back
                assert np.array_equal(data, np.array([bytes(str(x), encoding="utf-8") for x in out.flatten()], dtype=np.object_).reshape([1, 16]))
            else:
                assert np.array_equal(data, out)


# -- simple_{http,grpc}_sequence_sync_infer_client, simple_grpc_sequence_stream_infer_client, the asyncio stream one ---
def expected_sequences(dyna: bool, ids: tuple, string_results: list) -> list[tuple[int, int, int]]:
    """The clients' own expectations for their three sequences (two integer ids, one string id)."""
    rows = []
    for i in range(len(VALUES) + 1):
        int0, int1 = (1, 101) if i == 0 else (VALUES[i - 1], -VALUES[i - 1])
        if i == 0:
            string = 20 if dyna else 21
        elif dyna:
            string = -VALUES[i - 1] + int(string_results[i - 1])
        else:
            string = -VALUES[i - 1]
        if dyna and i != 0 and VALUES[i - 1] == 1:
            int0, int1, string = int0 + ids[0], int1 + ids[1], string + int(ids[2])
        rows.append((int0, int1, string))
    return rows


def sequence_plan(dyna: bool, offset: int):
    int_model = "simple_dyna_sequence" if dyna else "simple_sequence"
    string_model = "simple_string_dyna_sequence" if dyna else "simple_sequence"
    ids = (1000 + offset * 2, 1001 + offset * 2, str(1002 + offset) if dyna else str(uuid.uuid4()))
    return [(int_model, ids[0], [0] + VALUES), (int_model, ids[1], [100] + [-v for v in VALUES]), (string_model, ids[2], [20] + [-v for v in VALUES])], ids


def sequence_requests(module, model, sequence_id, values):
    for count, value in enumerate(values, 1):
        tensor = module.InferInput("INPUT", [1, 1], "INT32")
        tensor.set_data_from_numpy(np.full([1, 1], value, np.int32))
        yield {"model_name": model, "inputs": [tensor], "outputs": [module.InferRequestedOutput("OUTPUT")],
               "request_id": f"{sequence_id}_{count}", "sequence_id": sequence_id,
               "sequence_start": count == 1, "sequence_end": count == len(values)}


def check_sequences(dyna, ids, results):
    got = [(int(a[0][0]), int(b[0][0]), int(c[0][0])) for a, b, c in zip(*results)]
    assert len(got) == len(VALUES) + 1
    assert got == expected_sequences(dyna, ids, [c[0][0] for c in results[2]])


@pytest.mark.parametrize("dyna", [False, True], ids=["simple_sequence", "dyna"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sequence_sync_infer_client(http, grpc, protocol, dyna):
    client, module = (http, httpclient) if protocol == "http" else (grpc, grpcclient)
    plan, ids = sequence_plan(dyna, offset=10 + 2 * dyna + (protocol == "grpc"))
    results = []
    for model, sequence_id, values in plan:
        results.append([client.infer(**{k: v for k, v in r.items() if k != "request_id"}).as_numpy("OUTPUT")
                        for r in sequence_requests(module, model, sequence_id, values)])
    check_sequences(dyna, ids, results)


@pytest.mark.parametrize("dyna", [False, True], ids=["simple_sequence", "dyna"])
def test_sequence_stream_infer_client(server, dyna):
    plan, ids = sequence_plan(dyna, offset=20 + dyna)
    answers: queue.Queue = queue.Queue()
    with grpcclient.InferenceServerClient(server.grpc) as client:
        client.start_stream(callback=lambda result, error: answers.put(error or result))
        for model, sequence_id, values in plan:
            for request in sequence_requests(grpcclient, model, sequence_id, values):
                client.async_stream_infer(**request)
        received = [answers.get(timeout=30) for _ in range(3 * (len(VALUES) + 1))]
    assert not [r for r in received if isinstance(r, InferenceServerException)]
    by_id = {str(i): [] for i in ids}
    for result in received:  # requests of one sequence are answered in order
        by_id[result.get_response().id.split("_")[0]].append(result.as_numpy("OUTPUT"))
    check_sequences(dyna, ids, [by_id[str(i)] for i in ids])


@pytest.mark.parametrize("dyna", [False, True], ids=["simple_sequence", "dyna"])
def test_asyncio_sequence_stream_client(server, dyna):
    plan, ids = sequence_plan(dyna, offset=30 + dyna)

    async def main():
        async with grpcaio.InferenceServerClient(server.grpc) as client:
            async def requests():
                for model, sequence_id, values in plan:
                    for request in sequence_requests(grpcaio, model, sequence_id, values):
                        yield request

            return [response async for response in client.stream_infer(inputs_iterator=requests())]

    received = asyncio.run(main())
    assert len(received) == 3 * (len(VALUES) + 1) and all(error is None for _, error in received)
    by_id = {str(i): [] for i in ids}
    for result, _ in received:
        by_id[result.get_response().id.split("_")[0]].append(result.as_numpy("OUTPUT"))
    check_sequences(dyna, ids, [by_id[str(i)] for i in ids])


# -- simple_grpc_custom_repeat: repeat_int32, decoupled -----------------------------------------------------------------
def test_custom_repeat_client(server):
    repeat_count, data_offset, delay_ms, wait_ms = 10, 100, 20, 100  # the client waits 1000 ms per response
    inputs = [grpcclient.InferInput("IN", [repeat_count], "INT32"), grpcclient.InferInput("DELAY", [repeat_count], "UINT32"),
              grpcclient.InferInput("WAIT", [1], "UINT32")]
    inputs[0].set_data_from_numpy(np.arange(data_offset, data_offset + repeat_count, dtype=np.int32))
    inputs[1].set_data_from_numpy(np.ones([repeat_count], np.uint32) * delay_ms)
    inputs[2].set_data_from_numpy(np.array([wait_ms], np.uint32))
    answers: queue.Queue = queue.Queue()
    with grpcclient.InferenceServerClient(server.grpc) as client:
        client.start_stream(callback=lambda result, error: answers.put(error or result))
        client.async_stream_infer(model_name="repeat_int32", inputs=inputs, outputs=[grpcclient.InferRequestedOutput("OUT")])
        received = [answers.get(timeout=30) for _ in range(repeat_count)]
    assert not [r for r in received if isinstance(r, InferenceServerException)]
    assert [r.as_numpy("OUT").tolist() for r in received] == [[data_offset + i] for i in range(repeat_count)]


# -- grpc_explicit_{byte,int,int8}_content_client: raw gRPC stubs, typed contents in, raw outputs back ---------------------
def explicit_request(model, datatype, field, values0, values1):
    request = service_pb2.ModelInferRequest(model_name=model, model_version="")
    for name, values in (("INPUT0", values0), ("INPUT1", values1)):
        tensor = service_pb2.ModelInferRequest().InferInputTensor(name=name, datatype=datatype, shape=[1, 16])
        getattr(tensor.contents, field).extend(values)
        request.inputs.extend([tensor])
    request.outputs.extend([service_pb2.ModelInferRequest().InferRequestedOutputTensor(name=n) for n in ("OUTPUT0", "OUTPUT1")])
    return request


def explicit_outputs(response, decode):
    return [np.resize(decode(raw), list(output.shape)) for output, raw in zip(response.outputs, response.raw_output_contents)]


def test_explicit_content_clients(server):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpclib.insecure_channel(server.grpc))
    request = explicit_request("simple_string", "BYTES", "bytes_contents", [str(i).encode() for i in range(16)], [b"1"] * 16)
    sums, differences = explicit_outputs(stub.ModelInfer(request), deserialize_bytes_tensor)
    assert [int(x) for x in sums[0]] == [i + 1 for i in range(16)] and [int(x) for x in differences[0]] == [i - 1 for i in range(16)]

    for model, dtype in (("simple", np.int32), ("simple_int8", np.int8)):
        request = explicit_request(model, "INT32" if dtype == np.int32 else "INT8", "int_contents", list(range(16)), [1] * 16)
        sums, differences = explicit_outputs(stub.ModelInfer(request), lambda raw: np.frombuffer(raw, dtype=dtype))
        assert sums[0].tolist() == [i + 1 for i in range(16)] and differences[0].tolist() == [i - 1 for i in range(16)]

    request.model_version = "wrong_specification"  # the int8 client's last check
    with pytest.raises(grpclib.RpcError) as caught:
        stub.ModelInfer(request)
    assert "failed to get model version from specified version string 'wrong_specification'" in str(caught.value)

    request = explicit_request("simple", "INT32", "int_contents", list(range(16)), [1] * 16)  # the int client's last check
    request.raw_input_contents.extend([np.array(list(range(8))).tobytes()])
    request.inputs[0].contents.int_contents[:] = list(range(8, 16))
    with pytest.raises(grpclib.RpcError) as caught:
        stub.ModelInfer(request)
    assert "contents field must not be specified when using raw_input_contents for 'INPUT0' for model 'simple'" in str(caught.value)


# -- simple_{http,grpc}_health_metadata (all but the server's name), memory_growth_test, reuse_infer_objects_client ----
def test_health_and_metadata_clients(http, grpc):
    assert http.is_server_live(query_params={"test_1": 1, "test_2": 2}) and grpc.is_server_live(headers={"test": "1", "dummy": "2"})
    assert http.is_server_ready() and grpc.is_server_ready()
    assert http.is_model_ready("simple") and grpc.is_model_ready("simple")
    assert http.get_server_metadata()["name"] and grpc.get_server_metadata().name  # the clients insist on "triton"
    assert http.get_model_metadata("simple", query_params={"test_1": 1, "test_2": 2})["name"] == "simple"
    assert grpc.get_model_metadata("simple", headers={"test": "1", "dummy": "2"}).name == "simple"
    assert grpc.get_model_config("simple").config.name == "simple"
    for client in (http, grpc):
        with pytest.raises(InferenceServerException) as caught:
            client.get_model_metadata("wrong_model_name")
        assert "Request for unknown model" in caught.value.message()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_memory_growth_client(server, protocol):
    module, url = (httpclient, server.http) if protocol == "http" else (grpcclient, server.grpc)
    for _ in range(3):  # a new client per inference, as the client does (100 times)
        client = module.InferenceServerClient(url)
        tensor = module.InferInput("INPUT0", [1, 16], "INT32")
        tensor.set_data_from_numpy(IN0)
        out = client.infer("custom_identity_int32", [tensor], outputs=[module.InferRequestedOutput("OUTPUT0")]).as_numpy("OUTPUT0")
        assert out.dtype == IN0.dtype and out.shape == IN0.shape and np.array_equal(out, IN0)
        client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_reused_infer_objects(http, grpc, protocol):
    """reuse_infer_objects_client without its shared-memory half (the whole client runs in test_shared_memory_server.py):
    the same InferInput / InferRequestedOutput objects serve several requests."""
    client, module = (http, httpclient) if protocol == "http" else (grpc, grpcclient)
    inputs = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]
    outputs = [module.InferRequestedOutput("OUTPUT0"), module.InferRequestedOutput("OUTPUT1")]
    for factor in (1, 2, 3):
        inputs[0].set_data_from_numpy(IN0)
        inputs[1].set_data_from_numpy(IN1 * factor)
        for output in outputs:
            output.unset_shared_memory()
        result = client.infer("simple", inputs, outputs=outputs)
        assert result.get_output("OUTPUT0") is not None and result.get_output("OUTPUT1") is not None
        assert (result.as_numpy("OUTPUT0") == IN0 + IN1 * factor).all() and (result.as_numpy("OUTPUT1") == IN0 - IN1 * factor).all()
