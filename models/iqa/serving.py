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
- at least `min_side` px on each side; at most `max_pixels` pixels per image and `max_request_pixels` pixels per
  request, all images together (`IqaParams` below holds the defaults and bounds). Both are checked
  from the file headers of every image of the request before any pixel is decoded; then the images are decoded one
  at a time, each reduced to its crops before the next, so one decoded image is alive at once. A request's
  decoding memory and CPU are bounded by the size of one image and the budget, not by how well its files compress.
- only the JPEG, PNG and WebP decoders ever parse client bytes (`Image.open(formats=...)`); any decoder error
  (truncated or corrupt data, Pillow's decompression-bomb guard) is a refusal of that element.
- larger-than-training images are downscaled so the short side is `short_side` (the scale of the training
  pictures); smaller ones are scored as they are.
- four 64×64 crops at fixed positions (models/iqa/crops.py): one image always gets one score, alone or in a batch.
- the score mixes the network with a kernel regression on BRISQUE's 36 features of the (rescaled) image, or of its
  central `nss_max_side`² window when it is longer than that:
  SCORE = (1 - nss_share) x the network's score + nss_share x the level (`mixed_score`; the level is an RBF SVR kept
  as numbers in the version folder's `nss_level.json`, fitted by models/iqa/level.py). LEVEL_PROBS are the network's.
  With nss_share 0 the features are not computed and SCORE is the network's alone.
- a JPEG file scores at most what JPEGs of its quality reach (`jpeg_cap`; the quality is read from the file's
  quantisation table, the caps kept in the version folder's `jpeg_cap.json`, fitted by models/iqa/cap.py). Pixels sent
  as `IMAGE_RAW`, PNG and WebP files are not capped.
Every refusal is `InvalidInput` naming the input, the element and what was expected (400 / INVALID_ARGUMENT).
"""
import json

import numpy as np
from PIL import Image
from pydantic import Field

from models.nss import KernelLevel, brisque_features
from serve.sdk import HandlerParams, ImageReader, InvalidInput, ModelHandler, OnnxRuntime

from .crops import CROP, fixed_crops
from .jpeg import load_cap, quality_of

LEVEL_FILE = "nss_level.json"  # in the version folder, beside model.onnx
CAP_FILE = "jpeg_cap.json"  # the same

FORMATS = ("JPEG", "PNG", "WEBP")  # the only Pillow plugins that ever parse client bytes


class IqaParams(HandlerParams):
    """config.pbtxt parameters of `iqa` (models/iqa/export.py writes them from these defaults)."""

    max_pixels: int = Field(4096 * 4096, ge=CROP * CROP, description="pixels per image, checked from the header")
    max_request_pixels: int = Field(2 * 4096 * 4096, ge=CROP * CROP, description="pixels per request, all images together")
    min_side: int = Field(CROP, ge=CROP, description="shortest side accepted (a crop must fit)")
    short_side: int = Field(256, ge=CROP, description="larger images are downscaled to this short side (the training scale)")
    crop_grid: int = Field(2, ge=1, le=8, description="crops per side at fixed positions; an image's score is their mean")
    nss_share: float = Field(0.5, ge=0.0, le=1.0, description="weight of the NSS kernel level in SCORE; 0: the network alone")
    nss_max_side: int = Field(512, ge=CROP, le=4096, description="BRISQUE's features are of the central window at most this many px a side")
    jpeg_cap: bool = Field(True, description="a JPEG file scores at most what JPEGs of its quantisation table's quality reach")


def mixed_score(network: np.ndarray, level: np.ndarray | None, share: float) -> np.ndarray:
    """SCORE from the network's scores (N,) and the NSS level's (N,): what is served and what is evaluated."""
    return np.clip(network if not share else (1 - share) * network + share * level, 0.0, 100.0)


def load_level(path) -> KernelLevel:
    return KernelLevel(**json.loads(path.read_text())["level"])


def to_rgb(im: Image.Image) -> Image.Image:
    """Grey -> RGB; alpha composited over white; CMYK/YCbCr/palette -> RGB."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey PNG: keep the top 8 bits
        return Image.fromarray((np.asarray(im, np.uint32) >> 8).clip(0, 255).astype(np.uint8)).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")  # convert would copy an RGB image: 4 bytes a pixel


class IqaHandler(ModelHandler):
    placement = "ingress"

    Params = IqaParams

    def __init__(self, model_dir, params, input_names, output_names, num_threads, device):
        super().__init__(model_dir, params, input_names, output_names, num_threads, device)
        p = self.params
        self.images = ImageReader(FORMATS, p.max_pixels, p.min_side, p.max_request_pixels)
        self.graph = OnnxRuntime(self.model_dir / "model.onnx", ["crops"], ["score", "level_probs"], num_threads, device)
        self.level = load_level(self.model_dir / LEVEL_FILE) if p.nss_share else None
        self.cap = load_cap(self.model_dir / CAP_FILE) if p.jpeg_cap else None

    # ---- per request ---------------------------------------------------------------------------------
    def preprocess(self, inputs):
        given = [n for n in ("IMAGE", "IMAGE_RAW") if n in inputs]
        if len(given) != 1:
            raise InvalidInput(f"exactly one of the inputs 'IMAGE' (encoded bytes) or 'IMAGE_RAW' (UINT8 H×W×C) expected, got {given or 'neither'}")
        if given == ["IMAGE"]:
            items = inputs["IMAGE"].reshape(inputs["IMAGE"].shape[0], -1)
            if items.shape[0] == 0 or items.shape[1] != 1:
                raise InvalidInput(f"input 'IMAGE': shape {list(inputs['IMAGE'].shape)}; one encoded image per row expected")
            files = items[:, 0]
            # Every header first (open is lazy: no pixels), keeping only the sizes: a request over its budget
            # costs no decoding, and no parsed file (text chunks, WebP decoder state) outlives its check.
            where = "input 'IMAGE' element"
            self.images.check_request([self.images.open(data, f"{where} {i}").size for i, data in enumerate(files)], where)
            # One decoded image alive at a time: each is reduced to its crops before the next is decoded.
            crops, nss, quality = zip(*[self.read(data, f"{where} {i}") for i, data in enumerate(files)])
        else:
            raw = inputs["IMAGE_RAW"]
            if raw.ndim != 4 or raw.shape[0] == 0 or raw.size == 0:
                raise InvalidInput(f"input 'IMAGE_RAW': shape {list(raw.shape)}; a non-empty [batch, H, W, C] UINT8 tensor expected")
            n, h, w, c = raw.shape
            where = "input 'IMAGE_RAW'"  # one shape for the whole batch: checked once
            self.images.check_size(w, h, where)
            if c not in (1, 3, 4):
                raise InvalidInput(f"{where}: {c} channels; 3 (RGB), 1 (grey, replicated) or 4 (RGBA, composited over white) expected")
            self.images.check_request([(w, h)] * n, f"{where} image")
            crops, nss = zip(*[self.reduce(self.from_array(a)) for a in raw])
            quality = [np.nan] * n
        return {"CROPS": np.stack(crops), **({"NSS": np.stack(nss)} if self.level is not None else {}),
                **({"JPEG_QUALITY": np.array(quality, np.float64)} if self.cap is not None else {})}

    def read(self, data: bytes, where: str) -> tuple[np.ndarray, np.ndarray | None, float]:
        """One encoded image -> its crops, features and JPEG quality (NaN if not a JPEG). The decoded image lives only
        in this call, so it is released before the next image of the request is decoded."""
        im = self.images.decode(data, where)
        return *self.reduce(to_rgb(im)), quality_of(im)

    @staticmethod
    def from_array(a: np.ndarray) -> Image.Image:
        c = a.shape[2]
        a = np.ascontiguousarray(a)
        return to_rgb(Image.fromarray(a[..., 0] if c == 1 else a, {1: "L", 3: "RGB", 4: "RGBA"}[c]))

    def reduce(self, im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
        """One image at the training scale -> its [crops, 3, 64, 64] and, when the score uses them, BRISQUE's 36
        features of it (about 1.1 ms for 256×379 on this box). An image can stay 256 × 65,536 px after rescaling (a
        long strip within max_pixels): the features are of its central window of at most nss_max_side px a side, so
        their memory (~30 bytes a pixel) and time stay bounded whatever the aspect ratio."""
        pixels = self.rescale(im)
        crops = fixed_crops(pixels[None], self.params.crop_grid)
        if self.level is None:
            return crops, None
        h, w, side = pixels.shape[0], pixels.shape[1], self.params.nss_max_side
        y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
        return crops, brisque_features(pixels[y : y + side, x : x + side])

    def rescale(self, im: Image.Image) -> np.ndarray:
        w, h = im.size
        short_side, min_side = self.params.short_side, self.params.min_side
        if min(w, h) > short_side:
            s = short_side / min(w, h)
            im = im.resize((max(min_side, round(w * s)), max(min_side, round(h * s))), Image.LANCZOS)
        return np.asarray(im, np.uint8)

    # ---- per batch -----------------------------------------------------------------------------------
    def infer(self, inputs):
        crops = inputs["CROPS"]  # [batch, crops, 3, 64, 64]
        n, k = crops.shape[:2]
        out = self.graph.infer({"crops": crops.reshape(n * k, *crops.shape[2:])})
        level = self.level.predict_many(inputs["NSS"]) if self.level is not None else None
        score = mixed_score(out["score"].reshape(n, k).mean(axis=1), level, self.params.nss_share)
        if self.cap is not None:
            score = self.cap.apply(score, inputs["JPEG_QUALITY"])
        probs = out["level_probs"].reshape(n, k, -1).mean(axis=1)
        return {"SCORE": score[:, None].astype(np.float32), "LEVEL_PROBS": probs.astype(np.float32)}
