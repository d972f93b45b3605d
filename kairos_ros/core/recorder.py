"""Stage-III data recording without ROS: episodes of serialized ROS 2 messages written as rosbag2
(mcap) through the `rosbags` library, in segments that are closed every `segment_s` seconds.

    rec = EpisodeRecorder(RecorderConfig(output_dir="data/bags"))
    rec.start_episode(task="press the button")
    rec.write("/joint_states", "sensor_msgs/msg/JointState", stamp_ns, cdr_bytes)   # as received
    rec.end_episode(success=True)

Layout (one directory per episode, an index for all):

    data/bags/index.json                         every episode: status, success, task, segments, frames
    data/bags/episode_000003/episode.json        this episode's record (status "recording" until it ends)
    data/bags/episode_000003/seg_00000/          a complete rosbag2 bag (metadata.yaml + .mcap)
    data/bags/episode_000003/seg_00001/ ...

Why segments: a rosbag2 bag is only readable once closed (metadata, mcap summary). Closing one every
second means a crash (even kill -9) loses at most the open segment, the last second; the episode
stays "recording" in its episode.json and readers report it as incomplete while still reading every
closed segment. Free disk space is checked before an episode and at each segment: below
`min_free_mb` the recorder warns, ends the episode cleanly ("stopped_low_disk") and refuses to start
another.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

STANDARD_STORE = "ros2_kilted"


class RecorderError(RuntimeError):
    """The recorder cannot do what was asked; the message says why."""


@dataclass
class RecorderConfig:
    """output_dir: where episodes go. segment_s: seconds per closed segment (what a crash can lose).
    min_free_mb: stop recording below this much free disk. storage: mcap or sqlite3."""
    output_dir: str = "data/bags"
    segment_s: float = 1.0
    min_free_mb: float = 500.0
    storage: str = "mcap"


def _typestore():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores(STANDARD_STORE))


def _atomic_json(path: str, doc: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class EpisodeRecorder:
    def __init__(self, cfg: RecorderConfig, warn: Callable[[str], None] = print):
        from rosbags.rosbag2 import StoragePlugin
        if cfg.storage not in ("mcap", "sqlite3"):
            raise ValueError(f"storage must be mcap or sqlite3, got {cfg.storage!r}")
        self.cfg, self.warn = cfg, warn
        self.plugin = StoragePlugin.MCAP if cfg.storage == "mcap" else StoragePlugin.SQLITE3
        os.makedirs(cfg.output_dir, exist_ok=True)
        self.typestore = _typestore()
        self.episode: Optional[dict] = None
        self.dir: Optional[str] = None
        self.writer = None
        self.connections: Dict[Tuple[str, str], object] = {}
        self.seg_start_ns: Optional[int] = None
        self.low_disk = False
        self.index_path = os.path.join(cfg.output_dir, "index.json")
        self.index = self._load_index()

    # -- index --------------------------------------------------------------------------------------
    def _load_index(self) -> dict:
        if os.path.isfile(self.index_path):
            with open(self.index_path) as f:
                return json.load(f)
        return {"format": "kairos-episodes-1", "episodes": []}

    def _save_index(self) -> None:
        _atomic_json(self.index_path, self.index)

    def free_mb(self) -> float:
        return shutil.disk_usage(self.cfg.output_dir).free / 2**20

    # -- episodes -----------------------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        return self.episode is not None

    def start_episode(self, task: str = "", **meta) -> str:
        if self.recording:
            raise RecorderError(f"episode {self.episode['name']} is still recording; end it first")
        free = self.free_mb()
        if free < self.cfg.min_free_mb:
            self.low_disk = True
            raise RecorderError(f"only {free:.0f} MB free in {self.cfg.output_dir} (min_free_mb "
                                f"{self.cfg.min_free_mb}); not starting an episode")
        n = len(self.index["episodes"])
        name = f"episode_{n:06d}"
        self.dir = os.path.join(self.cfg.output_dir, name)
        os.makedirs(self.dir)
        self.episode = {"name": name, "index": n, "task": task, "status": "recording", "success": None,
                        "started": time.time(), "segments": [], "messages": 0, "meta": meta}
        _atomic_json(os.path.join(self.dir, "episode.json"), self.episode)
        self.index["episodes"].append({k: self.episode[k] for k in ("name", "index", "task", "status", "success")})
        self._save_index()
        return name

    def _open_segment(self, t_ns: int) -> None:
        from rosbags.rosbag2 import Writer
        path = os.path.join(self.dir, f"seg_{len(self.episode['segments']):05d}")
        self.writer = Writer(path, version=9, storage_plugin=self.plugin)
        self.writer.open()
        self.connections = {}
        self.seg_start_ns = t_ns
        self._seg_path = path

    def _close_segment(self) -> None:
        if self.writer is None:
            return
        self.writer.close()                         # the segment is now a complete, readable bag
        self.writer = None
        self.episode["segments"].append(os.path.basename(self._seg_path))
        _atomic_json(os.path.join(self.dir, "episode.json"), self.episode)

    def write(self, topic: str, msgtype: str, t_ns: int, data: bytes) -> None:
        """One serialized (CDR) message as it came off the wire; msgtype like 'sensor_msgs/msg/Image'."""
        if not self.recording:
            return
        if self.writer is not None and t_ns - self.seg_start_ns >= self.cfg.segment_s * 1e9:
            self._close_segment()
            free = self.free_mb()
            if free < self.cfg.min_free_mb:
                self.low_disk = True
                self.warn(f"recorder: only {free:.0f} MB free (min {self.cfg.min_free_mb} MB): ending "
                          f"{self.episode['name']} and stopping")
                self.end_episode(status="stopped_low_disk")
                return
        if self.writer is None:
            self._open_segment(t_ns)
        key = (topic, msgtype)
        if key not in self.connections:
            self.connections[key] = self.writer.add_connection(topic, msgtype, typestore=self.typestore)
        self.writer.write(self.connections[key], int(t_ns), bytes(data))
        self.episode["messages"] += 1

    def end_episode(self, success: Optional[bool] = None, status: str = "complete", label: str = "") -> Optional[dict]:
        if not self.recording:
            return None
        self._close_segment()
        ep = self.episode
        ep.update(status=status, success=success, ended=time.time(), label=label)
        _atomic_json(os.path.join(self.dir, "episode.json"), ep)
        self.index["episodes"][ep["index"]] = {k: ep[k] for k in ("name", "index", "task", "status", "success")}
        self.index["episodes"][ep["index"]]["segments"] = len(ep["segments"])
        self._save_index()
        self.episode, self.dir = None, None
        return ep

    def close(self) -> None:
        """Ends a running episode as 'interrupted' (a clean shutdown mid-episode keeps its data)."""
        if self.recording:
            self.end_episode(status="interrupted")


# -- reading ----------------------------------------------------------------------------------------
class BagSource:
    """One recorded episode directory (episode.json + closed segments) or any rosbag2 bag directory
    (metadata.yaml; mcap or sqlite3; written by ROS 2 Humble, Jazzy, Kilted or by rosbags), opened
    for reading without holding its messages in memory.

    record: the episode's record (a plain bag: status 'complete', task '', success None); an episode
    whose writer died reads back with status 'incomplete', its open segment (the at-most-one-second
    the design allows to lose) skipped and counted in record['lost_segments'].
    topics: {topic: msgtype} of every connection. raw_messages(): (topic, msgtype, t_ns, cdr bytes)
    in time order across all segments. A bag that cannot be read is a RecorderError naming why."""

    def __init__(self, path: str):
        from pathlib import Path
        self.path = path
        if os.path.isfile(os.path.join(path, "episode.json")):
            with open(os.path.join(path, "episode.json")) as f:
                self.record = json.load(f)
            segs = sorted(d for d in os.listdir(path) if d.startswith("seg_"))
            good = [d for d in segs if os.path.isfile(os.path.join(path, d, "metadata.yaml"))]
            self.record["lost_segments"] = len(segs) - len(good)
            if self.record["status"] == "recording":
                self.record["status"] = "incomplete"
            self._paths = [Path(path, d) for d in good]
        elif os.path.isfile(os.path.join(path, "metadata.yaml")):
            self.record = {"status": "complete", "task": "", "success": None}
            self._paths = [Path(path)]
        else:
            raise RecorderError(f"{path} is neither a recorded episode (episode.json) nor a rosbag2 bag "
                                "(metadata.yaml)")
        self.topics: Dict[str, str] = {}
        if self._paths:
            with self._reader() as reader:
                self.topics = {c.topic: c.msgtype for c in reader.connections}

    def _reader(self):
        from rosbags.highlevel import AnyReader
        try:
            return AnyReader(self._paths, default_typestore=_typestore())
        except Exception as e:            # rosbags raises several types for damaged bags
            raise RecorderError(f"{self.path}: the bag cannot be read ({type(e).__name__}: {e})") from e

    def raw_messages(self) -> Iterator[Tuple[str, str, int, bytes]]:
        if not self._paths:
            return
        reader = self._reader()
        try:
            reader.open()
            for conn, t, raw in reader.messages():
                yield conn.topic, conn.msgtype, int(t), bytes(raw)
        except Exception as e:                # a damaged segment or index, found while reading
            raise RecorderError(f"{self.path}: the bag cannot be read ({type(e).__name__}: {e})") from e
        finally:
            reader.close()

    def messages(self, skip_unknown: bool = False) -> List[Tuple[str, str, int, object]]:
        """Every message deserialized, time order; skip_unknown: leave out types with no definition
        here (`topics` still lists them) instead of failing."""
        ts = _typestore()
        out = []
        for topic, msgtype, t, raw in self.raw_messages():
            try:
                out.append((topic, msgtype, t, deserialize_cdr(ts, raw, msgtype)))
            except KeyError:
                if not skip_unknown:
                    raise
        out.sort(key=lambda m: m[2])
        return out


def read_episode(path: str) -> Tuple[dict, List[Tuple[str, str, int, object]]]:
    """(record, messages) of one recorded episode directory; messages are (topic, msgtype, t_ns,
    deserialized message) in time order across all closed segments (see BagSource)."""
    if not os.path.isfile(os.path.join(path, "episode.json")):
        raise RecorderError(f"{path} is not a recorded episode (no episode.json)")
    src = BagSource(path)
    return src.record, src.messages()


def deserialize_cdr(typestore, raw: bytes, msgtype: str):
    """CDR bytes -> message, tolerating trailing bytes after the message (rclpy's serialize_message
    leaves a few; rosbags' strict check would refuse them)."""
    from rosbags.serde import SerdeError
    try:
        return typestore.deserialize_cdr(raw, msgtype)
    except SerdeError:
        md = typestore.get_msgdef(msgtype)
        func = md.deserialize_cdr_le if raw[1] else md.deserialize_cdr_be
        return func(bytes(raw[4:]), 0, md.cls, typestore)[0]


def iter_episodes(root: str) -> Iterator[str]:
    for d in sorted(os.listdir(root)):
        if d.startswith("episode_") and os.path.isdir(os.path.join(root, d)):
            yield os.path.join(root, d)
