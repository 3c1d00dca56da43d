"""The scenario table: model -> how to build one request. Adding a model is one entry in SCENARIOS.

Each entry gives the version to hit, a factory `rows -> {input name: numpy array}` (real test-split data
where the model has one, seeded random data otherwise) and whether the model is decoupled (streamed
rollouts: gRPC users then send them on a bidirectional stream and count the whole stream as one request).
Models missing from the repository are skipped by `available()`.
"""
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Scenario:
    version: str
    factory: Callable[[int], dict]
    decoupled: bool = False
    http: bool = True  # HTTP users (the v2 JSON route); decoupled models are gRPC-stream only


@lru_cache(maxsize=1)
def _digits() -> np.ndarray:
    from models.digits.data import load_splits

    return np.ascontiguousarray(load_splits()["test"][0][:64])


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _captions(b):
    return np.array([[b"a small thick red seven slanted left"]] * b, dtype=object)


def _steps(b, n):
    return np.full((b, 1), n, np.int32)


SCENARIOS: dict[str, Scenario] = {
    "simple": Scenario("1", lambda b: {"INPUT0": np.arange(16, dtype=np.int32)[None].repeat(b, 0),
                                       "INPUT1": np.ones((b, 16), np.int32)}),
    "digits_cnn": Scenario("2", lambda b: {"image": _digits()[:b]}),
    "digits_cnn_v1": Scenario("1", lambda b: {"image": _digits()[:b]}),
    "digits_cnn_torchscript": Scenario("1", lambda b: {"image": _digits()[:b]}),
    "shortcut_audit": Scenario("1", lambda b: {"image": _rng().random((b, 3, 8, 8), dtype=np.float32)}),
    "caption_match": Scenario("1", lambda b: {"image": _rng().random((b, 3, 16, 16), dtype=np.float32),
                                              "text": _captions(b)}),
    "heat1d": Scenario("1", lambda b: {"U": np.sin(np.linspace(0, np.pi, 64, dtype=np.float32))[None].repeat(b, 0),
                                       "STEPS": _steps(b, 10)}, decoupled=True, http=False),
    "kno_burgers": Scenario("1", lambda b: {"WINDOW": _rng().standard_normal((b, 10, 64), dtype=np.float32) * 0.1,
                                            "STEPS": _steps(b, 5)}, decoupled=True, http=False),
    "kno_ns2d": Scenario("1", lambda b: {"WINDOW": _rng().standard_normal((b, 10, 32, 32), dtype=np.float32) * 0.1,
                                         "STEPS": _steps(b, 3)}, decoupled=True, http=False),
    "fno_ns2d_nu1e5": Scenario("1", lambda b: {"WINDOW": _rng().standard_normal((b, 10, 32, 32), dtype=np.float32) * 0.1,
                                               "STEPS": _steps(b, 3)}, decoupled=True, http=False),
    "fno_ns2d_nu1e4": Scenario("1", lambda b: {"WINDOW": _rng().standard_normal((b, 10, 32, 32), dtype=np.float32) * 0.1,
                                               "STEPS": _steps(b, 3)}, decoupled=True, http=False),
    "iqa": Scenario("1", lambda b: {"IMAGE": np.array([[_png()]] * b, dtype=object)}),
    "bot_detector": Scenario("1", lambda b: {"ACCOUNT_IDS": _account_ids()[:b, None]}),
    "bot_detector_subgraph": Scenario("1", lambda b: _subgraph()),  # max_batch_size 0: one subgraph a request
    "account_clusters": Scenario("1", lambda b: {"ACCOUNT_IDS": _account_ids()[:b, None]}),
    "account_cluster_members": Scenario("1", lambda b: {"CLUSTER": np.array([3], np.int64)}),
}
# video_artifacts, backdoor_scan and account_clusters_job are jobs of seconds per request: they have their own
# bench scripts (loadtest/bench_video.py, bench_backdoor.py) rather than a closed-loop load scenario.


@lru_cache(maxsize=1)
def _png() -> bytes:
    import io

    from PIL import Image

    picture = (np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, "PNG")
    return buffer.getvalue()


@lru_cache(maxsize=1)
def _account_ids() -> np.ndarray:
    # The hosted snapshot is the training graph, regenerated from its seed and scale (models/graph/export.py).
    from models.graph.export import hosted_graph, load_trained

    return np.asarray(hosted_graph(load_trained()[1])["account_id"][:256], np.int64)


@lru_cache(maxsize=1)
def _subgraph() -> dict:
    """A caller's own 64-account subgraph: random features, 512 edges of all seven relation types."""
    rng = np.random.default_rng(0)
    n, e = 64, 512
    return {"NODE_FEATURES": rng.standard_normal((n, 788), dtype=np.float32), "EDGE_INDEX": rng.integers(0, n, (2, e)),
            "EDGE_TYPE": rng.integers(0, 7, e), "TARGETS": np.arange(8, dtype=np.int64)}


def json_safe(array: np.ndarray) -> bool:
    """Whether the v2 JSON body can carry this tensor: BYTES elements only as UTF-8 text. A file (`iqa`'s PNG) cannot,
    so HTTP users send such a tensor in the binary extension, as any client has to."""
    if array.dtype != object:
        return True
    try:
        for item in array.ravel():
            if isinstance(item, bytes):
                item.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def triton_inputs(client_module, arrays: dict[str, np.ndarray], json: bool = False) -> list:
    """One request's tensors for `tritonclient.http` or `tritonclient.grpc`. `json` (HTTP only): JSON tensors, except
    one JSON cannot carry (`json_safe`), which goes in the binary extension."""
    from tritonclient.utils import np_to_triton_dtype

    tensors = []
    for name, array in arrays.items():
        tensor = client_module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        if json:
            tensor.set_data_from_numpy(array, binary_data=not json_safe(array))
        else:
            tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def served_name(name: str) -> str:
    """Table keys may alias a version of a served model (digits_cnn_v1 -> digits_cnn)."""
    return "digits_cnn" if name == "digits_cnn_v1" else name


def available(repository: Path, names=None) -> list[str]:
    """Table entries whose model (and version) exist in `repository`, in table order."""
    out = []
    for name in names or SCENARIOS:
        if name not in SCENARIOS:
            raise KeyError(f"no scenario for {name!r}; known: {sorted(SCENARIOS)}")
        if (Path(repository) / served_name(name) / SCENARIOS[name].version).is_dir():
            out.append(name)
    return out
