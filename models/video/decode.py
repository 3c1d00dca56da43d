"""Streamed video decoding with PyAV: sampled YUV 4:2:0 frames, one at a time, never the whole file as frames.

Used both to read the training encodes and by the serving handler, so the model sees frames decoded the
same way in both places. No torch here (serving imports this module).

Sampling: frames are kept at `sample_fps` (default 12.5 fps: every 2nd frame of a 25 fps video) by
presentation time: a frame is kept when it is the first to fall into a new 1/sample_fps slot. Every
frame is still decoded (inter-coded video cannot skip), but only sampled ones are converted and analysed.
Frames are cropped to multiples of 16 (the analysis block size) from the top-left corner.

Hostile input: the header's facts are checked before decoding (`probe`), and every decoded frame again before it
is converted or counted as analysed: its size must be the stream's (a file may change resolution mid-stream) and
within the limits, its pixel format an ordinary planar one, and the frames and pixels decoded so far (sampled or
not: frames sharing one timestamp are decoded but never sampled) must stay within the caps. Only the codecs in
`CODECS` are decoded at all.
"""
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

BLOCK = 16
DEFAULT_SAMPLE_FPS = 12.5


# The only codecs decoded (codec names, not decoder names: AV1 is decoded by libdav1d). The model was trained on H.264,
# HEVC and MPEG-2 encodes; the others are common delivery codecs. Anything else (raw, lossless, image and legacy
# codecs) is refused before a frame is decoded: each extra decoder is attack surface, and those are not the encoding
# artifacts the model measures.
CODECS = ("h264", "hevc", "vp8", "vp9", "av1", "mpeg2video", "mpeg4", "mjpeg")
# What those decoders produce for ordinary video: planar YUV / grey / RGB of at most 12 bits, i.e. at most 6 bytes
# per pixel, so converting a checked frame to 8-bit 4:2:0 costs memory in proportion to its (checked) size.
PIXEL_FORMATS = frozenset(
    [f"yuv{c}p" for c in ("420", "422", "444", "440", "411", "410")]
    + [f"yuvj{c}p" for c in ("420", "422", "444", "440", "411")]
    + [f"yuv{c}p{b}le" for c in ("420", "422", "444") for b in (9, 10, 12)] + ["yuv440p10le", "yuv440p12le"]
    + ["nv12", "gray", "gray9le", "gray10le", "gray12le", "gbrp", "gbrp9le", "gbrp10le", "gbrp12le"])


class VideoError(ValueError):
    """The bytes are not a decodable video within the limits; the message says what was expected."""


@dataclass
class Limits:
    max_width: int = 1920
    max_height: int = 1088
    max_seconds: float = 600.0
    min_side: int = 32
    # Decoded frames, sampled or not: 600 s at 60 fps.
    max_frames: int = 36_000
    # Decoded pixels per second of presentation time, with one second of slack (1080p60): a stream may have decoded
    # at most max_pixel_rate * (t - t_first + 1) pixels by the frame at time t, so frames piled on one timestamp or
    # a very high frame rate are refused long before they cost more than a legitimate video of the same length.
    max_pixel_rate: float = 1920 * 1088 * 60


@dataclass
class Frame:
    index: int        # index among sampled frames
    time_s: float     # presentation time in seconds
    y: np.ndarray     # uint8 [H, W], H and W multiples of 16
    u: np.ndarray     # uint8 [H/2, W/2]
    v: np.ndarray     # uint8 [H/2, W/2]


def _open(source):
    import av  # imported here so `import models.video` stays cheap

    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise VideoError("expected an encoded video file (mp4/mkv/webm), got 0 bytes")
            return av.open(io.BytesIO(bytes(source)), mode="r", metadata_errors="ignore")
        return av.open(str(source), mode="r", metadata_errors="ignore")
    except VideoError:
        raise
    except Exception as e:  # av.error.InvalidDataError and friends: not a container we can read
        raise VideoError(f"expected an encoded video file (mp4/mkv/webm): cannot open it ({type(e).__name__}: {e})") from None


def probe(source, limits: Limits | None = None) -> dict:
    """Stream facts without decoding frames: codec, size, frame rate, duration."""
    limits = limits or Limits()
    with _open(source) as container:
        return _check_stream(container, limits)[1]


def _check_stream(container, limits: Limits):
    if not container.streams.video:
        raise VideoError("expected a file with a video stream, found none")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None or not ctx.name:
        raise VideoError("unsupported codec: the video stream's codec cannot be decoded here")
    codec = ctx.codec.canonical_name  # the codec, not the decoder: 'av1' when libdav1d decodes it
    if codec not in CODECS:
        raise VideoError(f"unsupported codec {codec!r}: expected one of {', '.join(CODECS)}")
    width, height = ctx.width, ctx.height
    if width > limits.max_width or height > limits.max_height:
        raise VideoError(f"resolution {width}x{height} above the limit {limits.max_width}x{limits.max_height}")
    if width and height and min(width, height) < limits.min_side:
        raise VideoError(f"resolution {width}x{height} below the minimum side {limits.min_side}")
    fps = float(stream.average_rate or stream.guessed_rate or 25)
    duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else (
        float(container.duration) / 1e6 if container.duration else None)
    if duration is not None and duration > limits.max_seconds + 1:
        raise VideoError(f"duration {duration:.1f} s above the limit {limits.max_seconds:.0f} s")
    return stream, {"codec": codec, "width": width, "height": height, "fps": fps, "duration_s": duration,
                    "container": container.format.name}


def iter_frames(source, sample_fps: float = DEFAULT_SAMPLE_FPS, limits: Limits | None = None, info: dict | None = None,
                threads: int = 1) -> Iterator[Frame]:
    """Sampled frames of the first video stream, in presentation order. Raises `VideoError` for
    unreadable, corrupt or out-of-limit input (also mid-stream: frames already yielded stay valid).
    `info`, if given, is filled with the probe facts and, at the end, the decoded/sampled counts.
    Closing the generator early (a client that left) stops decoding and closes the container."""
    limits = limits or Limits()
    import av

    container = _open(source)
    decoder = None
    try:
        stream, facts = _check_stream(container, limits)
        if info is not None:
            info.update(facts)
        stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        stream.codec_context.thread_count = threads
        fps = facts["fps"] or 25.0
        size = (facts["width"], facts["height"]) if facts["width"] and facts["height"] else None
        slot_prev, kept, decoded, pixels, t_first, t_last = -1, 0, 0, 0, None, None
        decoder = container.decode(stream)
        try:
            for frame in decoder:
                t = float(frame.time) if frame.time is not None else decoded / fps
                decoded += 1
                size = _check_frame(frame, decoded, size, limits)
                if info is not None and decoded == 1:
                    info.update(width=size[0], height=size[1])
                if decoded > limits.max_frames:
                    raise VideoError(f"{decoded} decoded frames, above the limit of {limits.max_frames} "
                                     "(frames that share a timestamp count too)")
                t_first = t if t_first is None else t_first
                t_last = t if t_last is None else max(t_last, t)
                pixels += frame.width * frame.height
                if pixels > limits.max_pixel_rate * (t_last - t_first + 1):
                    raise VideoError(f"{pixels} pixels decoded by {t_last - t_first:.2f} s of video, above the limit of "
                                     f"{limits.max_pixel_rate:.0f} pixels per second of video (+1 s)")
                if t > limits.max_seconds:
                    raise VideoError(f"duration above the limit {limits.max_seconds:.0f} s")
                slot = math.floor(t * sample_fps + 1e-6) if sample_fps < fps - 1e-6 else decoded - 1
                if slot <= slot_prev:
                    continue
                slot_prev = slot
                y, u, v = _planes(frame)
                yield Frame(kept, t, y, u, v)
                kept += 1
        except VideoError:
            raise
        except av.error.FFmpegError as e:
            raise VideoError(f"corrupt or truncated video stream after {decoded} frames ({type(e).__name__}: {e})") from None
        if info is not None:
            info.update(decoded=decoded, sampled=kept)
        if kept == 0:
            raise VideoError("expected at least one decodable video frame, found zero")
    finally:
        if decoder is not None:
            decoder.close()  # PyAV's demux/decode generators, before the container they read from
        container.close()


def _check_frame(frame, n: int, size: tuple[int, int] | None, limits: Limits) -> tuple[int, int]:
    """Decoded frame `n` (1-based) against the limits and the stream's size (the header's, else the first frame's),
    before anything is converted: a file may change resolution after a small first frame. Returns the size."""
    w, h, fmt = frame.width, frame.height, frame.format.name
    if w > limits.max_width or h > limits.max_height:
        raise VideoError(f"frame {n} resolution {w}x{h} above the limit {limits.max_width}x{limits.max_height}")
    if min(w, h) < limits.min_side:
        raise VideoError(f"frame {n} resolution {w}x{h} below the minimum side {limits.min_side}")
    if size is not None and (w, h) != size:
        raise VideoError(f"frame {n} is {w}x{h}, expected every frame at the stream's {size[0]}x{size[1]} "
                         "(resolution changes mid-stream are not supported)")
    if fmt not in PIXEL_FORMATS:
        raise VideoError(f"frame {n} pixel format {fmt!r} not supported: expected planar YUV, grey or RGB of at most 12 bits")
    return w, h


def _planes(frame):
    w, h = frame.width - frame.width % BLOCK, frame.height - frame.height % BLOCK
    if w < BLOCK or h < BLOCK:
        raise VideoError(f"frame {frame.width}x{frame.height} smaller than one {BLOCK}x{BLOCK} block")
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    a = frame.to_ndarray()  # (H*3/2, W): Y then U then V, each chroma plane (H/2, W/2) flattened row-wise
    H, W = frame.height, frame.width
    y = a[:H, :W]
    chroma = a[H:].reshape(-1)
    hw = ((H + 1) // 2) * ((W + 1) // 2)
    u = chroma[:hw].reshape((H + 1) // 2, (W + 1) // 2)
    v = chroma[hw:2 * hw].reshape((H + 1) // 2, (W + 1) // 2)
    return (np.ascontiguousarray(y[:h, :w]), np.ascontiguousarray(u[: h // 2, : w // 2]),
            np.ascontiguousarray(v[: h // 2, : w // 2]))


def read_all(path: Path | str | bytes, sample_fps: float = 1e9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Small clips only (training data): every frame as stacked planes Y [T,H,W], U, V [T,H/2,W/2]."""
    ys, us, vs = [], [], []
    for f in iter_frames(path, sample_fps=sample_fps):
        ys.append(f.y), us.append(f.u), vs.append(f.v)
    return np.stack(ys), np.stack(us), np.stack(vs)
