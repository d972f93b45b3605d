"""Camera images from ROS messages to model input, without cv_bridge (no wheel exists; the
encodings are simple). Plain numpy in, plain numpy out: testable without ROS."""
from __future__ import annotations

import numpy as np

# encoding -> (channels, channel order to get RGB)
ENCODINGS = {"rgb8": (3, (0, 1, 2)), "bgr8": (3, (2, 1, 0)), "rgba8": (4, (0, 1, 2)),
             "bgra8": (4, (2, 1, 0)), "mono8": (1, (0, 0, 0))}


class ImageError(ValueError):
    """A camera image the node cannot use; the message says what came and what was expected."""


def image_to_rgb(encoding: str, height: int, width: int, step: int, data, is_bigendian: int = 0) -> np.ndarray:
    """sensor_msgs/Image fields -> [H, W, 3] uint8 RGB (a copy)."""
    if encoding not in ENCODINGS:
        raise ImageError(f"camera image is {encoding!r}, expected one of {', '.join(ENCODINGS)}")
    ch, order = ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise ImageError(f"camera image is {width}x{height}, expected a positive size")
    if step < width * ch:
        raise ImageError(f"camera image row step {step} is shorter than width * channels = {width * ch}")
    buf = np.frombuffer(bytes(data) if not isinstance(data, (bytes, bytearray, memoryview)) else data,
                        dtype=np.uint8)
    if buf.size != step * height:
        raise ImageError(f"camera image holds {buf.size} bytes, expected step * height = {step * height}")
    img = buf.reshape(height, step)[:, :width * ch].reshape(height, width, ch)
    return np.ascontiguousarray(img[..., list(order)])


def decode_compressed(fmt: str, data) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png, as image_transport's compressed plugin writes)
    -> [H, W, 3] uint8 RGB, through Pillow."""
    import io
    from PIL import Image, UnidentifiedImageError
    if not any(k in fmt.lower() for k in ("jpeg", "jpg", "png")):
        raise ImageError(f"compressed image format {fmt!r} is not supported (jpeg or png)")
    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            return np.asarray(im.convert("RGB")).copy()
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"compressed image ({fmt}) cannot be decoded: {e}") from e


def resize_rgb(img_hwc: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize (area averaging / nearest) to size x size. uint8 in and out."""
    h, w, _ = img_hwc.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    sq = img_hwc[top:top + s, left:left + s]
    if s == size:
        return np.ascontiguousarray(sq)
    if s % size == 0:                               # exact area average
        f = s // size
        return sq.reshape(size, f, size, f, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    idx = (np.arange(size) * s / size + s / (2 * size)).astype(int)
    return np.ascontiguousarray(sq[idx][:, idx])


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of one shape (peak 255; identical images: 120 dB)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2) / 255 ** 2
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))
