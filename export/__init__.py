"""Trained models -> ONNX / TorchScript files -> a Triton-layout model repository."""
