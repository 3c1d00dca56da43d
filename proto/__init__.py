"""The protocol the platform serves: KServe v2 / Open Inference Protocol, in Triton's gRPC dialect.

The message and service definitions are tritonclient's compiled `grpc_service.proto` and
`model_config.proto` (tritonclient 2.73, pinned in pyproject.toml), so our server and every Triton
or KServe client agree on one wire format by construction. We do not compile a second copy: two
copies of package `inference` in one process collide in protobuf's descriptor pool.

Why the aliases below: tritonclient's generated classes name their modules `grpc_service_pb2` and
`model_config_pb2` (no package). Ray Serve's gRPC proxy pickles each request to hand it to a replica,
and pickle finds classes by module name, so those two names must be importable in every process that
touches a message. Importing this package (the proxy does, through `add_servicer_to_server`) is enough.
"""
import sys

import grpc
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

sys.modules.setdefault("grpc_service_pb2", service_pb2)
sys.modules.setdefault("model_config_pb2", model_config_pb2)

#: The full method list of `inference.GRPCInferenceService`, from the compiled descriptor.
SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
RPC_NAMES = tuple(method.name for method in SERVICE.methods)

#: The RPCs whose requests reach the servicer as the received bytes, not parsed: inference requests carry the tensor
#: data, which the servicer reads in place (serve/grpc_servicer.py `parse_infer_request`) instead of through
#: protobuf's parser, which copies every bytes field.
RECEIVED_AS_BYTES = frozenset({"ModelInfer", "ModelStreamInfer"})


def add_servicer_to_server(servicer, server) -> None:
    """The generated registration (tritonclient's `service_pb2_grpc`), except for RECEIVED_AS_BYTES. What Ray Serve's
    `grpc_servicer_functions` names: importing it through this module installs the aliases."""
    handlers = {}
    for method in SERVICE.methods:
        kind = {(False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
                (True, False): grpc.stream_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}
        make = kind[(method.client_streaming, method.server_streaming)]
        request_class = getattr(service_pb2, method.input_type.name)
        response_class = getattr(service_pb2, method.output_type.name)
        handlers[method.name] = make(getattr(servicer, method.name),
                                     request_deserializer=None if method.name in RECEIVED_AS_BYTES else request_class.FromString,
                                     response_serializer=response_class.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    if hasattr(server, "add_registered_method_handlers"):  # grpcio >= 1.62 looks registered methods up first
        server.add_registered_method_handlers(SERVICE.full_name, handlers)


SERVICER_FUNCTION = f"{__name__}.add_servicer_to_server"

__all__ = ["model_config_pb2", "service_pb2", "service_pb2_grpc", "SERVICE", "RPC_NAMES", "RECEIVED_AS_BYTES", "SERVICER_FUNCTION"]
