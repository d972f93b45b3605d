"""Recorded episodes played back onto their topics: the plain-Python part of the `bag_player` node
and of `kairos replay` (no ROS imports here; the node publishes what this plans).

`kairos eval-bag` scores the engine on a bag offline, faster than real time. Playing the bag onto
the live topics instead runs the whole robot-side path on recorded data, as it will run on the
robot: the act node's image decoding, joint mapping, staleness checks, tick timing, chunk execution
and safety limits, with the messages arriving at their recorded spacing (or slower: `rate` 0.5
gives a backend that cannot keep real time on this machine twice the time, with the ROS clock
slowed to match, so the node still sees the recorded spacing in ROS time).

One playback timeline for all episodes: each episode's messages keep their recorded spacing;
successive episodes follow one another `gap_s` apart on a clock that only moves forward (episodes
recorded days apart are brought together, and one recorded before another is moved after it), so
`clock_ns = recorded t_ns + offset_ns` of its episode, and the wall time of every event is
`(clock_ns - first clock_ns) / rate`. Header stamps inside the messages are not rewritten (they are
the recorded bytes, as `ros2 bag play` leaves them); a consumer pairs them only with each other.

    plan = PlaybackPlan([BagSource(p) for p in paths], PlaybackConfig(rate=1.0))
    for ev in plan.events():            # time order
        sleep until start + ev.wall_s; then publish ev (message / clock) or act on it (episode start/end)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

from kairos_ros.core.recorder import BagSource

# What the act node reads: the default topics a playback publishes (the recorded commands and
# episode events are left out, so the node under test is the only one commanding).
ACT_INPUT_TOPICS = ("/camera/image_raw", "/camera/image_raw/compressed", "/joint_states", "/instruction")


@dataclass
class PlaybackConfig:
    """rate: playback speed (1 = recorded speed; 0.5 = half). clock_hz: /clock ticks per wall second
    (0 = none). gap_s: clock seconds between one episode's last message and the next one's first.
    topics: the topics played (absolute names; empty = every recorded topic). lead_s: wall seconds
    between an episode's start event (memory reset, instruction) and its first message."""
    rate: float = 1.0
    clock_hz: float = 40.0
    gap_s: float = 1.0
    topics: Sequence[str] = ACT_INPUT_TOPICS
    lead_s: float = 0.2

    def __post_init__(self):
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0 (1 = recorded speed), got {self.rate}")
        if self.clock_hz < 0 or self.gap_s < 0 or self.lead_s < 0:
            raise ValueError(f"clock_hz, gap_s and lead_s must be >= 0, got {self.clock_hz}, {self.gap_s}, "
                             f"{self.lead_s}")


@dataclass
class PlaybackEvent:
    """kind: 'message' (topic, msgtype, raw: publish raw), 'clock' (publish clock_ns on /clock),
    'episode_start' (reset the memory, publish the task text), 'episode_end'. wall_s: seconds after
    playback start. clock_ns: the playback clock at this event. t_ns: the recorded time (messages)."""
    kind: str
    wall_s: float
    clock_ns: int
    episode: int
    topic: str = ""
    msgtype: str = ""
    raw: bytes = b""
    t_ns: int = 0


@dataclass
class EpisodeTiming:
    """Where an episode sits on the playback clock: clock_ns = t_ns + offset_ns for its messages."""
    path: str
    task: str
    offset_ns: int = 0
    first_clock_ns: Optional[int] = None
    last_clock_ns: Optional[int] = None
    messages: int = 0


class PlaybackPlan:
    """sources: opened bags (BagSource), played in the given order. Messages are read lazily, one
    episode at a time (a bag of camera frames need not fit in memory). After events() is exhausted,
    `timings` holds each episode's offset and extent on the playback clock."""

    def __init__(self, sources: Sequence[BagSource], cfg: PlaybackConfig = PlaybackConfig()):
        self.sources, self.cfg = list(sources), cfg
        self.timings: List[EpisodeTiming] = []
        wanted = set(cfg.topics)
        for src in self.sources:
            if wanted and not wanted & set(src.topics):
                raise ValueError(f"{src.path}: none of the played topics {sorted(wanted)} was recorded; it "
                                 f"holds {sorted(src.topics)} (set the topics to play)")

    def publishers(self) -> List[Tuple[str, str]]:
        """(topic, msgtype) of every topic that will be published, for creating publishers up front."""
        out = {}
        for src in self.sources:
            for topic, msgtype in src.topics.items():
                if not self.cfg.topics or topic in self.cfg.topics:
                    prev = out.setdefault(topic, msgtype)
                    if prev != msgtype:
                        raise ValueError(f"{topic} is {prev} in one bag and {msgtype} in {src.path}")
        return sorted(out.items())

    def events(self) -> Iterator[PlaybackEvent]:
        cfg = self.cfg
        rate, tick_s = cfg.rate, (1.0 / cfg.clock_hz if cfg.clock_hz else None)
        origin: Optional[int] = None           # the first message's clock
        next_tick = 0.0
        end_clock: Optional[int] = None         # the previous episode's last clock
        wanted = set(cfg.topics)

        def wall(clock_ns: int) -> float:
            return (clock_ns - origin) / 1e9 / rate

        def ticks_until(w: float) -> Iterator[PlaybackEvent]:
            nonlocal next_tick
            while tick_s is not None and next_tick <= w:
                yield PlaybackEvent("clock", next_tick, origin + int(next_tick * rate * 1e9), len(self.timings) - 1)
                next_tick += tick_s

        for i, src in enumerate(self.sources):
            timing = EpisodeTiming(src.path, src.record.get("task", "") or "")
            self.timings.append(timing)
            last_wall = None
            for topic, msgtype, t_ns, raw in src.raw_messages():
                if wanted and topic not in wanted:
                    continue
                if timing.first_clock_ns is None:           # place the episode on the clock
                    if end_clock is not None:
                        timing.offset_ns = max(0, end_clock + int(cfg.gap_s * 1e9) - t_ns)
                    clock = t_ns + timing.offset_ns
                    if origin is None:
                        origin = clock - int(cfg.lead_s * rate * 1e9)
                    timing.first_clock_ns = clock
                    start_wall = max(0.0, wall(clock) - cfg.lead_s)
                    yield from ticks_until(start_wall)
                    yield PlaybackEvent("episode_start", start_wall, origin + int(start_wall * rate * 1e9), i)
                clock = max(t_ns + timing.offset_ns, timing.last_clock_ns or 0)   # never backwards
                w = wall(clock)
                yield from ticks_until(w)
                timing.last_clock_ns, timing.messages, last_wall = clock, timing.messages + 1, w
                yield PlaybackEvent("message", w, clock, i, topic, msgtype, raw, t_ns)
            if last_wall is not None:
                end_clock = timing.last_clock_ns
                yield PlaybackEvent("episode_end", last_wall, end_clock, i)
        if origin is not None and end_clock is not None:
            yield from ticks_until(wall(end_clock) + cfg.lead_s)   # the clock runs on a little past the end


@dataclass
class CommandScore:
    """A commanded trajectory scored against the recorded motion: error[k, j] = |point k's target -
    the recorded joint state nearest the time point k is for|; hold[k, j] the same for holding the
    joints recorded at the command's time."""
    clock_ns: int
    error: list = field(default_factory=list)
    hold: list = field(default_factory=list)


def score_commands(commands, joint_states, max_gap_ns: int) -> List[CommandScore]:
    """commands: [(recorded-time t_ns of the command, [(time_from_start_ns, {joint: target})])];
    joint_states: [(t_ns, {joint: position})] time-sorted, the recorded motion. A point whose time
    has no recorded joint state within max_gap_ns (past the bag's end) is left out, and joints the
    recorded state lacks are an error (a mismatch would otherwise score nothing)."""
    import numpy as np
    times = np.asarray([t for t, _ in joint_states], dtype=np.int64)
    if len(times) == 0:
        raise ValueError("no recorded joint states to score the commands against")

    def nearest(t):
        i = int(np.clip(np.searchsorted(times, t), 1, len(times) - 1)) if len(times) > 1 else 0
        if len(times) > 1 and abs(times[i - 1] - t) <= abs(times[i] - t):
            i -= 1
        return i if abs(times[i] - t) <= max_gap_ns else None

    out = []
    for t_cmd, points in commands:
        now = nearest(t_cmd)
        if now is None:
            continue
        err, hold = [], []
        for dt, targets in points:
            k = nearest(t_cmd + dt)
            if k is None:
                continue
            rec = joint_states[k][1]
            missing = sorted(set(targets) - set(rec))
            if missing:
                raise ValueError(f"the recorded joint states have no {missing}; they hold {sorted(rec)}")
            names = sorted(targets)
            err.append([abs(targets[n] - rec[n]) for n in names])
            hold.append([abs(joint_states[now][1][n] - rec[n]) for n in names])
        if err:
            out.append(CommandScore(t_cmd, err, hold))
    return out


def recorded_for_scoring(source: BagSource, joint_topic: str, camera_topic: str, frame_times_ns: Sequence[int],
                         max_gap_ns: int):
    """One streaming pass over a bag: (joint states [(t_ns, {joint: position})], {t: uint8 [H, W, 3]} the
    recorded camera frame nearest each of frame_times_ns, where one lies within max_gap_ns). Only the
    joint states and those frames are decoded, so a long bag of camera frames is never held in memory.
    The camera topic may be sensor_msgs/Image or CompressedImage (`camera_topic` + '/compressed')."""
    from kairos_ros.core.image import decode_compressed, image_to_rgb
    from kairos_ros.core.recorder import _typestore, deserialize_cdr
    ts = _typestore()
    cams = (camera_topic, camera_topic + "/compressed")
    targets = sorted(set(int(t) for t in frame_times_ns))
    states, frames, prev, i = [], {}, None, 0

    def decode(c):
        m = deserialize_cdr(ts, c[2], c[1])
        if c[1].endswith("CompressedImage"):
            return decode_compressed(m.format, m.data)
        return image_to_rgb(m.encoding, m.height, m.width, m.step, m.data, m.is_bigendian)

    def settle(upto: Optional[int], cur):
        nonlocal i
        while i < len(targets) and (upto is None or targets[i] <= upto):
            cands = [c for c in (prev, cur) if c is not None]
            if cands:
                best = min(cands, key=lambda c: abs(c[0] - targets[i]))
                if abs(best[0] - targets[i]) <= max_gap_ns:
                    frames[targets[i]] = decode(best)
            i += 1

    for topic, msgtype, t, raw in source.raw_messages():
        if topic == joint_topic:
            m = deserialize_cdr(ts, raw, msgtype)
            states.append((t, dict(zip(m.name, (float(x) for x in m.position)))))
        elif topic in cams:
            cur = (t, msgtype, raw)
            settle(t, cur)
            prev = cur
    settle(None, None)
    states.sort(key=lambda s: s[0])
    return states, frames
