"""A pinhole model of a rendered camera: world points to pixels and pixels back to rays.

MuJoCo draws a frame through an OpenGL camera (position, forward and up vectors, and a frustum at the
near plane); `CameraModel.from_scene` reads it from a renderer's scene after `update_scene`, so the
model is the one the frame was drawn with. Pure numpy, no simulator needed once made: perception
artifacts store it (`to_dict`) and lift the pixels they find to 3D at run time.

Pixel coordinates are (column, row) with pixel centres at .5: the top-left pixel spans [0, 1) x [0, 1).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Tuple

import numpy as np


@dataclass
class CameraModel:
    """pos [3] (m), forward / up / right [3] unit vectors; the frustum at distance `near` spans
    [left, left + width] x [bottom, top] (m); image_size: square frame side (px); flipped: the frame
    is drawn upside down and flipped back (Meta-World's own cameras)."""
    pos: Tuple[float, float, float]
    forward: Tuple[float, float, float]
    up: Tuple[float, float, float]
    right: Tuple[float, float, float]
    near: float
    left: float
    width: float
    bottom: float
    top: float
    image_size: int
    flipped: bool = False

    @classmethod
    def from_scene(cls, scene, image_size: int, flipped: bool = False) -> "CameraModel":
        """From a mujoco.MjvScene after update_scene (the mean of its two eye cameras, as MuJoCo's
        mono rendering uses)."""
        cams = scene.camera
        avg = lambda a: 0.5 * (np.asarray(getattr(cams[0], a), np.float64) + np.asarray(getattr(cams[1], a), np.float64))
        fwd, up = avg("forward"), avg("up")
        fwd = fwd / np.linalg.norm(fwd)
        up = up - fwd * (up @ fwd)
        up = up / np.linalg.norm(up)
        bottom, top = float(avg("frustum_bottom")), float(avg("frustum_top"))
        width = float(avg("frustum_width"))
        if width <= 0:           # MuJoCo leaves it 0: the viewport's aspect ratio decides (square frames)
            width = top - bottom
        return cls(tuple(avg("pos")), tuple(fwd), tuple(up), tuple(np.cross(fwd, up)), float(avg("frustum_near")),
                   float(avg("frustum_center")) - 0.5 * width, width, bottom, top, int(image_size), bool(flipped))

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "CameraModel":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})

    def _axes(self):
        return (np.asarray(self.pos), np.asarray(self.forward), np.asarray(self.up), np.asarray(self.right))

    def project(self, points_n3: np.ndarray) -> np.ndarray:
        """World points [N, 3] (m) -> pixel coordinates [N, 2]; points behind the camera give NaN."""
        pos, fwd, up, right = self._axes()
        d = np.atleast_2d(np.asarray(points_n3, np.float64)) - pos
        z = d @ fwd
        with np.errstate(divide="ignore", invalid="ignore"):
            x, y = self.near * (d @ right) / z, self.near * (d @ up) / z
        s = self.image_size
        col = (x - self.left) / self.width * s
        row = (self.top - y) / (self.top - self.bottom) * s
        if self.flipped:
            row = s - row
        out = np.stack([col, row], -1)
        out[z <= 0] = np.nan
        return out

    def rays(self, pixels_n2: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates [N, 2] -> (camera position [3], unit ray directions [N, 3])."""
        pos, fwd, up, right = self._axes()
        px = np.atleast_2d(np.asarray(pixels_n2, np.float64))
        s = self.image_size
        row = s - px[:, 1] if self.flipped else px[:, 1]
        x = self.left + px[:, 0] / s * self.width
        y = self.top - row / s * (self.top - self.bottom)
        d = self.near * fwd + x[:, None] * right + y[:, None] * up
        return pos, d / np.linalg.norm(d, axis=1, keepdims=True)

    def lift(self, pixels_n2: np.ndarray, heights_n: np.ndarray) -> np.ndarray:
        """The world points [N, 3] at heights [N] (world z, m) seen at pixels [N, 2]: each pixel's ray
        meets the horizontal plane at its height. NaN where the ray runs parallel to the plane."""
        pos, d = self.rays(pixels_n2)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (np.asarray(heights_n, np.float64) - pos[2]) / d[:, 2]
        t = np.where(np.abs(d[:, 2]) < 1e-9, np.nan, t)
        return pos + t[:, None] * d
