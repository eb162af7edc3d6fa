"""PNG/JPEG bytes → one float32 batch tensor, decoded with Pillow.

Pillow was chosen by measurement (``bench/results/preprocess.md``, 640×480 → normalized
224×224, fresh processes, shared 2-vCPU machine, two runs): 20 MB installed, 29-52 ms
import, PNG 24-37 ms and JPEG 8-10 ms per image. OpenCV headless is 160 MB and 10-12× the
import for no faster decode (PNG 17-51 ms, JPEG 9-30 ms); pypng (0.2 MB) is ~25× slower on PNG and has no JPEG; onnxruntime-extensions' PyPI
wheel registers no image-decode op (in-graph decoding needs a source build with OpenCV
codecs). It is imported only by image models, so other models' cold starts do not pay for it. Each image is decoded (only PNG and JPEG are
accepted), converted to RGB or L (by the number of channels in ``mean``), resized to
``size`` (bilinear), scaled to [0, 1], normalized with ``mean``/``std`` and laid out NCHW or
NHWC. A decompression bomb (more than :data:`MAX_PIXELS`) is refused before decoding.

Registered as the ``image`` input kind (:mod:`layers.kinds`): an ``image`` BYTES input of
PNG/JPEG files (raw with the binary extension, base64 in JSON); in a batch, each ``.png``/
``.jpg`` object is one request.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from layers.errors import BadRequest
from layers.kinds import InputKind, register
from layers.manifest import ManifestError

MAX_PIXELS = 40_000_000  # a 6 MB request cannot be a real photo larger than this
FORMATS = ("PNG", "JPEG")


class ImagePreprocessor:
    """``images`` (list of bytes) → ``{input: float32 [N, C, H, W] or [N, H, W, C]}``."""

    def __init__(self, config: dict[str, Any], model_input: str) -> None:
        from PIL import Image

        self._image = Image
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        self.input = model_input
        self.height, self.width = (int(v) for v in config["size"])
        self.mean = np.asarray(config["mean"], dtype=np.float32)
        self.std = np.asarray(config["std"], dtype=np.float32)
        self.mode = "RGB" if len(self.mean) == 3 else "L"
        self.nchw = config.get("layout", "NCHW") == "NCHW"

    def decode(self, index: int, data: bytes) -> np.ndarray:
        """One image → float32 ``[H, W, C]``, normalized."""
        Image = self._image
        try:
            with Image.open(io.BytesIO(data), formats=FORMATS) as img:
                img.draft(self.mode, (self.width, self.height))  # JPEG: decode at reduced scale
                pixels = img.convert(self.mode).resize((self.width, self.height), Image.Resampling.BILINEAR)
        except Image.DecompressionBombError:
            raise BadRequest(f"image {index} has more than {MAX_PIXELS:,} pixels; send a smaller image.") from None
        except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise BadRequest(
                f"image {index} is not a readable PNG or JPEG; send the file's bytes (base64 in JSON "
                "\"data\", or raw with the binary tensor extension)."
            ) from None
        arr = np.asarray(pixels, dtype=np.float32).reshape(self.height, self.width, -1) / 255.0
        return (arr - self.mean) / self.std

    def __call__(self, images: list[bytes]) -> dict[str, np.ndarray]:
        batch = np.stack([self.decode(i, b) for i, b in enumerate(images)])
        if self.nchw:
            batch = batch.transpose(0, 3, 1, 2)
        return {self.input: np.ascontiguousarray(batch, dtype=np.float32)}


class ImageKind(InputKind):
    name = noun = "image"
    batch_file_suffixes = (".png", ".jpg", ".jpeg")
    batch_hint = "upload each PNG/JPEG as its own object under in/"
    file_format = "PNG/JPEG"

    def preprocessor(self, config: Mapping[str, Any], files: Mapping[str, Path],
                     raw_inputs: list[str]) -> ImagePreprocessor:
        if len(raw_inputs) != 1:
            raise ManifestError(f"an image model takes one input; this one takes {raw_inputs}")
        return ImagePreprocessor(dict(config), raw_inputs[0])

    def item(self, index: int, value: Any) -> bytes:
        """Raw bytes (binary extension, batch) or base64 text (JSON ``data``, as KServe sends it)."""
        if not isinstance(value, str):
            return bytes(value)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"image {index} is a JSON string that is not base64; send the image file "
                             "base64-encoded in \"data\", or its raw bytes with the binary extension.") from None

    def primer(self, preprocessor: ImagePreprocessor) -> bytes:
        """A blank PNG of the model's size (so the decoder's first-use work is primed too)."""
        from PIL import Image

        buf = io.BytesIO()
        Image.new(preprocessor.mode, (preprocessor.width, preprocessor.height)).save(buf, format="PNG")
        return buf.getvalue()


IMAGE = register(ImageKind())
