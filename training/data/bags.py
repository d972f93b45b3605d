"""Recorded rosbag2 episodes (kairos_ros recorder, mcap or sqlite3) -> LeRobot training data.

    kairos dataset from-bags data/bags/episode_* --out data/robot_ds [--rate 10] [--image-size 64]

Per episode: the camera frames, joint states and instruction are read (rosbags, no ROS install
needed), resampled onto a fixed control-rate timeline (each tick takes the camera frame nearest to
it in time, and the joint state nearest to that frame), images are centre-cropped and resized,
joint vectors are mapped by name onto the model's order (`JointMapping`: an unknown or missing
joint is an error), and the action at tick t is the joint state reached at tick t+1, the same
joint-space semantics as the simulator's expert data for an arm. A gripper is different: its label
there is the command (open or closed), and the finger position it reaches lags the command by a
tick or two, or stops at the object it grasps, so `--command-joints r_close` takes those joints'
labels from the commanded trajectory (the first point of the last trajectory commanded before tick
t+1's frame) and the rest from the next joint state; `--action-source command` takes every joint's
label from the command.

Times are the header stamps where a topic's messages all carry one (else the recorder's receive
times), so a frame is paired with the joints read when it was taken, not when it arrived.
Nearest, not newest-before: messages at the control rate arrive a few milliseconds either side of
the ticks, and taking the newest at or before each tick then lags a whole period where they arrive
just after it, repeating the first frame and state (a "stand still" label) and skipping one
wherever the jitter crosses a tick (measured on bags the recorder wrote of the main job: the model
that drove the episode predicted the recorded motion no better than holding still).
Incomplete episodes (a crashed recorder) and episodes without the needed topics are reported and
left out, with the reason; nothing is skipped silently.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np

from training.data.lerobot import DatasetError, Episode, JointMapping, LeRobotWriter


def _stamp_ns(t) -> int:
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def read_messages(path: str):
    """(record, [(topic, msgtype, t_ns, message)]) from a recorder episode directory (episode.json +
    segments) or any rosbag2 bag directory (metadata.yaml; mcap or sqlite3; written by ROS 2 Humble,
    Jazzy, Kilted or by rosbags). A bag that cannot be read is a DatasetError naming the reason;
    messages of types with no definition here are left out (the record's `topics` lists them)."""
    from kairos_ros.core.recorder import BagSource, RecorderError
    try:
        src = BagSource(path)
        msgs = src.messages(skip_unknown=True)
    except RecorderError as e:
        raise DatasetError(str(e)) from e
    return {**src.record, "topics": src.topics}, msgs


def _by_stamp(msgs: list) -> list:
    """[(t_ns, message)] re-timed by the messages' header stamps (when the image was taken, the joints
    read) where every message of the topic has one, else kept at their receive times, sorted. Receive
    times lag by the transport (a camera frame tens of ms, a joint state little), which would pair a
    frame with a later joint state; the act node pairs them by header stamp too (`sync_tolerance_s`)."""
    stamps = [_stamp_ns(m.header.stamp) if hasattr(m, "header") else 0 for _, m in msgs]
    if all(st > 0 for st in stamps):
        msgs = [(st, m) for st, (_, m) in zip(stamps, msgs)]
    return sorted(msgs, key=lambda x: x[0])


def nearest(times: np.ndarray, t: int) -> int:
    """Index of the sample in the sorted `times` nearest to t (the earlier one on a tie)."""
    i = int(np.searchsorted(times, t, side="left"))
    if i == 0:
        return 0
    if i == len(times):
        return len(times) - 1
    return i if times[i] - t < t - times[i - 1] else i - 1


def episode_from_bag(path: str, joint_names: Sequence[str], rate_hz: float = 10.0, image_size: int = 64,
                     camera_topic: Optional[str] = None, joints_topic: Optional[str] = None,
                     action_source: str = "next_state", mapping: Optional[JointMapping] = None,
                     command_joints: Sequence[str] = ()) -> Episode:
    """One bag as an Episode at `rate_hz` (module docstring). command_joints: joints (model names) whose
    action labels come from the commanded trajectory, the others from the next joint state."""
    from kairos_ros.core.image import ImageError, image_to_rgb, resize_rgb
    rec, msgs = read_messages(path)
    by_type = {}
    for topic, typ, t, m in msgs:
        by_type.setdefault(typ, {}).setdefault(topic, []).append((t, m))
    held = {typ: sorted(ts) for typ, ts in by_type.items()}

    def pick(typ, topic):
        topics = by_type.get(typ, {})
        if topic is not None:
            if topic not in topics:
                raise DatasetError(f"{path}: no {typ} on {topic}; the bag holds {held}")
            return topics[topic]
        if len(topics) != 1:
            raise DatasetError(f"{path}: expected one {typ} topic, found {sorted(topics)}; the bag holds {held} "
                               f"(choose with --camera-topic / --joints-topic)")
        return next(iter(topics.values()))

    cams = _by_stamp(pick("sensor_msgs/msg/Image", camera_topic))
    joints = _by_stamp(pick("sensor_msgs/msg/JointState", joints_topic))
    mapping = mapping or JointMapping(list(joint_names))
    dt = int(1e9 / rate_hz)
    t0, t1 = max(cams[0][0], joints[0][0]), min(cams[-1][0], joints[-1][0])
    ticks = np.arange(t0, t1 + 1, dt)
    if len(ticks) < 3:
        raise DatasetError(f"{path}: only {len(ticks)} control ticks of overlapping camera and joint data")
    ct = np.array([t for t, _ in cams])
    jt = np.array([t for t, _ in joints])
    frames, states, frame_t = [], [], []
    for t in ticks:
        c = nearest(ct, t)
        cm, jm = cams[c][1], joints[nearest(jt, ct[c])][1]
        frame_t.append(ct[c])
        try:
            rgb = image_to_rgb(cm.encoding, cm.height, cm.width, cm.step, bytes(cm.data))
        except ImageError as e:
            raise DatasetError(f"{path}: camera frame at {t} ns: {e}") from e
        frames.append(resize_rgb(rgb, image_size))
        states.append(mapping.apply(np.asarray(jm.position, np.float64), list(jm.name), "joint_states"))
    states = np.stack(states)
    if action_source not in ("next_state", "command"):
        raise ValueError(f"action_source must be next_state or command, got {action_source!r}")
    unknown = sorted(set(command_joints) - set(joint_names))
    if unknown:
        raise DatasetError(f"command joints {unknown} are not among the model's joints {list(joint_names)}")
    actions = np.concatenate([states[1:], states[-1:]])                 # the joint state reached next
    from_command = (list(range(len(joint_names))) if action_source == "command"
                    else [list(joint_names).index(n) for n in command_joints])
    if from_command:
        trajs = _by_stamp(pick("trajectory_msgs/msg/JointTrajectory", None))   # a zero stamp (start now): receive times
        tt = np.array([t for t, _ in trajs])
        for k in range(len(ticks)):
            until = frame_t[k + 1] if k + 1 < len(ticks) else frame_t[k] + dt
            i = int(np.searchsorted(tt, until, side="left")) - 1            # the last command before it
            if i < 0 or not trajs[i][1].points:
                continue                                                # none yet: the next state stands
            m = trajs[i][1]
            cmd = mapping.apply(np.asarray(m.points[0].positions), list(m.joint_names), "trajectory")
            actions[k, from_command] = cmd[from_command]
    return Episode({"observation.images.cam": np.stack(frames)}, states.astype(np.float32),
                   actions.astype(np.float32), rec.get("task") or "", index=rec.get("index", 0),
                   success=rec.get("success"))


def bags_to_dataset(paths: Sequence[str], out: str, joint_names: Sequence[str], rate_hz: float = 10.0,
                    image_size: int = 64, include_incomplete: bool = False, only_success: bool = False,
                    **kw) -> Tuple[int, List[str]]:
    """Returns (episodes written, reasons for the ones left out)."""
    left_out = []
    n = 0
    with LeRobotWriter(out, fps=rate_hz, state_names=joint_names, action_names=joint_names,
                       image_shape=(image_size, image_size, 3)) as w:
        for p in paths:
            rec, _ = read_messages(p)
            if rec["status"] != "complete" and not include_incomplete:
                left_out.append(f"{p}: status {rec['status']} (--include-incomplete keeps it)")
                continue
            if only_success and not rec.get("success"):
                left_out.append(f"{p}: not labelled a success")
                continue
            w.add(episode_from_bag(p, joint_names, rate_hz, image_size, **kw))
            n += 1
    if n == 0:
        raise DatasetError("no episode could be converted: " + "; ".join(left_out))
    return n, left_out


def main(argv=None) -> int:
    from kairos_sim.metaworld_sim import JOINT_NAMES
    ap = argparse.ArgumentParser(prog="kairos dataset", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    fb = sub.add_parser("from-bags", help="recorded episodes -> LeRobot dataset")
    fb.add_argument("bags", nargs="+", help="episode directories written by the recorder")
    fb.add_argument("--out", required=True)
    fb.add_argument("--joints", nargs="+", default=JOINT_NAMES, help="the model's joint order")
    fb.add_argument("--rate", type=float, default=10.0, help="control rate to resample to (Hz)")
    fb.add_argument("--image-size", type=int, default=64)
    fb.add_argument("--camera-topic")
    fb.add_argument("--joints-topic")
    fb.add_argument("--action-source", default="next_state", choices=["next_state", "command"])
    fb.add_argument("--command-joints", nargs="+", default=[], metavar="JOINT",
                    help="joints labelled by the commanded trajectory instead of the next joint state (a gripper: "
                         "--command-joints r_close for the simulated Sawyer)")
    fb.add_argument("--include-incomplete", action="store_true")
    fb.add_argument("--only-success", action="store_true")
    args = ap.parse_args(argv)
    n, left = bags_to_dataset(args.bags, args.out, args.joints, args.rate, args.image_size, args.include_incomplete,
                              args.only_success, camera_topic=args.camera_topic, joints_topic=args.joints_topic,
                              action_source=args.action_source, command_joints=args.command_joints)
    for why in left:
        print(f"left out {why}")
    print(f"wrote {n} episodes to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
