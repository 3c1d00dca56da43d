"""Small models that prove the platform core: Triton's `simple` and a streamed `heat1d` rollout."""

# onnx 1.23 writes IR 14 by default; onnxruntime 1.31 reads up to IR 13.
IR_VERSION = 10
