"""Keypoint readers: a small U-Net that puts one heatmap (and one height map) per (task, point) on a
half-resolution grid of a camera frame, and the peak reader that turns a heatmap into a pixel.

Trained at the pixel where a point is seen (training.perception: targets from the simulator's
positions through kairos_sim.camera.CameraModel). Used on its own (training.perception.KeypointEstimator)
and inside the understanding encoder (`UnderstandingConfig.keypoint_tasks`), where its readings become
one more image token of the world model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

POINTS = ("object", "goal")      # env_state[0:3], env_state[3:6]


@dataclass
class KeypointNetConfig:
    """tasks: the task names with heatmaps (one per task and point). image_size: frame side (px);
    the heatmaps are image_size/2 square. width: channels of the first layer (x2 deeper)."""
    tasks: List[str] = field(default_factory=list)
    image_size: int = 64
    width: int = 32

    @property
    def grid(self) -> int:
        return self.image_size // 2

    @property
    def channels(self) -> int:
        return len(self.tasks) * len(POINTS)


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation),
                         nn.GroupNorm(math.gcd(8, cout), cout), nn.SiLU())


class KeypointNet(nn.Module):
    """A small U-Net: frames [N, 3, S, S] in [0, 1] -> heatmap logits [N, C, S/2, S/2] and heights
    [N, C, S/2, S/2] (m), C = tasks x POINTS. Image coordinates enter as two extra input channels
    (a point's place in the frame is what is asked for); dilated layers at S/4 give the context
    that places points without a marker of their own (a peg's hole from its box). cfg: anything
    with KeypointNetConfig's fields and properties (training.perception.KeypointConfig is one)."""

    def __init__(self, cfg):
        super().__init__()
        w, c = cfg.width, cfg.channels
        self.cfg = cfg
        self.stem = _block(5, w // 2)                      # S
        self.down1 = _block(w // 2, w, stride=2)           # S/2
        self.down2 = _block(w, 2 * w, stride=2)            # S/4
        self.context = nn.Sequential(_block(2 * w, 2 * w, dilation=2), _block(2 * w, 2 * w, dilation=4),
                                     _block(2 * w, 2 * w, dilation=8))
        self.fuse = _block(3 * w, w)                       # S/2: the context upsampled + down1's detail
        self.heat = nn.Conv2d(w, c, 1)
        self.height = nn.Conv2d(w, c, 1)
        s = cfg.image_size
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
        self.register_buffer("coords", torch.stack([xx, yy])[None], persistent=False)

    def forward(self, img_nchw: torch.Tensor):
        x = torch.cat([img_nchw * 2 - 1, self.coords.expand(len(img_nchw), -1, -1, -1)], 1)
        d1 = self.down1(self.stem(x))
        ctx = self.context(self.down2(d1))
        f = self.fuse(torch.cat([F.interpolate(ctx, scale_factor=2.0, mode="nearest"), d1], 1))
        return self.heat(f), self.height(f)


def heatmap_targets(pixels_n2: torch.Tensor, grid: int, image_size: int, sigma_px: float) -> torch.Tensor:
    """Pixel coordinates [N, 2] (column, row) -> target distributions [N, G, G] (a Gaussian of std
    sigma_px frame pixels, normalised); a pixel outside the frame gives all zeros (no loss)."""
    cell = image_size / grid
    centres = (torch.arange(grid, dtype=torch.float32) + 0.5) * cell              # [G] frame px
    gx = torch.exp(-0.5 * ((centres[None] - pixels_n2[:, :1]) / sigma_px) ** 2)  # [N, G]
    gy = torch.exp(-0.5 * ((centres[None] - pixels_n2[:, 1:]) / sigma_px) ** 2)
    t = gy[:, :, None] * gx[:, None, :]
    inside = ((pixels_n2 >= 0) & (pixels_n2 < image_size)).all(1).float()
    return t / t.sum((1, 2), keepdim=True).clamp_min(1e-12) * inside[:, None, None]


def read_peaks(logits_ng: torch.Tensor, heights_ng: torch.Tensor, image_size: int, window: int = 2):
    """Heatmap logits [N, G, G] and heights [N, G, G] -> pixel coordinates [N, 2] and heights [N]: the
    softmax-weighted mean over a (2*window+1)^2 neighbourhood of the strongest cell (a sub-cell
    estimate that a second, weaker blob elsewhere cannot pull off)."""
    n, g, _ = logits_ng.shape
    cell = image_size / g
    flat = logits_ng.reshape(n, -1)
    top = flat.argmax(1)
    r0, c0 = top // g, top % g
    offs = torch.arange(-window, window + 1)
    rows, cols = r0[:, None] + offs[None], c0[:, None] + offs[None]           # [N, W], may leave the grid
    valid = (((rows >= 0) & (rows < g))[:, :, None] & ((cols >= 0) & (cols < g))[:, None, :]).reshape(n, -1)
    rows, cols = rows.clamp(0, g - 1), cols.clamp(0, g - 1)
    idx = (rows[:, :, None] * g + cols[:, None, :]).reshape(n, -1)             # [N, W*W]
    p = torch.softmax(flat.gather(1, idx).masked_fill(~valid, float("-inf")), 1)
    rr = (rows[:, :, None].expand(-1, -1, len(offs)).reshape(n, -1).float() + 0.5) * cell
    cc = (cols[:, None, :].expand(-1, len(offs), -1).reshape(n, -1).float() + 0.5) * cell
    px = torch.stack([(p * cc).sum(1), (p * rr).sum(1)], 1)
    h = (p * heights_ng.reshape(n, -1).gather(1, idx)).sum(1)
    return px, h


def peak_confidence(logits_ng: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Heatmap logits [N, G, G] -> [N]: the probability mass (softmax over the whole grid) within the
    (2*window+1)^2 neighbourhood of the strongest cell, the neighbourhood read_peaks reads. Near 1 when
    the point is seen plainly; low when the heatmap is spread out (the point hidden or ambiguous)."""
    n, g, _ = logits_ng.shape
    flat = logits_ng.reshape(n, -1).float()
    top = flat.argmax(1)
    r0, c0 = top // g, top % g
    rows = torch.arange(g, device=flat.device)
    near_r = (rows[None] - r0[:, None]).abs() <= window                              # [N, G]
    near_c = (rows[None] - c0[:, None]).abs() <= window
    near = (near_r[:, :, None] & near_c[:, None, :]).reshape(n, -1)
    logp = torch.log_softmax(flat, 1)
    return logp.masked_fill(~near, float("-inf")).logsumexp(1).exp()


def hold_static(readings_bc3: torch.Tensor, conf_bc: torch.Tensor, held_bc3: torch.Tensor,
                held_conf_bc: torch.Tensor, static_c: torch.Tensor):
    """Keep the surest reading of points that do not move within an episode (a goal marker, a peg's
    hole): once the arm is over the scene a frame's reading can wander while the point has not moved
    (measured in closed loop: reach's goal 8.5 cm off on average vs 2.7 cm at the first frame). A
    trained net's confidences saturate (0.99-1.00), so in practice the first frame's reading is kept;
    a strictly surer later frame replaces it.

    readings [B, C, 3] and conf [B, C] (peak_confidence) of this frame; held [B, C, 3] and held_conf
    [B, C] the episode so far (held_conf 0 at its start); static [C] bool: the channels to hold.
    Returns (readings out [B, C, 3]: held ones for static channels, this frame's for the rest,
    held [B, C, 3], held_conf [B, C]). Pure tensor operations, so an exported graph carries it with
    held / held_conf as streaming state."""
    better = (conf_bc > held_conf_bc) & static_c[None]                             # [B, C]
    held = torch.where(better[..., None], readings_bc3, held_bc3)
    held_conf = torch.where(better, conf_bc, held_conf_bc)
    out = torch.where(static_c[None, :, None], held, readings_bc3)
    return out, held, held_conf


def static_channels(tasks, points=POINTS, static_points=("goal",)) -> torch.Tensor:
    """[len(tasks) * len(points)] bool: the channels (task-major, as KeypointNet orders them) of the
    points that stay put within an episode. In every MT10 task the goal does not move."""
    return torch.tensor([p in static_points for _ in tasks for p in points])
