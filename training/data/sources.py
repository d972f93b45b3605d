"""The three data layers of the curriculum as batch sources.

Every source yields `Batch`es of clips that start where an episode starts (as the deployed streaming
memory does after a reset), drawn deterministically from a numpy Generator so that a resumed run sees
exactly the batches an uninterrupted one would.

  PhysicsSource      stage I: synthetic physics video with captions (training/data/synthetic_physics.py)
  VideoFolderSource  stage I/II: a folder of mp4/webm/mkv files, caption from <name>.txt when present
  EpisodeSource      stage II (actions hidden) / III (actions): LeRobot episodes, e.g. from `kairos collect`
  PositionSource     single frames with the simulator's object/goal positions, for a stage's position loss

Joint vectors are normalised with the stage-III statistics (`Normalization`); video-only clips carry
zero joints and no actions (the paper's stage I/II objective is video only).
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from training.data.lerobot import DatasetError, Episode, read_video


@dataclass
class Batch:
    """frames [B, T, 3, S, S] in [0, 1]; texts [B]; proprio [B, T, J] (normalised); actions
    [B, T, H, A] (normalised chunk starting at each frame) or None; valid [B, T] (False on padding);
    env_state [B, T, E] (the simulator's object/goal positions, normalised) where the source has them
    and the stage asks for them, else None."""
    frames: torch.Tensor
    texts: List[str]
    proprio: torch.Tensor
    actions: Optional[torch.Tensor]
    valid: torch.Tensor
    env_state: Optional[torch.Tensor] = None


def require_env_state(episodes: Sequence[Episode]) -> None:
    """A clear error unless every episode records observation.environment_state."""
    lacking = [e.index for e in episodes if e.env_state is None]
    if lacking:
        raise DatasetError(f"the position loss needs observation.environment_state in every episode; "
                           f"episodes {lacking[:10]} lack it (recollect with `kairos collect`)")


@dataclass
class EnvNormalization:
    """Mean/std [E] of observation.environment_state over a stage's data (std floored at 1 cm), for the
    position loss; names: its columns."""
    names: List[str]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_episodes(cls, names: Sequence[str], episodes: Sequence[Episode]) -> "EnvNormalization":
        require_env_state(episodes)
        x = np.concatenate([e.env_state for e in episodes]).astype(np.float64)
        return cls(list(names), x.mean(0), np.maximum(x.std(0), 1e-2))

    def apply(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def to_dict(self) -> dict:
        return {"names": self.names, "mean": self.mean.tolist(), "std": self.std.tolist()}


@dataclass
class Normalization:
    """Per-joint mean/std of the stage-III joint states and actions (std floored at 1e-2 rad).
    relative: the action chunk is learned as offsets from the joint state at its first step (each
    chunk step h: action[t + h] - state[t]); mean/std are then those offsets' over chunks of `horizon`."""
    state_mean: np.ndarray
    state_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray
    relative: bool = False

    @classmethod
    def from_episodes(cls, episodes: Sequence[Episode], relative: bool = False, horizon: int = 1) -> "Normalization":
        s = np.concatenate([e.state for e in episodes]).astype(np.float64)
        if relative:
            a = np.concatenate([(chunk_targets(e.action, horizon) - e.state[:, None]).reshape(-1, e.action.shape[1])
                                for e in episodes]).astype(np.float64)
        else:
            a = np.concatenate([e.action for e in episodes]).astype(np.float64)
        return cls(s.mean(0), np.maximum(s.std(0), 1e-2), a.mean(0), np.maximum(a.std(0), 1e-2), relative)

    @classmethod
    def from_meta(cls, meta: dict) -> "Normalization":
        """The inverse of to_dict: a checkpoint's meta -> Normalization."""
        p, a = meta["proprio"], meta["actions"]
        return cls(np.array(p["mean"]), np.array(p["std"]), np.array(a["mean"]), np.array(a["std"]),
                   a.get("relative_to") == "joint state")

    def reach(self, data: "Normalization") -> np.ndarray:
        """[A] per joint: how far `data`'s actions reach in this normalisation's units (|mean offset| +
        2 std, in this std). About 2 when the data is what this normalisation was computed from; far
        above it when a checkpoint's kept normalisation meets data with another range of motion (a
        new task), whose targets the model then sees as outliers tens of std out."""
        return (np.abs(data.action_mean - self.action_mean) + 2 * data.action_std) / self.action_std

    def to_dict(self) -> dict:
        acts = {"mean": self.action_mean.tolist(), "std": self.action_std.tolist()}
        if self.relative:
            acts["relative_to"] = "joint state"
        return {"proprio": {"mean": self.state_mean.tolist(), "std": self.state_std.tolist()}, "actions": acts}


def chunk_targets(action_ta: np.ndarray, horizon: int) -> np.ndarray:
    """[T, A] per-step targets -> [T, H, A]: the chunk starting at each step (held at the last one)."""
    T = len(action_ta)
    idx = np.minimum(np.arange(T)[:, None] + np.arange(horizon)[None], T - 1)
    return action_ta[idx]


def _resize(frames_tchw: torch.Tensor, size: int) -> torch.Tensor:
    if frames_tchw.shape[-1] == size and frames_tchw.shape[-2] == size:
        return frames_tchw
    return F.interpolate(frames_tchw, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _pad_to(x: np.ndarray, T: int) -> np.ndarray:
    """Repeat the last row until T rows (the robot holding still after the episode ends)."""
    if len(x) >= T:
        return x[:T]
    return np.concatenate([x, np.repeat(x[-1:], T - len(x), axis=0)])


class PhysicsSource:
    def __init__(self, size: int, seed: int, proprio_dim: int, clips: int = 100_000):
        from training.data.synthetic_physics import PhysicsVideoConfig
        self.size, self.seed, self.J, self.clips = size, seed, proprio_dim, clips
        self._cfg = PhysicsVideoConfig

    def sample(self, rng: np.random.Generator, batch: int, frames: int) -> Batch:
        from training.data.synthetic_physics import SyntheticPhysicsVideo
        ds = SyntheticPhysicsVideo(self._cfg(size=self.size, frames=frames), seed=self.seed, length=self.clips)
        x, caps = ds.batch(rng.integers(0, self.clips, batch).tolist())
        return Batch(x, caps, torch.zeros(batch, frames, self.J), None, torch.ones(batch, frames, dtype=torch.bool))


class VideoFolderSource:
    EXTS = (".mp4", ".webm", ".mkv", ".mov")

    def __init__(self, path: str, size: int, proprio_dim: int):
        files = sorted(f for f in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                       if f.lower().endswith(self.EXTS))
        if not files:
            raise DatasetError(f"no video files ({', '.join(self.EXTS)}) under {path}")
        self.videos, self.captions = [], []
        for f in files:                       # decode all up front: a truncated file fails here, loudly
            v = torch.from_numpy(read_video(f)).permute(0, 3, 1, 2).float().div_(255)
            self.videos.append(_resize(v, size))
            cap = os.path.splitext(f)[0] + ".txt"
            self.captions.append(open(cap).read().strip() if os.path.isfile(cap) else "")
        self.J = proprio_dim

    def sample(self, rng: np.random.Generator, batch: int, frames: int) -> Batch:
        xs, caps, valid = [], [], []
        for _ in range(batch):
            i = int(rng.integers(len(self.videos)))
            v = self.videos[i]
            start = int(rng.integers(0, max(1, len(v) - frames + 1)))
            clip = v[start:start + frames]
            n = len(clip)
            xs.append(torch.from_numpy(_pad_to(clip.numpy(), frames)))
            valid.append(torch.arange(frames) < n)
            caps.append(self.captions[i])
        return Batch(torch.stack(xs), caps, torch.zeros(batch, frames, self.J), None, torch.stack(valid))


class EpisodeSource:
    """Episodes (frames from their first camera). actions=False hides the labels (stage II)."""

    def __init__(self, episodes: Sequence[Episode], size: int, horizon: int, norm: Normalization,
                 actions: bool, env_norm: Optional[EnvNormalization] = None):
        """env_norm: also return each frame's normalised environment state (every episode must have it)."""
        if not episodes:
            raise DatasetError("an episode source with no episodes")
        self.eps = list(episodes)
        self.frames = [_resize(torch.from_numpy(next(iter(e.frames.values()))).permute(0, 3, 1, 2).float()
                               .div_(255), size) for e in self.eps]
        self.H, self.norm, self.use_actions = horizon, norm, actions
        self.env_norm = env_norm
        if env_norm is not None:
            require_env_state(self.eps)

    def chunks(self, ep: Episode) -> np.ndarray:
        """[T, H, A] normalised action chunk starting at each step (held at the last action); with a
        relative normalisation, offsets from the joint state at the chunk's first step."""
        a = chunk_targets(ep.action, self.H)
        if self.norm.relative:
            a = a - ep.state[:, None]
        return (a - self.norm.action_mean) / self.norm.action_std

    def clip(self, i: int, frames: int, start: int = 0):
        ep = self.eps[i]
        T = len(ep.state)
        sl = slice(start, start + frames)
        x = _pad_to(self.frames[i][sl].numpy(), frames)
        st = _pad_to(((ep.state - self.norm.state_mean) / self.norm.state_std)[sl], frames)
        ch = _pad_to(self.chunks(ep)[sl], frames)
        valid = (np.arange(frames) + start) < T
        return x, st, ch, valid, ep.task

    def sample(self, rng: np.random.Generator, batch: int, frames: int) -> Batch:
        xs, sts, chs, vs, texts, envs = [], [], [], [], [], []
        for _ in range(batch):
            i = int(rng.integers(len(self.eps)))
            T = len(self.eps[i].state)
            start = int(rng.integers(0, max(1, T - frames + 1)))
            x, st, ch, v, task = self.clip(i, frames, start)
            xs.append(x); sts.append(st); chs.append(ch); vs.append(v); texts.append(task)
            if self.env_norm is not None:
                envs.append(_pad_to(self.env_norm.apply(self.eps[i].env_state[start:start + frames]), frames))
        proprio = torch.from_numpy(np.stack(sts)).float()
        acts = torch.from_numpy(np.stack(chs)).float() if self.use_actions else None
        if not self.use_actions:
            proprio = torch.zeros_like(proprio)
        env = torch.from_numpy(np.stack(envs)).float() if envs else None
        return Batch(torch.from_numpy(np.stack(xs)), texts, proprio, acts, torch.from_numpy(np.stack(vs)), env)


class PositionSource:
    """Single labelled frames for the position loss: every frame of the given episodes (a snapshot
    dataset's scenes, or demonstrations) with its normalised environment state.
    sample -> (frames [B, 3, S, S] in [0, 1], env_state [B, E], texts [B])."""

    def __init__(self, episodes: Sequence[Episode], size: int, env_norm: EnvNormalization):
        if not episodes:
            raise DatasetError("a position source with no episodes")
        require_env_state(episodes)
        self.frames = torch.cat([_resize(torch.from_numpy(next(iter(e.frames.values()))).permute(0, 3, 1, 2)
                                         .float().div_(255), size) for e in episodes])
        self.env = torch.from_numpy(np.concatenate([env_norm.apply(e.env_state) for e in episodes])).float()
        self.texts = [e.task for e in episodes for _ in range(len(e.state))]

    def __len__(self) -> int:
        return len(self.frames)

    def sample(self, rng: np.random.Generator, batch: int):
        idx = rng.integers(len(self.frames), size=batch)
        return self.frames[idx], self.env[idx], [self.texts[i] for i in idx]


class Mixture:
    """Draws each batch from one source, chosen by weight (whole batches keep shapes uniform)."""

    def __init__(self, sources, weights):
        w = np.asarray(weights, np.float64)
        if len(sources) == 0 or (w <= 0).any():
            raise ValueError("a mixture needs sources with positive weights")
        self.sources, self.p = sources, w / w.sum()

    def sample(self, rng: np.random.Generator, batch: int, frames: int) -> Batch:
        k = int(rng.choice(len(self.sources), p=self.p))
        return self.sources[k].sample(rng, batch, frames)
