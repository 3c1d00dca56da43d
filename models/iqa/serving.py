"""Serving for `iqa`: decode, validate and crop in the replica (per request), score the crops in batches.

Inputs (exactly one per request; both are optional in config.pbtxt):
- `IMAGE` BYTES [batch, 1]: encoded JPEG, PNG or WebP files.
- `IMAGE_RAW` UINT8 [batch, H, W, C]: decoded pixels, C = 3 (RGB), 1 (grey) or 4 (RGBA); a batch of equal-size images.

Why one model with two optional inputs rather than a second `iqa_raw` model: both paths become the same
fixed-shape crops in `preprocess`, so encoded and raw requests share one batch queue, one ONNX session and
one score histogram per version.

Conversions and limits (the model card repeats them):
- grey (1 channel, or PNG modes L / I;16 / 1) is replicated to RGB; an alpha channel (4 channels, PNG RGBA /
  LA, palette transparency) is composited over white — the same rule the training data used;
  CMYK / YCbCr JPEGs are converted to RGB. Any other channel count is refused.
- at least `min_side` (64) px on each side; at most `max_pixels` (default 16,777,216 = 4096²) pixels, checked
  from the file header before anything is decoded. Larger-than-training images are downscaled so the short
  side is `short_side` (256, the scale of the training pictures); smaller ones are scored as they are.
- four 64×64 crops at fixed positions (models/iqa/crops.py): one image always gets one score, alone or in a batch.
Every refusal is `InvalidInput` naming the input, the element and what was expected (400 / INVALID_ARGUMENT).
"""
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from serve.errors import InvalidInput
from serve.handler import ModelHandler
from serve.runtimes.onnx import OnnxRuntime

from .crops import CROP, fixed_crops

FORMATS = {"JPEG", "PNG", "WEBP"}


def to_rgb(im: Image.Image) -> Image.Image:
    """Grey -> RGB; alpha composited over white; CMYK/YCbCr/palette -> RGB."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey PNG: keep the top 8 bits
        return Image.fromarray((np.asarray(im, np.uint32) >> 8).clip(0, 255).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


class IqaHandler(ModelHandler):
    placement = "ingress"

    def __init__(self, model_dir, params, input_names, output_names, num_threads, device):
        super().__init__(model_dir, params, input_names, output_names, num_threads, device)
        self.max_pixels = int(self.params.get("max_pixels", 4096 * 4096))
        self.min_side = int(self.params.get("min_side", CROP))
        self.short_side = int(self.params.get("short_side", 256))
        self.grid = int(self.params.get("crop_grid", 2))
        self.graph = OnnxRuntime(self.model_dir / "model.onnx", ["crops"], ["score", "level_probs"], num_threads, device)

    # ---- per request ---------------------------------------------------------------------------------
    def preprocess(self, inputs):
        given = [n for n in ("IMAGE", "IMAGE_RAW") if n in inputs]
        if len(given) != 1:
            raise InvalidInput(f"exactly one of the inputs 'IMAGE' (encoded bytes) or 'IMAGE_RAW' (UINT8 H×W×C) expected, got {given or 'neither'}")
        if given == ["IMAGE"]:
            items = inputs["IMAGE"].reshape(inputs["IMAGE"].shape[0], -1)
            if items.shape[0] == 0 or items.shape[1] != 1:
                raise InvalidInput(f"input 'IMAGE': shape {list(inputs['IMAGE'].shape)}; one encoded image per row expected")
            images = [self.decode(item, i) for i, item in enumerate(items[:, 0])]
        else:
            raw = inputs["IMAGE_RAW"]
            if raw.ndim != 4 or raw.shape[0] == 0 or raw.size == 0:
                raise InvalidInput(f"input 'IMAGE_RAW': shape {list(raw.shape)}; a non-empty [batch, H, W, C] UINT8 tensor expected")
            images = [self.from_array(a, i) for i, a in enumerate(raw)]
        return {"CROPS": np.stack([fixed_crops(self.rescale(im)[None], self.grid) for im in images])}

    def decode(self, data, index: int) -> Image.Image:
        where = f"input 'IMAGE' element {index}"
        if not isinstance(data, (bytes, bytearray)) or len(data) == 0:
            raise InvalidInput(f"{where}: empty; an encoded JPEG, PNG or WebP file expected")
        try:
            im = Image.open(io.BytesIO(data))
        except (UnidentifiedImageError, OSError, ValueError):
            raise InvalidInput(f"{where}: not a decodable image ({len(data)} bytes); JPEG, PNG or WebP expected") from None
        if im.format not in FORMATS:
            raise InvalidInput(f"{where}: format {im.format}; JPEG, PNG or WebP expected")
        self.check_size(im.size[0], im.size[1], where)  # from the header, before the pixels are decoded
        try:
            im.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise InvalidInput(f"{where}: the {im.format} data is truncated or corrupt ({e})") from None
        return to_rgb(im)

    def from_array(self, a: np.ndarray, index: int) -> Image.Image:
        where = f"input 'IMAGE_RAW' image {index}"
        h, w, c = a.shape
        self.check_size(w, h, where)
        if c not in (1, 3, 4):
            raise InvalidInput(f"{where}: {c} channels; 3 (RGB), 1 (grey, replicated) or 4 (RGBA, composited over white) expected")
        a = np.ascontiguousarray(a)
        return to_rgb(Image.fromarray(a[..., 0] if c == 1 else a, {1: "L", 3: "RGB", 4: "RGBA"}[c]))

    def check_size(self, w: int, h: int, where: str) -> None:
        if w < self.min_side or h < self.min_side:
            raise InvalidInput(f"{where}: {w}×{h} pixels is smaller than the {self.min_side}×{self.min_side} crop; a larger image expected")
        if w * h > self.max_pixels:
            raise InvalidInput(f"{where}: {w}×{h} = {w * h} pixels is above the limit of {self.max_pixels}")

    def rescale(self, im: Image.Image) -> np.ndarray:
        w, h = im.size
        if min(w, h) > self.short_side:
            s = self.short_side / min(w, h)
            im = im.resize((max(self.min_side, round(w * s)), max(self.min_side, round(h * s))), Image.LANCZOS)
        return np.asarray(im, np.uint8)

    # ---- per batch -----------------------------------------------------------------------------------
    def infer(self, inputs):
        crops = inputs["CROPS"]  # [batch, crops, 3, 64, 64]
        n, k = crops.shape[:2]
        out = self.graph.infer({"crops": crops.reshape(n * k, *crops.shape[2:])})
        score = out["score"].reshape(n, k).mean(axis=1, keepdims=True)
        probs = out["level_probs"].reshape(n, k, -1).mean(axis=1)
        return {"SCORE": np.clip(score, 0.0, 100.0).astype(np.float32), "LEVEL_PROBS": probs.astype(np.float32)}
