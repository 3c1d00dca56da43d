"""The ingress's own gRPC server (serve/grpc_ingress.py) keeps what Serve's server promised each call: a time limit,
a cap on concurrent calls and on message size, work stopped when the client leaves, and a port that several replicas
(or a replacement) can bind at once. Exercised in process with a servicer whose calls sleep as long as asked."""
import asyncio
import socket

import grpc
import pytest

from serve.grpc_ingress import start_grpc_server
from serve.launcher import free_loopback_port
from streamserve_proto import service_pb2 as pb, service_pb2_grpc

TIMEOUT_S = 0.5


class SleepingServicer:
    """ModelInfer sleeps `parameters["sleep_s"]` and answers with its `id`; ModelStreamInfer answers each request
    the same way. Records the calls that were cancelled, and the peer of each ModelInfer call."""

    def __init__(self, name: str = "one"):
        self.name, self.cancelled, self.peers = name, [], []

    async def _answer(self, request: bytes) -> pb.ModelInferResponse:
        message = pb.ModelInferRequest.FromString(request)
        try:
            await asyncio.sleep(message.parameters["sleep_s"].double_param)
        except asyncio.CancelledError:
            self.cancelled.append(message.id)
            raise
        return pb.ModelInferResponse(id=message.id, model_name=self.name)

    async def ModelInfer(self, request, context):
        self.peers.append(context.peer())
        return await self._answer(request)

    async def ModelStreamInfer(self, request_iterator, context):
        async for request in request_iterator:
            yield pb.ModelStreamInferResponse(infer_response=await self._answer(request))

    def __getattr__(self, rpc):
        async def unimplemented(request, context):
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, rpc)

        return unimplemented


def request(id: str, sleep_s: float = 0.0, padding: int = 0) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m", id=id, raw_input_contents=[b"\0" * padding] if padding else [])
    message.parameters["sleep_s"].double_param = sleep_s
    return message


async def serving(servicer, port: int, **limits):
    options = {"timeout_s": TIMEOUT_S, "max_concurrent_rpcs": 8, "max_message_bytes": 1 << 16} | limits
    return await start_grpc_server(servicer, f"127.0.0.1:{port}", **options)


async def call(port: int, message, timeout: float = 10):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            answer = await service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(message, timeout=timeout)
            return grpc.StatusCode.OK, answer
        except grpc.aio.AioRpcError as e:
            return e.code(), e.details()


def test_a_call_past_the_time_limit_ends_deadline_exceeded_and_its_work_stops():
    async def main():
        servicer, port = SleepingServicer(), free_loopback_port()
        server = await serving(servicer, port)
        try:
            fast, slow = await asyncio.gather(call(port, request("fast", 0.01)), call(port, request("slow", 5.0)))
        finally:
            await server.stop(None)
        return fast, slow, servicer.cancelled

    (fast_code, fast), (slow_code, details), cancelled = asyncio.run(main())
    assert fast_code == grpc.StatusCode.OK and fast.id == "fast"
    assert slow_code == grpc.StatusCode.DEADLINE_EXCEEDED and f"timed out after {TIMEOUT_S:g}s" in details
    assert cancelled == ["slow"]


def test_a_stream_past_the_time_limit_ends_deadline_exceeded_after_its_answers():
    async def main():
        port = free_loopback_port()
        server = await serving(SleepingServicer(), port)
        answers = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stream = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(
                    iter([request("a", 0.01), request("b", 0.01), request("c", 5.0)]), timeout=10)
                try:
                    async for answer in stream:
                        answers.append(answer.infer_response.id)
                except grpc.aio.AioRpcError as e:
                    return answers, e.code()
        finally:
            await server.stop(None)
        return answers, grpc.StatusCode.OK

    answers, code = asyncio.run(main())
    assert answers == ["a", "b"] and code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_calls_past_the_concurrency_cap_are_refused_resource_exhausted_at_once():
    async def main():
        port = free_loopback_port()
        server = await serving(SleepingServicer(), port, max_concurrent_rpcs=2, timeout_s=10)
        try:
            return await asyncio.gather(*(call(port, request(str(i), 0.5)) for i in range(5)))
        finally:
            await server.stop(None)

    codes = [code for code, _ in asyncio.run(main())]
    assert codes.count(grpc.StatusCode.OK) >= 2
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 1
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}


def test_a_message_above_the_limit_is_refused_unread_and_the_server_keeps_serving():
    async def main():
        port = free_loopback_port()
        server = await serving(SleepingServicer(), port, max_message_bytes=4096)
        try:
            return await call(port, request("big", padding=8192)), await call(port, request("small", padding=1024))
        finally:
            await server.stop(None)

    (big, _), (small, answer) = asyncio.run(main())
    assert big == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert small == grpc.StatusCode.OK and answer.id == "small"


def test_a_client_that_leaves_stops_its_call():
    async def main():
        servicer, port = SleepingServicer(), free_loopback_port()
        server = await serving(servicer, port, timeout_s=30)
        try:
            code, _ = await call(port, request("gone", 20.0), timeout=0.3)
            await asyncio.sleep(0.2)
        finally:
            await server.stop(None)
        return code, servicer.cancelled

    code, cancelled = asyncio.run(main())
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and cancelled == ["gone"]


def test_two_replicas_share_one_port_and_either_serves_alone_when_the_other_stops():
    async def main():
        port = free_loopback_port()
        first, second = SleepingServicer("first"), SleepingServicer("second")
        servers = [await serving(first, port), await serving(second, port)]
        answered = set()
        for i in range(40):  # each new connection lands on one of the two listeners
            code, answer = await call(port, request(str(i)))
            assert code == grpc.StatusCode.OK
            answered.add(answer.model_name)
        await servers[0].stop(None)
        alone = [await call(port, request(f"after-{i}")) for i in range(5)]
        await servers[1].stop(None)
        return answered, alone

    answered, alone = asyncio.run(main())
    assert answered == {"first", "second"}
    assert all(code == grpc.StatusCode.OK and answer.model_name == "second" for code, answer in alone)


def test_a_port_held_by_another_program_is_not_taken():
    async def main(port: int):
        with pytest.raises(RuntimeError):
            await serving(SleepingServicer(), port)

    with socket.socket() as taken:  # no SO_REUSEPORT: a listener of another program
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        asyncio.run(main(taken.getsockname()[1]))


def test_with_a_certificate_it_speaks_tls_only_and_sees_the_callers_address(tmp_path):
    """TLS mode needs no terminator in front: the server's own handshake (ALPN h2), plaintext refused, and the peer a
    servicer sees is the client's own address (which the token rule and shared memory rely on)."""
    from serve.testing import self_signed_pair

    certfile, keyfile = self_signed_pair(tmp_path)
    servicer = SleepingServicer()

    async def main():
        port = free_loopback_port()
        server = await serving(servicer, port, tls=(str(certfile), str(keyfile)))
        try:
            credentials = grpc.ssl_channel_credentials(root_certificates=certfile.read_bytes())
            async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
                answer = await service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request("secure"), timeout=10)
            plaintext = await call(port, request("plain"), timeout=5)
        finally:
            await server.stop(None)
        return answer, plaintext

    answer, (plain_code, _) = asyncio.run(main())
    assert answer.id == "secure" and plain_code == grpc.StatusCode.UNAVAILABLE
    assert len(servicer.peers) == 1 and "127.0.0.1" in servicer.peers[0]


def test_one_connection_outlives_the_http2_engines_stream_budget_without_a_failed_call():
    """zttp ends a connection that has opened 4,096 streams (its rapid-reset guard); a gRPC client keeps one connection
    for all its calls. The server moves the client to a new connection before that, and no call fails."""
    servicer = SleepingServicer()

    async def main():
        port = free_loopback_port()
        server = await serving(servicer, port, max_concurrent_rpcs=64)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

                async def caller(first: int):
                    for i in range(first, 4500, 16):
                        answer = await stub.ModelInfer(request(str(i)), timeout=30)
                        assert answer.id == str(i)

                await asyncio.gather(*(caller(k) for k in range(16)))
        finally:
            await server.stop(None)

    asyncio.run(main())
    assert len(servicer.peers) == 4500 and len(set(servicer.peers)) >= 2  # each connection is a client port of its own


def test_calls_the_client_cancels_past_the_engines_reset_budget_leave_the_connection_serving():
    """zttp also ends a connection after 256 stream resets, failing the calls then in flight on it; a client that
    cancels a call resets its stream."""
    async def main():
        servicer, port = SleepingServicer(), free_loopback_port()
        server = await serving(servicer, port, max_concurrent_rpcs=64, timeout_s=30)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
                steady = [asyncio.ensure_future(stub.ModelInfer(request(f"steady-{i}", 3.0), timeout=30)) for i in range(8)]
                codes = []
                for first in range(0, 320, 32):
                    calls = [stub.ModelInfer(request(f"gone-{i}", 5.0)) for i in range(first, first + 32)]
                    await asyncio.sleep(0.05)
                    for call in calls:
                        call.cancel()
                    for call in calls:
                        try:
                            await call
                        except asyncio.CancelledError:
                            pass
                        codes.append(await call.code())
                answers = [answer.id for answer in await asyncio.gather(*steady)]
                await asyncio.sleep(0.2)
        finally:
            await server.stop(None)
        return codes, answers, servicer.cancelled

    codes, answers, cancelled = asyncio.run(main())
    assert set(codes) == {grpc.StatusCode.CANCELLED} and len(codes) == 320
    assert answers == [f"steady-{i}" for i in range(8)]  # the calls in flight meanwhile were answered
    assert len(cancelled) == 320  # each cancelled call's work was stopped


def test_a_call_the_client_cancels_stops_its_work():
    async def main():
        servicer, port = SleepingServicer(), free_loopback_port()
        server = await serving(servicer, port, timeout_s=30)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request("cancelled", 20.0))
                await asyncio.sleep(0.3)
                call.cancel()
                await asyncio.sleep(0.3)
        finally:
            await server.stop(None)
        return servicer.cancelled

    assert asyncio.run(main()) == ["cancelled"]


def test_compressed_messages_are_read_and_unknown_or_malformed_calls_named():
    async def main():
        port = free_loopback_port()
        server = await serving(SleepingServicer(), port)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", compression=grpc.Compression.Gzip) as channel:
                zipped = await service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request("zipped", padding=2048))
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                outcomes = []
                for path, body in [("/inference.GRPCInferenceService/NoSuchCall", b""),
                                   ("/inference.GRPCInferenceService/ServerLive", b"\xff\xff\xff")]:
                    rpc = channel.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
                    try:
                        await rpc(body, timeout=10)
                        outcomes.append((grpc.StatusCode.OK, ""))
                    except grpc.aio.AioRpcError as e:
                        outcomes.append((e.code(), e.details()))
        finally:
            await server.stop(None)
        return zipped, outcomes

    zipped, [(unknown, unknown_details), (malformed, malformed_details)] = asyncio.run(main())
    assert zipped.id == "zipped"
    assert unknown == grpc.StatusCode.UNIMPLEMENTED and "NoSuchCall" in unknown_details
    assert malformed == grpc.StatusCode.INVALID_ARGUMENT and "malformed request message" in malformed_details
