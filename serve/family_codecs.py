"""Codecs a model family's handler shares with the others: BYTES elements in, JSON and bytes out, images.

Every reader bounds what it accepts before spending on it and raises `InvalidInput` naming the input and the
element, so each family refuses a bad request the same way.
"""
import io
import json
import struct
import zlib

import numpy as np

from .errors import InvalidInput


def one_bytes(inputs: dict[str, np.ndarray], name: str, what: str, max_bytes: int | None = None) -> bytes:
    """The single BYTES element of input `name` (`what` says what it should hold, for the refusal)."""
    if name not in inputs:
        raise InvalidInput(f"input '{name}': missing; expected BYTES [1] holding {what}")
    elements = np.asarray(inputs[name], dtype=object).ravel()
    if elements.size != 1:
        raise InvalidInput(f"input '{name}': expected exactly one element ({what}), got {elements.size}")
    data = elements[0]
    if isinstance(data, str):  # JSON clients send text; latin-1 maps each code point < 256 back to its byte
        data = data.encode("latin-1", errors="replace")
    if not isinstance(data, (bytes, bytearray)) or len(data) == 0:
        raise InvalidInput(f"input '{name}': expected {what}, got an empty element")
    if max_bytes is not None and len(data) > max_bytes:
        raise InvalidInput(f"input '{name}': {len(data)} bytes, above the limit of {max_bytes}")
    return bytes(data)


def bytes_tensor(*values: bytes | str) -> np.ndarray:
    """A BYTES output of the given elements (text is UTF-8 encoded)."""
    return np.array([v.encode() if isinstance(v, str) else bytes(v) for v in values], dtype=object)


def json_tensor(value) -> np.ndarray:
    """A BYTES [1] output holding one JSON document."""
    return bytes_tensor(json.dumps(value))


class ImageReader:
    """Encoded images from clients, decoded under a pixel budget that is checked from the headers first.

    Only the named Pillow plugins ever parse client bytes; any decoder error (truncated or corrupt data, Pillow's
    decompression-bomb guard) is a refusal of that element, never a server error.
    """

    # What Pillow's plugins raise on malformed or truncated data (mostly OSError / ValueError; the rest from raw chunk parsing)
    DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error)

    def __init__(self, formats: tuple[str, ...], max_pixels: int, min_side: int = 1, max_request_pixels: int | None = None):
        from PIL import Image, PngImagePlugin

        # Pillow inflates up to 64 MiB of compressed PNG text per file while it reads the header, before any check:
        # pictures to score carry no such metadata worth that, so text chunks are held to 1 MiB in this process.
        PngImagePlugin.MAX_TEXT_CHUNK = PngImagePlugin.MAX_TEXT_MEMORY = 1 << 20
        self._image = Image
        self.formats, self.max_pixels, self.min_side = tuple(formats), max_pixels, min_side
        self.max_request_pixels = max_request_pixels
        names = [f if f != "WEBP" else "WebP" for f in self.formats]
        self.named = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)

    def open(self, data, where: str):
        """The file with only its header parsed and its declared size checked; no pixel is decoded yet."""
        Image = self._image
        if not isinstance(data, (bytes, bytearray)) or len(data) == 0:
            raise InvalidInput(f"{where}: empty; an encoded {self.named} file expected")
        try:
            im = Image.open(io.BytesIO(data), formats=self.formats)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # Pillow's own, higher ceiling
            raise InvalidInput(f"{where}: the header declares an image above the limit of {self.max_pixels} pixels ({e})") from None
        except (self._image.UnidentifiedImageError, *self.DECODE_ERRORS):
            raise InvalidInput(f"{where}: not a decodable image ({len(data)} bytes); {self.named} expected") from None
        if im.format not in self.formats:  # a multi-picture JPEG opens as MPO through the JPEG plugin
            raise InvalidInput(f"{where}: format {im.format}; {self.named} expected")
        self.check_size(im.size[0], im.size[1], where)
        return im

    def decode(self, data, where: str):
        """The decoded image (a PIL image in its own mode)."""
        im = self.open(data, where)
        try:
            im.load()
        except self.DECODE_ERRORS as e:
            raise InvalidInput(f"{where}: the {im.format} data is truncated or corrupt ({e})") from None
        return im

    def check_size(self, w: int, h: int, where: str) -> None:
        if w < self.min_side or h < self.min_side:
            raise InvalidInput(f"{where}: {w}×{h} pixels is smaller than the {self.min_side}×{self.min_side} minimum; a larger image expected")
        if w * h > self.max_pixels:
            raise InvalidInput(f"{where}: {w}×{h} = {w * h} pixels is above the limit of {self.max_pixels}")

    def check_request(self, sizes: list[tuple[int, int]], where: str) -> None:
        """The per-request pixel budget: bounds what one request may make the replica decode and resize."""
        if self.max_request_pixels is None:
            return
        total = 0
        for i, (w, h) in enumerate(sizes):
            total += w * h
            if total > self.max_request_pixels:
                raise InvalidInput(f"{where} {i}: {w}×{h} pixels brings the request to {total} pixels, above the per-request "
                                   f"limit of {self.max_request_pixels}; fewer or smaller images per request expected")
