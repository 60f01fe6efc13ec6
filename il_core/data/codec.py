"""Image compression with OpenCV: RGB uint8 arrays in memory, JPEG or PNG bytes on disk.

OpenCV works in BGR order; the conversion happens here and nowhere else, so every other
module sees RGB (or single-channel) ``(H, W, C)`` arrays.
"""

from __future__ import annotations

import cv2
import numpy as np

from il_core.spec import FeatureSpec

# PNG level 1 is OpenCV's own default: higher levels cost 10-20 % more encode time for a few
# percent smaller files on camera images, and decoding speed does not depend on the level.
PNG_COMPRESSION = 1

# Decode straight to RGB where the OpenCV build supports it (>= 4.10), else convert. EXIF
# orientation is ignored: our frames carry none, and a rotated decode would change the shape.
_HAS_RGB_FLAG = hasattr(cv2, "IMREAD_COLOR_RGB")
_COLOR_FLAG = (
    cv2.IMREAD_COLOR_RGB if _HAS_RGB_FLAG else cv2.IMREAD_COLOR
) | cv2.IMREAD_IGNORE_ORIENTATION
_GRAY_FLAG = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION


class CodecError(ValueError):
    """Encoding or decoding one frame failed (the caller adds episode, file and key)."""


def encode_image(image: np.ndarray, feature: FeatureSpec) -> np.ndarray:
    """Compress one frame with the feature's codec.

    Args:
        image: ``(H, W, C)`` uint8, RGB for ``C == 3``; already checked against ``feature``.
        feature: The image :class:`~il_core.spec.FeatureSpec` (codec and JPEG quality).

    Returns:
        ``(N,)`` uint8 encoded bytes.

    Raises:
        CodecError: if OpenCV refuses the frame.
    """
    # Views with negative or odd strides (image[..., ::-1], crops) are not accepted by every
    # OpenCV function; a contiguous copy costs little next to the encoding.
    image = np.ascontiguousarray(image)
    if image.shape[2] == 3:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    else:
        bgr = np.ascontiguousarray(image[:, :, 0])
    if feature.codec == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(feature.quality)])
    else:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise CodecError(f"OpenCV could not encode a {image.shape} frame as {feature.codec}")
    return buf.reshape(-1)


def decode_image(data: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Decompress one frame (JPEG or PNG, detected from the bytes).

    Args:
        data: ``(N,)`` uint8 encoded bytes.
        shape: Expected ``(H, W, C)``.

    Returns:
        ``(H, W, C)`` uint8, RGB for ``C == 3``.

    Raises:
        CodecError: if the bytes do not decode, or decode to another shape.
    """
    if data.size == 0:
        raise CodecError("empty frame")
    channels = shape[2]
    img = cv2.imdecode(data, _COLOR_FLAG if channels == 3 else _GRAY_FLAG)
    if img is None:
        raise CodecError(f"OpenCV could not decode the frame ({data.size} bytes)")
    if channels == 3:
        if not _HAS_RGB_FLAG:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        img = img[:, :, None]
    if img.shape != tuple(shape):
        raise CodecError(f"frame decoded to shape {img.shape}, expected {tuple(shape)}")
    return img
