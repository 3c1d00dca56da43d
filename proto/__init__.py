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

from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

sys.modules.setdefault("grpc_service_pb2", service_pb2)
sys.modules.setdefault("model_config_pb2", model_config_pb2)

#: The full method list of `inference.GRPCInferenceService`, from the compiled descriptor.
SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
RPC_NAMES = tuple(method.name for method in SERVICE.methods)

#: What Ray Serve's `grpc_servicer_functions` names: importing it through this module installs the aliases.
add_servicer_to_server = service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server
SERVICER_FUNCTION = f"{__name__}.add_servicer_to_server"

__all__ = ["model_config_pb2", "service_pb2", "service_pb2_grpc", "RPC_NAMES", "SERVICER_FUNCTION"]
