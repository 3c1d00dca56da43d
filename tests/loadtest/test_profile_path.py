"""The request-path profile's attribution (loadtest/profile_path.py): a sample lands in the category of its innermost frame."""
from loadtest.profile_path import categorize, top_frames

RAW = "\n".join([
    "Thread.run (threading.py:982) 50",
    "Thread.run (threading.py:982);GRPCInferenceServicer.ModelInfer (serve/grpc_servicer.py:300);encode_infer_response (serve/grpc_servicer.py:170) 30",
    "Thread.run (threading.py:982);_limited_unary.<locals>.call (serve/grpc_ingress.py:60) 10",
    "Thread.run (threading.py:982);_server (grpc/aio/_server.py:120) 6",
    "Thread.run (threading.py:982);Histogram.observe (serve/metrics.py:90) 4",
    "not a sample line",
])


def test_our_grpc_modules_count_as_ours_and_grpcio_as_grpc():
    shares = categorize(RAW)
    assert shares["ours: adapters, data plane, batcher, worker"] == 0.4  # serve/grpc_*.py are ours, not grpcio's
    assert shares["gRPC / protobuf (Python)"] == 0.06
    assert shares["native: event loop, gRPC core (no Python frame)"] == 0.5
    assert shares["metrics"] == 0.04
    assert abs(sum(shares.values()) - 1) < 1e-9


def test_top_frames_name_the_innermost_function_without_its_line():
    frames = top_frames(RAW, count=2)
    assert frames == {"Thread.run (threading.py)": 0.5, "encode_infer_response (serve/grpc_servicer.py)": 0.3}
