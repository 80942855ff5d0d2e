"""The one preprocessing spec, shared by prep, training, evaluation, inference and the Lambda.

RGB, EXIF orientation applied, stretched (not cropped: cropping cuts items at the bin's edge) to
IMAGE_SIZE x IMAGE_SIZE with bilinear resampling, uint8 HWC. Mean/std normalisation happens inside the
model, so every caller sends uint8.

This module needs only Pillow (no numpy, no torch): the Lambda asset ships a copy of it.
"""

from __future__ import annotations

import io
import struct
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

SPEC_VERSION = "1"
IMAGE_SIZE = 224
CHANNELS = 3
SHAPE = (IMAGE_SIZE, IMAGE_SIZE, CHANNELS)  # one preprocessed photo: uint8 height x width x RGB
# Normalisation constants applied inside the model (ImageNet statistics).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# Decompression-bomb guard: a bin photo is at most a few megapixels; refuse absurd dimensions
# before decoding them.
MAX_PIXELS = 40_000_000
ACCEPTED_FORMATS = ("JPEG", "PNG")
# Tolerance between the draft-mode (Lambda) and full decode (prep/inference) paths, in uint8 levels:
# mean absolute difference measured ~0.4; tests assert below this.
DRAFT_MEAN_ABS_TOLERANCE = 3.0


class ImageError(ValueError):
    """A photo that cannot be used: the message says what is wrong and what to send instead."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def open_image(data: bytes, *, draft: bool = False) -> Image.Image:
    """Decode JPEG/PNG bytes to an RGB image at IMAGE_SIZE, following the spec.

    draft=True lets libjpeg decode at a reduced scale (>= IMAGE_SIZE) first: ~2x faster on large
    photos, within DRAFT_MEAN_ABS_TOLERANCE of the full decode.
    """
    if not data:
        raise ImageError("empty_image", "the image is empty (0 bytes): send a JPEG or PNG photo")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise ImageError("unsupported_image_format", f"the image is {image.format}, not JPEG or PNG: convert it to JPEG or PNG")
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    "image_too_large",
                    f"the image is {width}x{height} pixels, above the {MAX_PIXELS:,}-pixel limit: resize it (224x224 is enough)",
                )
            if draft and image.format == "JPEG":
                image.draft("RGB", (IMAGE_SIZE, IMAGE_SIZE))
            image.load()
            image = ImageOps.exif_transpose(image)
            image = image.convert("RGB")
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError("image_too_large", f"the image's dimensions are too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        raise ImageError("not_an_image", "the body is not a JPEG or PNG image: send the photo's bytes") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as error:
        raise ImageError("corrupt_image", f"the image could not be decoded ({error}): it may be truncated or damaged") from None
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return image


def preprocess_bytes(data: bytes, *, draft: bool = False) -> bytes:
    """JPEG/PNG bytes -> IMAGE_SIZE*IMAGE_SIZE*3 raw uint8 HWC bytes (row-major RGB)."""
    return open_image(data, draft=draft).tobytes()


def encode_npy_uint8(images: list[bytes]) -> bytes:
    """Pack preprocessed images into one `application/x-npy` uint8 [N, 224, 224, 3] array, without numpy."""
    expected = IMAGE_SIZE * IMAGE_SIZE * CHANNELS
    for index, raw in enumerate(images):
        if len(raw) != expected:
            raise ValueError(f"image {index} has {len(raw)} bytes, expected {expected} (preprocess it first)")
    shape = (len(images), IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}"
    # NPY v1.0: magic, version, little-endian header length; header padded so data starts 64-aligned.
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + b"".join(images)
