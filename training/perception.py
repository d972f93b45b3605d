"""Keypoint perception: find each task's object and goal in a camera frame at the pixel level.

The position heads of the BC policy and of the world model regress 3D positions from pooled image
features; on first frames of held-out scenes they find objects but place the goal markers (2 cm
spheres, 4-7 pixels from the `workspace` camera) no better than the training mean. This module
supervises where a point *is seen*: its projected pixel, computed from the simulator's positions and
the camera model (kairos_sim.camera), as a heatmap over a half-resolution grid (cross-entropy
against a Gaussian around the true pixel), plus the point's height read where the heatmap peaks.
The 3D position is the pixel's ray cut at that height (CameraModel.lift).

    kp = train_keypoints(frames_nhwc, tasks_n, env_state_n6, camera, KeypointConfig(minutes=10))
    est = KeypointEstimator(out_dir)          # after save_keypoints(out_dir, ...)
    est.positions(frames_nhwc, instruction)   # [N, 6]: object xyz, goal xyz (m), as MetaWorldSim.env_state

Training only ever reads the simulator's state as labels; at run time the estimator sees frames.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from kairos_model.keypoints import (POINTS, KeypointNet, KeypointNetConfig, heatmap_targets,  # noqa: F401
                                    hold_static, peak_confidence, read_peaks, static_channels)


@dataclass
class KeypointConfig(KeypointNetConfig):
    """The net's fields (tasks, image_size, width: kairos_model.keypoints.KeypointNetConfig) and its
    training: sigma_px: std of the target Gaussian (frame pixels). height_weight: weight of the height
    loss (m, L1, scaled by 10). minutes / max_steps / batch / lr / seed: training."""
    sigma_px: float = 1.5
    height_weight: float = 1.0
    minutes: float = 10.0
    max_steps: int = 0
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0


def task_of(instruction_or_task: str) -> str:
    """A task name from its instruction (kairos_sim.metaworld_sim.INSTRUCTIONS) or the name itself."""
    from kairos_sim.metaworld_sim import INSTRUCTIONS
    if instruction_or_task in INSTRUCTIONS:
        return instruction_or_task
    for t, text in INSTRUCTIONS.items():
        if text == instruction_or_task:
            return t
    raise ValueError(f"unknown task or instruction {instruction_or_task!r}")


def train_keypoints(frames_nhwc: np.ndarray, tasks_n: Sequence[str], env_state_n6: np.ndarray, camera,
                    cfg: KeypointConfig, progress: bool = True) -> Dict:
    """Train a KeypointNet on frames [N, S, S, 3] uint8 of tasks [N] (names) labelled with the
    simulator's env_state [N, 6] seen through `camera` (kairos_sim.camera.CameraModel).
    Returns {"net", "log": [(step, loss)], "steps", "seconds"}."""
    from tqdm import tqdm
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    tix = {t: i for i, t in enumerate(cfg.tasks)}
    unknown = sorted(set(tasks_n) - set(tix))
    if unknown:
        raise ValueError(f"frames of tasks {unknown} that the config does not list ({cfg.tasks})")
    n = len(frames_nhwc)
    pts = np.asarray(env_state_n6, np.float64).reshape(n, len(POINTS), 3)
    pix = torch.from_numpy(camera.project(pts.reshape(-1, 3)).reshape(n, len(POINTS), 2)).float()
    pix = torch.nan_to_num(pix, nan=-1.0)
    chan = torch.tensor([[tix[t] * len(POINTS) + k for k in range(len(POINTS))] for t in tasks_n])   # [N, P]
    z = torch.from_numpy(pts[:, :, 2]).float()                                                      # [N, P]
    imgs = torch.from_numpy(np.ascontiguousarray(frames_nhwc)).permute(0, 3, 1, 2)                  # uint8
    net = KeypointNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), cfg.lr, weight_decay=1e-4)
    G = cfg.grid
    log, step, t0 = [], 0, time.time()
    bar = tqdm(desc="keypoints", unit="step", disable=not progress)
    while True:
        if cfg.max_steps and step >= cfg.max_steps:
            break
        if not cfg.max_steps and time.time() - t0 > 60 * cfg.minutes:
            break
        i = torch.randint(0, n, (cfg.batch,), generator=g)
        logits, heights = net(imgs[i].float().div(255))
        c = chan[i]                                                                  # [B, P]
        lg = logits.gather(1, c[:, :, None, None].expand(-1, -1, G, G)).flatten(0, 1)   # [B*P, G, G]
        hg = heights.gather(1, c[:, :, None, None].expand(-1, -1, G, G)).flatten(0, 1)
        tgt = heatmap_targets(pix[i].flatten(0, 1), G, cfg.image_size, cfg.sigma_px)   # [B*P, G, G]
        ce = -(tgt.flatten(1) * torch.log_softmax(lg.flatten(1), 1)).sum(1)
        zhat = (tgt * hg).sum((1, 2))                    # the height where the point is
        inside = tgt.flatten(1).sum(1) > 0
        zl = (zhat - z[i].flatten()).abs() * 10
        loss = ((ce + cfg.height_weight * zl) * inside).sum() / inside.sum().clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        log.append((step, loss.item()))
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean([l for _, l in log[-20:]]):.3f}")
    bar.close()
    return {"net": net.eval(), "log": log, "steps": step, "seconds": time.time() - t0}


def save_keypoints(out: str, net: KeypointNet, camera, extra: Optional[dict] = None) -> None:
    """weights (safetensors) + config.json (KeypointConfig, the camera model, `extra`)."""
    from safetensors.torch import save_file
    os.makedirs(out, exist_ok=True)
    save_file(net.state_dict(), os.path.join(out, "keypoints.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"kind": "keypoints", "config": asdict(net.cfg), "camera": camera.to_dict(), **(extra or {})}, f,
                  indent=1)


def read_keypoint_doc(path: str) -> dict:
    """A keypoint artifact's config.json (KeypointConfig, camera model, camera name); a clear error for
    anything else."""
    doc_path = os.path.join(path, "config.json")
    if not os.path.isfile(doc_path):
        raise FileNotFoundError(f"{path} is not a keypoint artifact: {doc_path} is missing (train one with "
                                "python -m training.experiments.goal_pixels)")
    with open(doc_path) as f:
        doc = json.load(f)
    if doc.get("kind") != "keypoints":
        raise ValueError(f"{path} is not a keypoint artifact (kind {doc.get('kind')!r})")
    return doc


def keypoint_weights(path: str) -> Dict[str, torch.Tensor]:
    """A keypoint artifact's KeypointNet state dict (safetensors: nothing is unpickled)."""
    from safetensors.torch import load_file
    return load_file(os.path.join(path, "keypoints.safetensors"))


class KeypointEstimator:
    """Reads object and goal positions from camera frames with a saved KeypointNet: the heatmap peak's
    pixel, lifted to 3D at the height read there. The `positions` interface of BCEngine, so
    training.experiments.privileged_bc can run on it.

    hold_goals: the goal is read once and kept: each episode (reset() starts one) keeps the goal
    reading of the frame where its heatmap peak was surest (kairos_model.keypoints.hold_static), so
    the arm covering the goal later does not move it; `positions` is then stateful across calls."""

    def __init__(self, path: str, hold_goals: bool = False):
        from kairos_sim.camera import CameraModel
        doc = read_keypoint_doc(path)
        self.cfg = KeypointConfig(**doc["config"])
        self.camera = CameraModel.from_dict(doc["camera"])
        self.camera_name = doc.get("camera_name")
        self.net = KeypointNet(self.cfg)
        self.net.load_state_dict(keypoint_weights(path))
        self.net.eval()
        self.hold_goals = hold_goals
        self.reset()

    def reset(self) -> None:
        """A new episode: forget the held goal readings."""
        self._held = None          # (held readings [1, P, 3]: pixel, height; confidences [1, P]): hold_static's state

    @torch.no_grad()
    def read(self, images_nhwc: np.ndarray, instruction: str):
        """Frames [N, S, S, 3] uint8 of one task -> pixels [N, P, 2], heights [N, P] (m) and the heatmap
        peaks' confidences [N, P] (kairos_model.keypoints.peak_confidence) of POINTS; stateless."""
        t = task_of(instruction)
        if t not in self.cfg.tasks:
            raise ValueError(f"this keypoint net knows {self.cfg.tasks}, not {t}")
        imgs = np.asarray(images_nhwc)
        s = self.cfg.image_size
        if imgs.ndim != 4 or imgs.shape[1:] != (s, s, 3) or imgs.dtype != np.uint8:
            raise ValueError(f"expected frames [N, {s}, {s}, 3] uint8, got {imgs.shape} {imgs.dtype}")
        logits, heights = self.net(torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float().div(255))
        k = self.cfg.tasks.index(t) * len(POINTS)
        n, P = len(imgs), len(POINTS)
        lg = logits[:, k:k + P].flatten(0, 1)
        px, h = read_peaks(lg, heights[:, k:k + P].flatten(0, 1), s)
        conf = peak_confidence(lg)
        return px.view(n, P, 2).double().numpy(), h.view(n, P).double().numpy(), conf.view(n, P).double().numpy()

    def pixels(self, images_nhwc: np.ndarray, instruction: str):
        """Frames [N, S, S, 3] uint8 of one task -> pixels [N, P, 2] and heights [N, P] (m) of POINTS;
        with hold_goals the frames are taken as the episode's next ones, in order."""
        px, h, conf = self.read(images_nhwc, instruction)
        if not self.hold_goals:
            return px, h
        static = static_channels([task_of(instruction)])            # [P]: the goal
        out_px, out_h = [], []
        for i in range(len(px)):
            now = torch.from_numpy(np.concatenate([px[i], h[i][:, None]], 1))[None]          # [1, P, 3]
            c = torch.from_numpy(conf[i])[None]
            held, held_c = (now.clone(), torch.zeros_like(c)) if self._held is None else self._held
            out, held, held_c = hold_static(now, c, held, held_c, static)
            self._held = (held, held_c)
            out_px.append(out[0, :, :2].numpy())
            out_h.append(out[0, :, 2].numpy())
        return np.stack(out_px), np.stack(out_h)

    def positions(self, images_nhwc: np.ndarray, instruction: str) -> np.ndarray:
        """Frames [N, S, S, 3] uint8 of one task -> [N, 6]: object xyz, goal xyz (m), as MetaWorldSim.env_state."""
        px, h = self.pixels(images_nhwc, instruction)
        n, P = h.shape
        return self.camera.lift(px.reshape(-1, 2), h.reshape(-1)).reshape(n, P * 3)
