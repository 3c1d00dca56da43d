"""Export SSTAM as `video_artifacts` (whole file in, segments streamed out) and `video_artifacts_segments`
(client-sent segments over one sequence). Both are python-backend models whose version folder holds
block_cnn.onnx (any frame size, sides multiples of 16), timesformer.onnx and sstam.json (pooling weights,
training metadata); the handlers are models.video.serving. Built from the committed weights
(models/video/weights/sstam.safetensors); if missing, `python -m models.video.train` runs first (~15 min).
"""
import io
import json
from pathlib import Path

import numpy as np
import onnx
import torch

from models.video.decode import CODECS
from models.video.pipeline import ARTIFACTS, CLIP, GRID, mscn
from models.video.serving import VideoParams

from export.onnx_export import MAX_IR_VERSION, check_parity
from export.served_model import ServedModel, Tensor

NAME, SEQ_NAME = "video_artifacts", "video_artifacts_segments"
FAMILY = Path(__file__).resolve().parent
REPORT = FAMILY / "report" / "results.md"
BUCKETS = ",".join(f"{x / 10:.1f}" for x in range(11))
TELEMETRY = {"output_histogram.INTENSITIES": BUCKETS, "output_labels.INTENSITIES": ",".join(ARTIFACTS), "output_histogram.QUALITY": BUCKETS}
INTENSITIES = Tensor("INTENSITIES", "FP32", (len(ARTIFACTS),), f"artifact intensities in [0, 1]: {', '.join(ARTIFACTS)}")
QUALITY = Tensor("QUALITY", "FP32", (1,), "quality in [0, 1] (1 = no artifact)")

MODEL = ServedModel(
    NAME, platform="python", handler="models.video.serving:VideoArtifactsHandler", params=VideoParams(), decoupled=True,
    inputs=(Tensor("VIDEO", "BYTES", (1,), f"one encoded video file (mp4 / mkv / webm), codec one of {', '.join(CODECS)}"),),
    outputs=(
        Tensor("SEGMENT_INDEX", "INT64", (1,), "the segment's position (one streamed response per segment)"),
        Tensor("SEGMENT_START_S", "FP32", (1,), "the segment's start, seconds"),
        Tensor("SEGMENT_END_S", "FP32", (1,), "the segment's end, seconds"),
        INTENSITIES, QUALITY,
        Tensor("SUMMARY", "BYTES", (1,), "the whole video's pooled result, JSON (the last response)"),
    ),
    server_params=TELEMETRY,
)

SEQ_MODEL = ServedModel(
    SEQ_NAME, platform="python", handler="models.video.serving:VideoSegmentsHandler", params=VideoParams(),
    inputs=(
        Tensor("SEGMENT", "BYTES", (1,), "one encoded segment of a live stream (a self-contained file)"),
        Tensor("SEGMENT_INDEX", "INT64", (1,), "the segment's position in the sequence, 0, 1, ... in order"),
    ),
    outputs=(INTENSITIES, QUALITY, Tensor("FRAMES", "INT64", (1,), "frames analysed in this segment"),
             Tensor("SUMMARY", "BYTES", (1,), "the segment's result and the running summary, JSON")),
    server_params=TELEMETRY,
    extra="""
sequence_batching {
  max_sequence_idle_microseconds: 60000000
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] }
  ]
  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
}""",
)


def _export(module, example, inputs, outputs, dynamic) -> bytes:
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module.eval(), example, buf, input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=17, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    onnx.checker.check_model(model)
    return model.SerializeToString()


class _ServedBlock(torch.nn.Module):
    """BlockCNN as ONNX Runtime runs it fastest, the same arithmetic:
    - an MSCN model's luma arrives as the coefficients (pipeline.mscn, in the handler: OpenCV takes 10-12 ms a 720p
      frame where the graph's own depthwise convolutions and elementwise steps took ~29);
    - the first body convolution over the concatenated luma and chroma features is the sum of its two halves, one
      per branch: the concatenation, and the layout reorders around it, were a third of the graph's time."""

    def __init__(self, cnn):
        super().__init__()
        self.cnn = cnn
        assert isinstance(cnn.body[0], torch.nn.ReLU) and isinstance(cnn.body[1], torch.nn.Conv2d), "BlockCNN.body changed"

    def forward(self, luma, uv):
        cnn, conv = self.cnn, self.cnn.body[1]
        if cnn.luma_input == "raw":
            luma = (luma - 128.0) / 64.0
        split = cnn.luma.out_channels
        branch = lambda x, weight, bias: torch.nn.functional.conv2d(torch.relu(x), weight, bias, conv.stride, conv.padding)
        x = branch(cnn.luma(luma), conv.weight[:, :split], conv.bias) + branch(cnn.chroma((uv - 128.0) / 32.0), conv.weight[:, split:], None)
        f = cnn.body[2:](x)
        return torch.sigmoid(cnn.head(f)), f


def export_graphs(cnn, tsf, token_dim: int) -> tuple[dict[str, bytes], dict]:
    # one name per distinct size: ONNX Runtime plans buffers by these names, and a shared name for luma and
    # (half-size) chroma made it reuse a [N, 2, H, W] buffer for a [N, 2, H/2, W/2] tensor
    axes = lambda h, w: {0: "batch", 2: h, 3: w}
    luma, _ = names = ["mscn" if cnn.luma_input == "mscn" else "y", "uv"]  # the handler reads the graph's luma input name
    block = _export(_ServedBlock(cnn), (torch.zeros(1, 1, 128, 128), torch.zeros(1, 2, 64, 64)), names, ["intensities", "features"],
                    {luma: axes("height", "width"), "uv": axes("height/2", "width/2"),
                     "intensities": axes("height/16", "width/16"), "features": axes("height/16", "width/16")})
    temporal = _export(tsf, (torch.zeros(1, CLIP, GRID * GRID, token_dim),), ["tokens"], ["scores"],
                       {"tokens": {0: "batch"}, "scores": {0: "batch"}})
    rng = np.random.default_rng(0)
    errors = {}
    for h, w in ((128, 128), (144, 256)):  # parity at the training size and at another (non-square) size
        y = rng.integers(0, 256, (2, 1, h, w)).astype(np.float32)
        uv = rng.integers(0, 256, (2, 2, h // 2, w // 2)).astype(np.float32)
        if luma == "y":
            errors[f"block_{h}x{w}"] = check_parity(cnn, block, {"y": y, "uv": uv}, atol=1e-4)
            continue
        coefficients = np.stack([mscn(frame) for frame in y[:, 0].astype(np.uint8)])[:, None]  # as the handler: from bytes
        errors[f"block_{h}x{w}"] = check_parity(_ServedBlock(cnn), block, {"mscn": coefficients, "uv": uv}, atol=1e-4)
        errors[f"block_{h}x{w}_from_luma"] = _served_block_error(cnn, block, y, coefficients, uv)
    errors["timesformer"] = check_parity(tsf, temporal, {"tokens": rng.normal(0, 1, (3, CLIP, GRID * GRID, token_dim)).astype(np.float32)}, atol=1e-4)
    return {"block_cnn.onnx": block, "timesformer.onnx": temporal}, errors


def _served_block_error(cnn, block: bytes, y, coefficients, uv, atol: float = 1e-3) -> dict:
    """What the handler computes (OpenCV's MSCN, then the graph) against the whole network in torch, from raw luma.
    Looser than the graph's own parity: the two MSCNs round E[y^2] - mu^2 differently where luma is nearly flat."""
    import onnxruntime as ort

    session = ort.InferenceSession(block, providers=["CPUExecutionProvider"])
    served = session.run(None, {"mscn": coefficients, "uv": uv})
    with torch.no_grad():
        reference = [t.numpy() for t in cnn(torch.from_numpy(y), torch.from_numpy(uv))]
    errors = {name: float(np.abs(a - b).max()) for name, a, b in zip(("intensities", "features"), served, reference)}
    if max(errors.values()) > atol:
        raise AssertionError(f"served block CNN (OpenCV MSCN + ONNX) differs from PyTorch by {errors} (atol {atol})")
    return errors


def card(meta: dict, errors: dict) -> str:
    readme = FAMILY / "README.md"
    body = readme.read_text() if readme.exists() else "(see models/video/README.md)"
    parity = "; ".join(f"{k}: " + ", ".join(f"{n} {v:.1e}" for n, v in e.items()) for k, e in errors.items())
    signatures = f"## Signatures\n\n### {NAME}\n\n{MODEL.signature()}\n\n### {SEQ_NAME}\n\n{SEQ_MODEL.signature()}\n"
    return body + f"\n\n{signatures}\n## Export\n`python -m export.build --only video`; ONNX parity against PyTorch (max abs error): {parity}.\n"


def build(root: Path) -> None:
    from models.video.train import WEIGHTS, Config, load, run

    from export.repository import write_model

    torch.set_num_threads(1)
    if not WEIGHTS.exists():
        print(f"no weights at {WEIGHTS}: training SSTAM (python -m models.video.train) ...", flush=True)
        run(Config(), log=lambda m: print(m, flush=True))
    cnn, tsf, pooling, meta = load(WEIGHTS)
    graphs, errors = export_graphs(cnn, tsf, meta["token_dim"])
    files = {**graphs, "sstam.json": json.dumps(meta, indent=1).encode()}
    text = card(meta, errors)
    write_model(root, NAME, MODEL.config_pbtxt(), {1: files}, text)
    write_model(root, SEQ_NAME, SEQ_MODEL.config_pbtxt(), {1: files}, text)


def torch_benchmarks() -> dict:
    """loadtest/gpu_bench: the per-block CNN on one 128×128 luma block with its chroma (a 1080p frame is ~130 blocks)."""
    from models.video.train import load

    cnn = load()[0]
    return {"video_artifacts (block CNN)": (cnn, lambda b: (torch.rand(b, 1, 128, 128) * 255, torch.rand(b, 2, 64, 64) * 255))}
