"""SSTAM's inference pipeline in numpy: saliency, block maps, temporal tokens, segment pooling.

Shared by training (with the torch modules as `block_fn` / `temporal_fn`), evaluation and serving (with
ONNX Runtime sessions), so the served numbers are the ones evaluated. No torch import here.

Per sampled frame (decode.py gives YUV 4:2:0 planes, sides multiples of 16):
- block maps: the block CNN gives 4 spatial intensities and `feat` features per 16x16 block;
- saliency per block (SALIENCY methods below), from a 1/8-resolution luma thumbnail;
- tokens: an 8x8 grid of regions (blocks averaged by region), each token = saliency-weighted CNN features,
  the region's 4 intensities, its mean absolute change from the previous sampled frame (thumbnail), its
  fine-detail energy (hf_blocks) and its saliency.
Per clip of CLIP sampled frames: the TimeSformer maps tokens [CLIP, 64, D] to (flickering, floating).
Per segment of SEG_CLIPS clips: spatial = saliency-weighted mean of block intensities over blocks and
frames; temporal = mean over clips; detail statistics (`frame_stats`: fine and coarse detail, 8x8 grid
blockiness, MSCN shape and neighbour correlation, chroma detail) = mean over every STATS_EVERY-th sampled frame,
and, when the pooling weighs them, BRISQUE's 36 features (NSS) = mean over every NSS_EVERY-th;
quality = 1 - soft_clip(b + w . intensities + v . statistics) with w >= 0 (so quality can only fall when an
intensity rises) and the weights fitted on the training encodes and the scored fresh sets (train.py, refit.py).
"""
import functools
import math
from dataclasses import dataclass, field

import numpy as np

from models.nss import brisque_features
from models.nss.brisque import FEATURE_NAMES
from models.nss.kernel import KernelLevel

from .decode import Frame

CLIP, SEG_CLIPS, GRID = 8, 2, 8
ARTIFACTS = ["blurring", "blocking", "bleeding", "ringing", "flickering", "floating"]
STATS = ["detail", "detail_spread", "coarse_detail", "blockiness_h", "blockiness_v", "mscn_shape", "mscn_neighbour",
         "chroma_detail"]
STATS_EVERY = 4  # ~16 ms per 720p frame: on every 4th sampled frame, ~50 ms per second of video at 12.5 fps
# BRISQUE's 36 natural-scene statistics (models.nss), after the 8 above, for a pooling fitted on them (run 12): the
# level of quality across sources that rung pairs within a source never teach. ~50 ms per 720p frame.
NSS = [f"nss_{name}" for name in FEATURE_NAMES]
NSS_EVERY = 4


def thumbnail(y: np.ndarray) -> np.ndarray:
    """Luma averaged over 8x8 pixels, float32 [H/8, W/8]."""
    import cv2

    H, W = y.shape
    return cv2.resize(y.astype(np.float32), (W // 8, H // 8), interpolation=cv2.INTER_AREA)  # exact 8x8 means


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def spectral_residual(thumb: np.ndarray) -> np.ndarray:
    """Hou & Zhang (CVPR 2007) on the thumbnail resized to 64 px wide: log-amplitude minus its 3x3 mean,
    back with the original phase, squared, blurred. The cheap anchor (what OpenCV contrib's
    StaticSaliencySpectralResidual computes at 64 px; contrib is not installed here). Returns [0, 1] at thumb size."""
    import cv2

    h, w = thumb.shape
    # only ever shrink: upsampling by pixel repetition would add spectral replicas the residual then "finds"
    small = cv2.resize(thumb, (64, max(8, round(64 * h / w))), interpolation=cv2.INTER_AREA) if w > 64 else thumb
    f = np.fft.fft2(small)
    logamp = np.log(np.abs(f) + 1e-6)
    residual = logamp - cv2.blur(logamp, (3, 3), borderType=cv2.BORDER_REFLECT)
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(f)))) ** 2
    sal = _blur(sal.astype(np.float32), 2.5 * small.shape[1] / 64)
    sal = cv2.resize(sal, (w, h), interpolation=cv2.INTER_LINEAR)
    return (sal - sal.min()) / (np.ptp(sal) + 1e-9)


def centre_prior(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d2 = ((yy + 0.5) / h - 0.5) ** 2 / 0.3 ** 2 + ((xx + 0.5) / w - 0.5) ** 2 / 0.3 ** 2
    return np.exp(-0.5 * d2)


def saliency(thumb: np.ndarray, prev: np.ndarray | None, method: str = "sstam") -> np.ndarray:
    """Per-thumbnail-pixel weights in [0, 1].
    - "uniform": all ones.
    - "spectral_residual": Hou & Zhang alone.
    - "sstam" (ours, low cost): 0.5 spectral residual + 0.25 centre prior + 0.25 motion contrast
      (|thumb - prev| blurred and normalised), then a floor of 0.1 so no region is ignored entirely."""
    if method == "uniform":
        return np.ones_like(thumb)
    sr = spectral_residual(thumb)
    if method == "spectral_residual":
        return sr
    motion = np.zeros_like(thumb) if prev is None else _blur(np.abs(thumb - prev), 1.5)
    motion = motion / (motion.max() + 4.0)  # small changes (noise, quantisation) stay near 0
    s = 0.5 * sr + 0.25 * centre_prior(*thumb.shape) + 0.25 * motion
    return 0.1 + 0.9 * (s - s.min()) / (np.ptp(s) + 1e-9)


MSCN_SIGMA = 7 / 6  # the 7x7 Gaussian window of BRISQUE's MSCN coefficients, here and in BlockCNN.mscn


def mscn(y: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised luma, float32 [H, W]: (y - mu) / (sigma + 1) with mu and sigma over a
    7x7 Gaussian window, mirrored borders (BlockCNN.mscn in torch, which the served graph leaves to this)."""
    import cv2

    # few fresh full-frame arrays: each costs its page faults, as much as the arithmetic on it
    k = cv2.getGaussianKernel(7, MSCN_SIGMA, cv2.CV_32F)
    mu = cv2.sepFilter2D(y, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT_101)
    sigma = cv2.sepFilter2D(cv2.multiply(y, y, dtype=cv2.CV_32F), -1, k, k, borderType=cv2.BORDER_REFLECT_101)
    sigma -= mu * mu
    np.sqrt(np.maximum(sigma, 0, out=sigma), out=sigma)
    sigma += 1
    out = cv2.subtract(y, mu, dtype=cv2.CV_32F)
    out /= sigma
    return out


def to_blocks(a: np.ndarray) -> np.ndarray:
    """Thumbnail-resolution map [H/8, W/8] -> block grid [H/16, W/16] (2x2 mean)."""
    h, w = a.shape
    return a.reshape(h // 2, 2, w // 2, 2).mean((1, 3))


@functools.lru_cache(maxsize=64)
def _regions(n: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and sizes of np.array_split's near-equal parts of range(n), min(grid, n) of them."""
    parts = np.array_split(np.arange(n), min(grid, n))
    return np.array([p[0] for p in parts]), np.array([len(p) for p in parts])


def region_pool(a: np.ndarray, grid: int = GRID) -> np.ndarray:
    """[..., h, w] -> [..., grid, grid]: mean over near-equal rectangles (np.array_split), any h, w >= 1."""
    h, w = a.shape[-2:]
    (r_starts, r_sizes), (c_starts, c_sizes) = _regions(h, grid), _regions(w, grid)
    sums = np.add.reduceat(np.add.reduceat(a, r_starts, axis=-2, dtype=np.float64), c_starts, axis=-1)
    out = (sums / np.outer(r_sizes, c_sizes)).astype(a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64)  # as .mean()
    if out.shape[-2:] != (grid, grid):  # fewer blocks than regions: repeat to fill the grid
        ri = np.arange(grid) * out.shape[-2] // grid
        ci = np.arange(grid) * out.shape[-1] // grid
        out = out[..., ri, :][..., ci]
    return out


def hf_blocks(y: np.ndarray) -> np.ndarray:
    """Per 16x16 block, log(1 + mean |y - 3x3 box mean of y|): fine detail, which falls when a frame is
    coded coarsely, so quality swings between frames (flicker) show up as swings of this value."""
    import cv2

    d = cv2.absdiff(y, cv2.blur(y, (3, 3), borderType=cv2.BORDER_REFLECT))  # uint8 throughout: SIMD, no copies
    H, W = y.shape
    return np.log1p(cv2.resize(d.astype(np.float32), (W // 16, H // 16), interpolation=cv2.INTER_AREA))


def frame_stats(y: np.ndarray, u: np.ndarray, v: np.ndarray, hf: np.ndarray) -> np.ndarray:
    """[len(STATS)] float32: the classical signals of coding loss, as inputs to the pooling beside the CNN's intensities.
    - detail, detail_spread: mean and spread over blocks of `hf_blocks` (fine detail, already computed per frame);
    - coarse_detail: the same on the 1/8 thumbnail, so detail lost to coding reads against the content's own scale;
    - blockiness_h / _v: log of the mean luma step across the 8-pixel grid's lines over the mean step anywhere
      (ffmpeg blockdetect's idea; 0 = no grid);
    - mscn_shape: (E|m|)^2 / E[m^2] of the MSCN coefficients m (BRISQUE's shape statistic: falls as a picture is
      blurred, rises with noise); mscn_neighbour: E[m(x) m(x+1)] / E[m^2] (neighbours correlate more when detail is lost);
    - chroma_detail: fine detail of the chroma planes (bleeding smears it)."""
    import cv2

    thumb = cv2.resize(y, (y.shape[1] // 8, y.shape[0] // 8), interpolation=cv2.INTER_AREA).astype(np.float32)
    coarse = np.log1p(cv2.absdiff(thumb, cv2.blur(thumb, (3, 3), borderType=cv2.BORDER_REFLECT)).mean())
    cols = cv2.reduce(cv2.absdiff(y[:, 1:], y[:, :-1]), 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel()
    rows = cv2.reduce(cv2.absdiff(y[1:], y[:-1]), 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel()
    blockiness_h = np.log((cols[7::8].mean() + 1) / (cols.mean() + 1))  # step j is between pixels j and j + 1
    blockiness_v = np.log((rows[7::8].mean() + 1) / (rows.mean() + 1))
    m = mscn(y)
    energy = cv2.mean(cv2.multiply(m, m))[0] + 1e-9
    shape = cv2.mean(cv2.absdiff(m, 0))[0] ** 2 / energy
    neighbour = cv2.mean(cv2.multiply(m[:, :-1], m[:, 1:]))[0] / energy
    chroma = np.log1p(sum(cv2.absdiff(c, cv2.blur(c, (3, 3), borderType=cv2.BORDER_REFLECT)).mean() for c in (u, v)) / 2)
    return np.array([hf.mean(), hf.std(), coarse, blockiness_h, blockiness_v, shape, neighbour, chroma], np.float32)


def token_dim(feat: int) -> int:
    return feat + 4 + 3


def frame_tokens(feats: np.ndarray, inten: np.ndarray, sal_b: np.ndarray, thumb: np.ndarray, prev: np.ndarray | None,
                 hf: np.ndarray) -> np.ndarray:
    """Tokens [GRID*GRID, feat + 7] of one frame. feats [feat, h, w], inten [4, h, w], sal_b, hf [h, w]."""
    s = sal_b / (sal_b.mean() + 1e-9)
    f = region_pool(feats * (0.5 + 0.5 * s))
    i = region_pool(inten)
    change = np.zeros_like(thumb) if prev is None else np.abs(thumb - prev)
    change = region_pool(to_blocks(change))[None] / 16.0
    contrast = region_pool(hf)[None] / 2.0
    sal = region_pool(sal_b)[None]
    tok = np.concatenate([f, i, change, contrast, sal], 0)  # [D, GRID, GRID]
    return tok.reshape(tok.shape[0], -1).T.astype(np.float32)


SOFT_EDGE = 0.1


def soft_clip(z: float) -> float:
    """z itself on [SOFT_EDGE, 1 - SOFT_EDGE], exponential tails toward 0 and 1 beyond: strictly increasing, in (0, 1),
    with a continuous slope. A hard clip tied every encode past either bound: on the first two fresh test sets 19 % and
    27 % of the served seed's scores sat at exactly 1.0, which cost its rung order 0.045 and 0.054 SRCC (README.md)."""
    if z < SOFT_EDGE:
        return SOFT_EDGE * math.exp((z - SOFT_EDGE) / SOFT_EDGE)
    if z > 1 - SOFT_EDGE:
        return 1 - SOFT_EDGE * math.exp((1 - SOFT_EDGE - z) / SOFT_EDGE)
    return float(z)


@dataclass
class Pooling:
    """quality = 1 - soft_clip(bias + weights . intensities + stat_weights . statistics); weights >= 0
    (fitted by train.fit_pooling_rank). Without stat_weights the statistics play no part; with fewer than the
    statistics given, the first ones (STATS before NSS) are used."""
    weights: list = field(default_factory=lambda: [0.3, 0.3, 0.1, 0.1, 0.1, 0.1])
    bias: float = 0.0
    stat_weights: list = field(default_factory=list)
    # optional: (1 - level_share) x the linear part + level_share x a kernel regression to VMAF's level
    level: KernelLevel | dict | None = None
    level_share: float = 0.0

    def __post_init__(self):
        if isinstance(self.level, dict):  # as stored in the weights' metadata
            self.level = KernelLevel(**self.level)

    def quality(self, intensities: np.ndarray, stats: np.ndarray | None = None) -> float:
        z = self.bias + np.dot(self.weights, intensities)
        if self.stat_weights:
            z += np.dot(self.stat_weights, stats[:len(self.stat_weights)])
        if self.level is not None and self.level_share:
            level = self.level.predict(np.concatenate([intensities, stats if stats is not None else []]))
            z = (1 - self.level_share) * z + self.level_share * level
        return 1.0 - soft_clip(float(z))

    @property
    def uses_nss(self) -> bool:
        level = self.level.features - len(ARTIFACTS) if self.level is not None and self.level_share else 0
        return max(len(self.stat_weights), level) > len(STATS)

    def qualities(self, features: np.ndarray) -> np.ndarray:
        """quality of each row of `features` [n, len(ARTIFACTS) + len(STATS) (+ len(NSS))] (intensities, then statistics)."""
        n = len(ARTIFACTS)
        return np.array([self.quality(x[:n], x[n:]) for x in features])


@dataclass
class SegmentResult:
    index: int
    start_s: float
    end_s: float
    frames: int
    intensities: np.ndarray   # [6] float32
    quality: float
    curve: list = field(default_factory=list)  # per-frame spatial intensities (for plots)
    # [len(STATS)] frame_stats' mean, then [len(NSS)] BRISQUE's features' mean when the pooling uses them
    stats: np.ndarray = field(default_factory=lambda: np.zeros(len(STATS), np.float32))

    def as_dict(self) -> dict:
        return {"index": self.index, "start_s": round(self.start_s, 4), "end_s": round(self.end_s, 4), "frames": self.frames,
                **{a: round(float(v), 6) for a, v in zip(ARTIFACTS, self.intensities)}, "quality": round(self.quality, 6)}


class Analyzer:
    """Stateful: feed sampled frames in order with `push`; it returns a SegmentResult whenever a segment
    is complete; `finish` flushes the last partial segment. `block_fn(y [N,1,H,W] u8, uv [N,2,H/2,W/2] u8)
    -> (intensities [N,4,h,w], features [N,F,h,w])`; `temporal_fn(tokens [N,CLIP,64,D]) -> [N,2]`.
    The carried state (`state()` / `load_state`) is what a segment sequence needs across requests."""

    def __init__(self, block_fn, temporal_fn, pooling: Pooling, saliency_method: str = "sstam",
                 clip: int = CLIP, seg_clips: int = SEG_CLIPS, batch: int = 4):
        self.block_fn, self.temporal_fn, self.pooling = block_fn, temporal_fn, pooling
        self.saliency_method, self.clip, self.seg_frames, self.batch = saliency_method, clip, clip * seg_clips, batch
        self.prev_thumb = None
        self.segment_index = 0
        self._reset_segment()
        self._pending: list[Frame] = []

    def _reset_segment(self):
        self.seg_spatial_num = np.zeros(4, np.float64)
        self.seg_frames_done, self.seg_clip_scores, self.clip_tokens, self.seg_start, self.seg_end = 0, [], [], None, 0.0
        self.seg_curve, self.seg_stats, self.seg_nss = [], [], []

    def push(self, frame: Frame) -> list[SegmentResult]:
        self._pending.append(frame)
        if len(self._pending) < self.batch:
            return []
        return self._flush_pending()

    def _flush_pending(self) -> list[SegmentResult]:
        frames, self._pending = self._pending, []
        if not frames:
            return []
        y = np.stack([f.y for f in frames])[:, None]
        uv = np.stack([np.stack([f.u, f.v]) for f in frames])
        inten, feats = self.block_fn(y, uv)
        out = []
        for k, f in enumerate(frames):
            r = self._frame(f, inten[k], feats[k])
            if r is not None:
                out.append(r)
        return out

    def _frame(self, f: Frame, inten: np.ndarray, feats: np.ndarray):
        thumb = thumbnail(f.y)
        sal_b = to_blocks(saliency(thumb, self.prev_thumb, self.saliency_method))
        w = sal_b / sal_b.sum()
        spatial = (inten * w).sum((1, 2))
        self.seg_spatial_num += spatial
        self.seg_curve.append([round(float(x), 5) for x in spatial])
        hf = hf_blocks(f.y)
        if self.seg_frames_done % STATS_EVERY == 0:
            self.seg_stats.append(frame_stats(f.y, f.u, f.v, hf))
        if self.pooling.uses_nss and self.seg_frames_done % NSS_EVERY == 0:
            self.seg_nss.append(brisque_features(f.y))
        self.clip_tokens.append(frame_tokens(feats, inten, sal_b, thumb, self.prev_thumb, hf))
        self.prev_thumb = thumb
        if self.seg_start is None:
            self.seg_start = f.time_s
        self.seg_end = f.time_s
        self.seg_frames_done += 1
        if len(self.clip_tokens) == self.clip:
            self._run_clip()
        if self.seg_frames_done == self.seg_frames:
            return self._close_segment()
        return None

    def _run_clip(self):
        toks = self.clip_tokens
        n = len(toks)
        if n < self.clip:  # a short last clip: repeat its last frame (zero change) up to CLIP frames
            last = toks[-1].copy()
            last[:, -3] = 0.0
            toks = toks + [last] * (self.clip - n)
        scores = np.asarray(self.temporal_fn(np.stack(toks)[None].astype(np.float32)))[0]
        self.seg_clip_scores.append((scores, n))
        self.clip_tokens = []

    def _close_segment(self) -> SegmentResult:
        if self.clip_tokens:
            self._run_clip()
        n = self.seg_frames_done
        spatial = self.seg_spatial_num / n
        weights = np.array([c for _, c in self.seg_clip_scores], np.float64)
        temporal = (np.stack([s for s, _ in self.seg_clip_scores]) * weights[:, None]).sum(0) / weights.sum()
        inten = np.concatenate([spatial, temporal]).astype(np.float32)
        stats = np.mean(self.seg_stats, 0)
        if self.seg_nss:
            stats = np.concatenate([stats, np.mean(self.seg_nss, 0)])
        stats = stats.astype(np.float32)
        r = SegmentResult(self.segment_index, float(self.seg_start), float(self.seg_end), n, inten,
                          self.pooling.quality(inten, stats), self.seg_curve, stats)
        self.segment_index += 1
        self._reset_segment()
        return r

    def finish(self) -> list[SegmentResult]:
        out = self._flush_pending()
        if self.seg_frames_done:
            out.append(self._close_segment())
        return out

    def state(self) -> np.ndarray:
        """prev thumbnail shape + values (for the change feature and motion saliency across a boundary)."""
        if self.prev_thumb is None:
            return np.zeros(2, np.float32)
        return np.concatenate([np.array(self.prev_thumb.shape, np.float32), self.prev_thumb.ravel()]).astype(np.float32)

    def load_state(self, s: np.ndarray) -> None:
        s = np.asarray(s, np.float32).ravel()
        if s.size >= 2 and s[0] > 0:
            h, w = int(s[0]), int(s[1])
            if s.size == 2 + h * w:
                self.prev_thumb = s[2:].reshape(h, w)


def summarize(segments: list[SegmentResult], pooling: Pooling, rung: Pooling | None = None) -> dict:
    """`rung`: the detail statistics' own pooling (train.fit_statistics_pooling), reported as `rung_score`."""
    frames = np.array([s.frames for s in segments], np.float64)
    inten = (np.stack([s.intensities for s in segments]) * frames[:, None]).sum(0) / frames.sum()
    stats = (np.stack([s.stats for s in segments]) * frames[:, None]).sum(0) / frames.sum()
    quality = float((np.array([s.quality for s in segments]) * frames).sum() / frames.sum())
    out = {"segments": len(segments), "frames_analysed": int(frames.sum()),
           "duration_s": round(float(segments[-1].end_s), 4) if segments else 0.0,
           "intensities": {a: round(float(v), 6) for a, v in zip(ARTIFACTS, inten)}, "quality": round(quality, 6),
           "pooled_quality": round(pooling.quality(inten, stats), 6)}
    if rung is not None:
        out["rung_score"] = round(rung.quality(inten, stats), 6)
    return out
