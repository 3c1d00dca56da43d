"""streamserve: KServe v2 / Open Inference Protocol serving on Ray Serve, from a Triton-layout repository."""

__version__ = "0.1.0"
