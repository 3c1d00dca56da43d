"""Small models that prove the platform core: Triton's `simple`, a streamed `heat1d` rollout, python-backend handler
examples (handlers.py), and Triton's other example models under Triton's names and shapes (triton.py).

Triton's example clients (tritonclient's `src/python/examples`) run unchanged against `make serve`, which serves
`simple`, `simple_int8`, `simple_string`, `simple_identity`, `simple_sequence`, `simple_dyna_sequence`,
`simple_string_dyna_sequence`, `repeat_int32` and `custom_identity_int32`; pass `-u localhost:9000` to the gRPC
clients (Triton's default gRPC port is 8001). Those that need an extension this server does not offer (statistics,
system or CUDA shared memory), the image models, or a server named "triton" do not pass;
`tests/serve/test_triton_examples_server.py` makes the calls of the others with tritonclient. The model-control clients
check the size of Triton's own repository first, then stop at a load with a config override, which this server
refuses (`tests/serve/test_model_control_server.py`).
"""

# onnx 1.23 writes IR 14 by default; onnxruntime 1.31 reads up to IR 13.
IR_VERSION = 10
