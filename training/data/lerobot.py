"""The LeRobot dataset format (v2.1), read and written without the lerobot package.

    DATASET/
      meta/info.json                  fps, features (names, shapes, dtypes), paths, totals
      meta/episodes.jsonl             {"episode_index", "tasks", "length"} per episode
      meta/tasks.jsonl                {"task_index", "task"}
      meta/episodes_stats.jsonl       per-episode min/max/mean/std of numeric features
      data/chunk-000/episode_000000.parquet   one row per frame: observation.state, action,
                                              timestamp, frame_index, episode_index, index, task_index
                                              (+ observation.environment_state where the source has it)
      videos/chunk-000/observation.images.<cam>/episode_000000.mp4

This is the layout robotics teams share on the Hugging Face hub, so data recorded here can be used by
LeRobot and LeRobot datasets can be trained on here. Parquet goes through pyarrow and video through
PyAV (H.264, near-lossless by default because the frames are small).

Readers check everything they read: missing columns, a video shorter than its parquet (truncated),
joint names that do not match the model's (`JointMapping`) -- each is an error naming what is wrong,
never a silently skipped episode.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from kairos_model.durable import fsync_tree, write_text_atomic

CODEBASE_VERSION = "v2.1"
CHUNK = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
REQUIRED_COLUMNS = ("observation.state", "action", "timestamp", "frame_index", "episode_index", "index",
                    "task_index")


class DatasetError(ValueError):
    """A dataset that cannot be read as asked; the message says what is wrong and where."""


@dataclass
class Episode:
    """frames: {camera key: [T, H, W, 3] uint8}; state [T, J], action [T, A] float32; task text.
    env_state [T, E]: privileged simulator state (LeRobot's observation.environment_state; e.g. object
    and goal positions), where the source has it: for training-time supervision, never a policy input."""
    frames: Dict[str, np.ndarray]
    state: np.ndarray
    action: np.ndarray
    task: str
    index: int = 0
    success: Optional[bool] = None
    fps: Optional[float] = None     # frames (control steps) per second, where the source says
    env_state: Optional[np.ndarray] = None


@dataclass
class JointMapping:
    """Maps a source's named vector onto the model's joint order.

    model_names: the model's order. source_names: the dataset's. Every model joint must be present
    in the source (by name, or through `rename` source -> model); extra source joints are dropped
    only when listed in `ignore`. Anything else is an error, so a robot with different joints is
    never silently trained on."""
    model_names: Sequence[str]
    rename: Optional[Dict[str, str]] = None
    ignore: Sequence[str] = ()

    def indices(self, source_names: Sequence[str], what: str = "state") -> List[int]:
        rename = self.rename or {}
        names = [rename.get(n, n) for n in source_names]
        missing = [n for n in self.model_names if n not in names]
        extra = [s for s, n in zip(source_names, names) if n not in self.model_names and s not in self.ignore]
        if missing or extra:
            raise DatasetError(f"{what} joint names do not match the model: missing {missing}, "
                               f"unexpected {extra} (source has {list(source_names)}, model wants "
                               f"{list(self.model_names)}; map them with rename/ignore)")
        return [names.index(n) for n in self.model_names]

    def apply(self, x: np.ndarray, source_names: Sequence[str], what: str = "state") -> np.ndarray:
        return np.asarray(x)[..., self.indices(source_names, what)]


# -- video ------------------------------------------------------------------------------------------
def write_video(path: str, frames_thwc: np.ndarray, fps: float, crf: int = 10) -> None:
    import av
    from fractions import Fraction
    frames_thwc = np.asarray(frames_thwc)
    if frames_thwc.ndim != 4 or frames_thwc.shape[-1] != 3 or frames_thwc.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames_thwc.dtype} {frames_thwc.shape}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".part"
    with av.open(tmp, mode="w", format="mp4") as out:
        st = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        st.height, st.width = frames_thwc.shape[1:3]
        st.pix_fmt = "yuv444p"
        st.options = {"crf": str(crf), "preset": "fast"}
        for f in frames_thwc:
            for p in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    os.replace(tmp, path)          # a crash mid-write never leaves a plausible-looking video


def read_video(path: str, expect_frames: Optional[int] = None) -> np.ndarray:
    """All frames [T, H, W, 3] uint8. expect_frames: error if the file holds fewer (truncated)."""
    import av
    if not os.path.isfile(path):
        raise DatasetError(f"video {path} is missing")
    frames = []
    try:
        with av.open(path) as cont:
            for fr in cont.decode(video=0):
                frames.append(fr.to_ndarray(format="rgb24"))
    except (av.error.InvalidDataError, av.error.FFmpegError) as e:
        raise DatasetError(f"video {path} cannot be decoded ({e}); it may be truncated") from e
    if expect_frames is not None and len(frames) < expect_frames:
        raise DatasetError(f"video {path} holds {len(frames)} frames, the episode has {expect_frames}: "
                           f"the file is truncated")
    if not frames:
        raise DatasetError(f"video {path} holds no frames")
    return np.stack(frames[:expect_frames] if expect_frames else frames)


# -- writing ----------------------------------------------------------------------------------------
class LeRobotWriter:
    """Appends episodes; `close()` (or the context manager) writes meta/info.json last, so a dataset
    whose writing was interrupted is recognisable as such (its info.json is missing or stale)."""

    def __init__(self, root: str, fps: float, state_names: Sequence[str], action_names: Sequence[str],
                 camera_keys: Sequence[str] = ("observation.images.cam",), robot_type: str = "sawyer",
                 image_shape: Sequence[int] = (64, 64, 3), env_state_names: Optional[Sequence[str]] = None,
                 kairos_info: Optional[dict] = None):
        """env_state_names: when given, every episode carries env_state [T, len(names)], written as
        observation.environment_state. kairos_info: this project's facts about the data, written under
        info.json's "kairos" key (e.g. {"camera": "corner2"}; {"snapshots": true} marks a dataset whose
        "episodes" are not trajectories: each frame is a different scene, see `kairos collect --snapshots`)."""
        self.kairos_info = dict(kairos_info or {})
        self.env_state_names = None if env_state_names is None else list(env_state_names)
        if os.path.exists(os.path.join(root, "meta", "info.json")):
            raise FileExistsError(f"{root} already holds a dataset; choose another --out")
        self.root, self.fps = root, float(fps)
        self.state_names, self.action_names = list(state_names), list(action_names)
        self.camera_keys, self.robot_type, self.image_shape = list(camera_keys), robot_type, list(image_shape)
        self.tasks: Dict[str, int] = {}
        self.episodes: List[dict] = []
        self.total_frames = 0
        os.makedirs(os.path.join(root, "meta"), exist_ok=True)

    def add(self, ep: Episode) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq
        T = len(ep.state)
        if ep.state.shape != (T, len(self.state_names)) or ep.action.shape != (T, len(self.action_names)):
            raise ValueError(f"episode state/action must be [T, {len(self.state_names)}] / "
                             f"[T, {len(self.action_names)}], got {ep.state.shape} / {ep.action.shape}")
        if set(ep.frames) != set(self.camera_keys) or any(len(v) != T for v in ep.frames.values()):
            raise ValueError(f"episode frames must be {self.camera_keys} with {T} frames each")
        if self.env_state_names is not None and (ep.env_state is None or np.shape(ep.env_state)
                                                 != (T, len(self.env_state_names))):
            raise ValueError(f"this dataset records observation.environment_state: the episode's env_state "
                             f"must be [T, {len(self.env_state_names)}] = {self.env_state_names}, got "
                             f"{None if ep.env_state is None else np.shape(ep.env_state)}")
        idx = len(self.episodes)
        task_index = self.tasks.setdefault(ep.task, len(self.tasks))
        chunk = idx // CHUNK
        for key, frames in ep.frames.items():
            write_video(os.path.join(self.root, VIDEO_PATH.format(episode_chunk=chunk, video_key=key,
                                                                  episode_index=idx)), frames, self.fps)
        cols = {
            "observation.state": pa.array(list(ep.state.astype(np.float32)), type=pa.list_(pa.float32())),
            "action": pa.array(list(ep.action.astype(np.float32)), type=pa.list_(pa.float32())),
            "timestamp": pa.array(np.arange(T, dtype=np.float32) / self.fps),
            "frame_index": pa.array(np.arange(T, dtype=np.int64)),
            "episode_index": pa.array(np.full(T, idx, dtype=np.int64)),
            "index": pa.array(np.arange(self.total_frames, self.total_frames + T, dtype=np.int64)),
            "task_index": pa.array(np.full(T, task_index, dtype=np.int64)),
            "next.done": pa.array(np.arange(T) == T - 1),
        }
        if self.env_state_names is not None:
            cols["observation.environment_state"] = pa.array(list(np.asarray(ep.env_state, np.float32)),
                                                             type=pa.list_(pa.float32()))
        path = os.path.join(self.root, DATA_PATH.format(episode_chunk=chunk, episode_index=idx))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(pa.table(cols), path + ".part")
        os.replace(path + ".part", path)
        rec = {"episode_index": idx, "tasks": [ep.task], "length": T}
        if ep.success is not None:
            rec["success"] = bool(ep.success)
        self.episodes.append(rec)
        stats = {k: {"min": v.min(0).tolist(), "max": v.max(0).tolist(), "mean": v.mean(0).tolist(),
                     "std": v.std(0).tolist(), "count": [T]}
                 for k, v in (("observation.state", ep.state), ("action", ep.action))}
        with open(os.path.join(self.root, "meta", "episodes_stats.jsonl"), "a") as f:
            f.write(json.dumps({"episode_index": idx, "stats": stats}) + "\n")
        with open(os.path.join(self.root, "meta", "episodes.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.total_frames += T
        return idx

    def close(self) -> None:
        with open(os.path.join(self.root, "meta", "tasks.jsonl"), "w") as f:
            for task, i in sorted(self.tasks.items(), key=lambda kv: kv[1]):
                f.write(json.dumps({"task_index": i, "task": task}) + "\n")
        n = len(self.episodes)
        feats = {k: {"dtype": "video", "shape": self.image_shape, "names": ["height", "width", "channels"],
                     "info": {"video.fps": self.fps, "video.codec": "h264", "video.pix_fmt": "yuv444p"}}
                 for k in self.camera_keys}
        feats.update({
            "observation.state": {"dtype": "float32", "shape": [len(self.state_names)], "names": self.state_names},
            "action": {"dtype": "float32", "shape": [len(self.action_names)], "names": self.action_names},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
            "next.done": {"dtype": "bool", "shape": [1], "names": None},
        })
        if self.env_state_names is not None:
            feats["observation.environment_state"] = {"dtype": "float32", "shape": [len(self.env_state_names)],
                                                      "names": self.env_state_names}
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type, "total_episodes": n,
                "total_frames": self.total_frames, "total_tasks": len(self.tasks),
                "total_videos": n * len(self.camera_keys), "total_chunks": (n + CHUNK - 1) // CHUNK,
                "chunks_size": CHUNK, "fps": self.fps, "splits": {"train": f"0:{n}"},
                "data_path": DATA_PATH, "video_path": VIDEO_PATH, "features": feats}
        if self.kairos_info:
            info["kairos"] = self.kairos_info
        # last, whole and durable: a reader takes a dataset with info.json as finished, so every
        # episode file reaches the disk before it does
        fsync_tree(self.root)
        write_text_atomic(os.path.join(self.root, "meta", "info.json"), json.dumps(info, indent=2))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()


# -- reading ----------------------------------------------------------------------------------------
def _jsonl(path: str) -> List[dict]:
    if not os.path.isfile(path):
        raise DatasetError(f"{path} is missing")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class LeRobotDataset:
    """Reads a LeRobot v2.x dataset episode by episode.

    ds = LeRobotDataset(root, mapping=JointMapping(JOINT_NAMES))
    ep = ds.episode(0)        # Episode with state/action in the mapping's joint order"""

    def __init__(self, root: str, mapping: Optional[JointMapping] = None, camera_key: Optional[str] = None):
        info_path = os.path.join(root, "meta", "info.json")
        if not os.path.isfile(info_path):
            raise DatasetError(f"{root} is not a LeRobot dataset: {info_path} is missing (an unfinished "
                               f"write leaves no info.json)")
        with open(info_path) as f:
            self.info = json.load(f)
        if not str(self.info.get("codebase_version", "")).startswith("v2"):
            raise DatasetError(f"{root}: codebase_version {self.info.get('codebase_version')!r} is not "
                               f"supported (v2.x is)")
        self.root = root
        self.fps = float(self.info["fps"])
        self.kairos_info = dict(self.info.get("kairos") or {})
        # a snapshot dataset's frames are separate scenes, not trajectories: per-frame supervision only
        self.snapshots = bool(self.kairos_info.get("snapshots", False))
        feats = self.info["features"]
        for key in ("observation.state", "action"):
            if key not in feats:
                raise DatasetError(f"{root}: feature {key!r} is missing from meta/info.json "
                                   f"(it has {sorted(feats)})")
        self.state_names = _names(feats["observation.state"])
        self.action_names = _names(feats["action"])
        env = feats.get("observation.environment_state")
        self.env_state_names = None if env is None else _names(env)
        cams = [k for k, v in feats.items() if v.get("dtype") in ("video", "image")]
        if camera_key is None:
            if not cams:
                raise DatasetError(f"{root} has no camera feature")
            camera_key = cams[0]
        elif camera_key not in cams:
            raise DatasetError(f"{root} has no camera {camera_key!r}; cameras: {cams}")
        self.camera_key = camera_key
        self.mapping = mapping
        if mapping is not None:
            self._si = mapping.indices(self.state_names, "observation.state")
            self._ai = mapping.indices(self.action_names, "action")
        self.episodes = _jsonl(os.path.join(root, "meta", "episodes.jsonl"))
        self.tasks = {t["task_index"]: t["task"] for t in _jsonl(os.path.join(root, "meta", "tasks.jsonl"))}
        if len(self.episodes) != self.info["total_episodes"]:
            raise DatasetError(f"{root}: meta/episodes.jsonl lists {len(self.episodes)} episodes, info.json "
                               f"says {self.info['total_episodes']}")

    def __len__(self) -> int:
        return len(self.episodes)

    def episode(self, i: int) -> Episode:
        import pyarrow.parquet as pq
        rec = self.episodes[i]
        idx = rec["episode_index"]
        chunk = idx // int(self.info.get("chunks_size", CHUNK))
        path = os.path.join(self.root, self.info["data_path"].format(episode_chunk=chunk, episode_index=idx))
        if not os.path.isfile(path):
            raise DatasetError(f"episode {idx}: {path} is missing")
        table = pq.read_table(path)
        missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
        if missing:
            raise DatasetError(f"episode {idx}: {path} lacks columns {missing} (has {table.column_names})")
        T = table.num_rows
        if T != rec["length"]:
            raise DatasetError(f"episode {idx}: {path} has {T} rows, meta/episodes.jsonl says {rec['length']}")
        state = np.asarray(table.column("observation.state").to_pylist(), np.float32).reshape(T, -1)
        action = np.asarray(table.column("action").to_pylist(), np.float32).reshape(T, -1)
        if state.shape[1] != len(self.state_names) or action.shape[1] != len(self.action_names):
            raise DatasetError(f"episode {idx}: state/action widths {state.shape[1]}/{action.shape[1]} do not "
                               f"match the names in info.json ({len(self.state_names)}/{len(self.action_names)})")
        if self.mapping is not None:
            state, action = state[:, self._si], action[:, self._ai]
        vpath = os.path.join(self.root, self.info["video_path"].format(episode_chunk=chunk,
                                                                      video_key=self.camera_key, episode_index=idx))
        frames = read_video(vpath, expect_frames=T)
        env_state = None
        if self.env_state_names is not None:
            if "observation.environment_state" not in table.column_names:
                raise DatasetError(f"episode {idx}: {path} lacks observation.environment_state, which "
                                   "info.json lists")
            env_state = np.asarray(table.column("observation.environment_state").to_pylist(),
                                   np.float32).reshape(T, -1)
            if env_state.shape[1] != len(self.env_state_names):
                raise DatasetError(f"episode {idx}: observation.environment_state has {env_state.shape[1]} "
                                   f"values a row, info.json names {len(self.env_state_names)}")
        task_idx = int(table.column("task_index")[0].as_py())
        return Episode({self.camera_key: frames}, state, action, self.tasks.get(task_idx, rec["tasks"][0]),
                       index=idx, success=rec.get("success"), fps=self.fps, env_state=env_state)

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.episode(i)


def _names(feat: dict) -> List[str]:
    names = feat.get("names")
    if isinstance(names, dict):           # LeRobot also writes {"motors": [...]}
        names = next(iter(names.values()))
    if not names:
        raise DatasetError(f"feature has no joint names: {feat}; a JointMapping needs them")
    return list(names)
