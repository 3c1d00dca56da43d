"""Small models that prove the platform core: Triton's `simple`, a streamed `heat1d` rollout, python-backend handler
examples (handlers.py), and Triton's other example models under Triton's names and shapes (triton.py).

Triton's example clients (tritonclient's `src/python/examples`) run unchanged against `make serve` (HTTP 8000, gRPC
8001, as Triton), which serves `simple`, `simple_int8`, `simple_string`, `simple_identity`, `simple_sequence`,
`simple_dyna_sequence`, `simple_string_dyna_sequence`, `repeat_int32` and `custom_identity_int32`; the root README's
table says which pass and why the others do not, and `tests/serve/test_triton_examples_server.py` makes their calls
with tritonclient.
"""

# onnx 1.23 writes IR 14 by default; onnxruntime 1.31 reads up to IR 13.
IR_VERSION = 10
