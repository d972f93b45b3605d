"""The act node's behaviour, without ROS: latest inputs in, one decision per control tick out.

Every tick the core either commands a trajectory (the strategy's commands for the coming ticks, in
the robot's joint order, clamped by the joint limits) or holds (the current position) and says why.
It holds when the camera or joint stream is stale, a joint is missing, a value is NaN/Inf, the image
was unusable, or the backend failed; it resumes on its own when the inputs are good again. Each
cause is reported once until it clears (the node logs it and puts it in diagnostics).
"""
from __future__ import annotations

import collections
import math
import re
import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from kairos_model.engine import Observation
from kairos_ros.core.chunking import ExecuteThenReplan, RealTimeChunking, TemporalEnsemble
from kairos_ros.core.image import ImageError, resize_rgb
from kairos_ros.core.safety import JointLimits, check_joint_state, reorder


STRATEGIES = ("execute_then_replan", "temporal_ensemble", "real_time_chunking")


@dataclass
class ActConfig:
    """joint_names: the robot's joints, in the order commands are sent. model_joint_names: the
    order of the model's action/proprio vector (empty: same as joint_names). control_rate_hz: ticks
    per second; step_duration: seconds between chunk steps (one tick). strategy:
    'execute_then_replan' or 'temporal_ensemble'. image_max_age_s / joints_max_age_s: staleness
    limits. lower / upper / max_velocity: joint limits in the robot's order. instruction: the
    initial task. sync_tolerance_s: the camera frame is paired with the joint state whose header
    stamp is nearest to its own; farther apart than this, the node holds (0: use the newest). A frame
    newer than every joint state (its joint state is still in flight on the other topic) waits up to
    one control period before that counts: meanwhile the tick runs on the chunk and memory it has."""
    joint_names: List[str]
    lower: List[float]
    upper: List[float]
    max_velocity: List[float]
    model_joint_names: List[str] = field(default_factory=list)
    control_rate_hz: float = 10.0
    strategy: str = "execute_then_replan"
    execution_horizon: int = 4
    ensemble_decay: float = 0.01
    image_max_age_s: float = 0.5
    joints_max_age_s: float = 0.5
    instruction: str = ""
    sync_tolerance_s: float = 0.05
    rtc_delay: int = 1

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if not self.model_joint_names:
            self.model_joint_names = list(self.joint_names)
        if sorted(self.model_joint_names) != sorted(self.joint_names):
            raise ValueError(f"model joints {self.model_joint_names} and robot joints {self.joint_names} differ")
        if self.control_rate_hz <= 0:
            raise ValueError("control_rate_hz must be > 0")

    @property
    def step_duration(self) -> float:
        return 1.0 / self.control_rate_hz


def check_control_rate(meta: dict, control_rate_hz: float, where: str = "the artifact") -> None:
    """A model acts at the rate of the demonstrations it learned from (one chunk step per frame of its
    data; meta['control_dt'], written by the trainer): commanding it at another rate would stretch
    or squeeze every motion it predicts. Raises ValueError on a mismatch; artifacts from before the
    rate was recorded (no control_dt) are not checked."""
    dt = meta.get("control_dt")
    if dt is None:
        return
    model_hz = 1.0 / float(dt)
    if abs(model_hz - control_rate_hz) > 0.01 * model_hz:
        raise ValueError(f"{where} acts at {model_hz:g} Hz (control_dt {float(dt):g} s, the rate of its "
                         f"training data) but control_rate_hz is {control_rate_hz:g}: set control_rate_hz "
                         f"to {model_hz:g}")


# Holds that are part of normal operation (the loop waiting to pair its inputs), not faults: the act
# node logs them at info level, every other hold reason (stale or bad input, backend failure) as an error.
WAIT_FRAME_AFTER_RESET = "waiting for the first camera frame after the reset"
WAIT_JOINTS_FOR_FRAME = "waiting for the joint state that goes with the camera frame"
EXPECTED_WAITS = frozenset({WAIT_FRAME_AFTER_RESET, WAIT_JOINTS_FOR_FRAME})
# Nothing received yet: normal while the drivers start (logged as a warning, an error only once a
# stream that was flowing goes stale or bad). The node holds the arm where it is, and before any
# joint state, when there is no position to hold, commands nothing.
NO_JOINTS = "no joint state received yet"
NO_IMAGE = "no camera image received yet"
NO_INSTRUCTION = "no instruction set"
STARTUP_WAITS = frozenset({NO_JOINTS, NO_IMAGE, NO_INSTRUCTION})


def fault_severity(reason: str) -> str:
    """How a hold's reason is reported: 'info' (a normal wait inside a running stream), 'warn'
    (nothing received yet) or 'error' (a fault: stale, malformed, unknown or non-finite input)."""
    return "info" if reason in EXPECTED_WAITS else "warn" if reason in STARTUP_WAITS else "error"


def hold_kind(reason: str) -> str:
    """A hold reason with its numbers replaced by '#', to count holds by cause:
    'joint state is 0.570 s old (max 0.5 s)' -> 'joint state is # s old (max # s)'."""
    return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", reason)


def distilled_step_note(meta: dict, sampler_steps: int, where: str = "the artifact") -> Optional[str]:
    """A distilled student (meta['distilled'], written by `kairos distill`) learned to sample in its own
    number of steps (meta['sampler_steps']); other step counts are not what it was trained for
    (docs/results/distillation.md, "The main job runs the one-step student"). Returns a warning to log
    when sampler_steps differs, else None. Not an error: more steps are still a valid sampler, and a
    user may measure them."""
    distilled = meta.get("distilled")
    own = meta.get("sampler_steps")
    if not distilled or own is None or int(own) == int(sampler_steps):
        return None
    return (f"{where} is a student distilled for {int(own)} sampler step(s) but runs at {int(sampler_steps)}: "
            f"set sampler_steps: {int(own)} (other step counts are not what it was trained for)")


@dataclass
class TickResult:
    """kind: 'trajectory', 'hold' or 'idle' (nothing known yet: no command). positions: [K, J] in the
    robot's joint order (K = 1 for a hold). reason: why it holds. new_faults: causes seen for the
    first time (to log once). prediction: the engine output when this tick ran inference."""
    kind: str
    positions: Optional[np.ndarray] = None
    reason: str = ""
    new_faults: List[str] = field(default_factory=list)
    prediction: object = None
    tick: int = 0


class ActCore:
    def __init__(self, cfg: ActConfig, engine):
        self.cfg, self.engine = cfg, engine
        self.limits = JointLimits(cfg.joint_names, cfg.lower, cfg.upper, cfg.max_velocity)
        self.strategy = {"execute_then_replan": lambda: ExecuteThenReplan(cfg.execution_horizon),
                         "temporal_ensemble": lambda: TemporalEnsemble(cfg.ensemble_decay),
                         "real_time_chunking": lambda: RealTimeChunking(cfg.execution_horizon, cfg.rtc_delay),
                         }[cfg.strategy]()
        self.instruction = cfg.instruction
        self.image = None
        self.image_stamp = -math.inf
        self.image_error: Optional[str] = None
        self.joints = None
        self.joints_stamp = -math.inf
        self.image_header: Optional[float] = None
        self.joint_history = collections.deque(maxlen=64)   # (header stamp, names, positions)
        self.tick_index = 0
        self.active_faults: set = set()
        self.last_good_position: Optional[np.ndarray] = None
        # One memory update per camera frame, as in training: the control timer and the camera are
        # not in lockstep, so a tick without a new frame must not feed the same frame again.
        self.image_seq = 0
        self.used_seq: Optional[int] = None
        self.used_stamp = -math.inf          # arrival time of the frame the memory took last

    # -- inputs (called from subscriber callbacks: cheap) -----------------------------------------
    def set_image(self, rgb_hwc: Optional[np.ndarray], stamp: float, error: Optional[str] = None,
                  header_stamp: Optional[float] = None) -> None:
        """stamp: when it arrived (staleness); header_stamp: when it was taken (pairing), if known."""
        if error is not None:
            self.image_error = error
            return
        try:
            size = self.engine.image_size
            if size[0] != size[1]:
                raise ImageError(f"model input {size} is not square")
            self.image = resize_rgb(rgb_hwc, size[0])
            self.image_seq += 1
            self.image_stamp = stamp
            self.image_header = header_stamp if header_stamp else None
            self.image_error = None
        except ImageError as e:
            self.image_error = str(e)

    def set_joints(self, names: Sequence[str], positions: Sequence[float], stamp: float,
                   header_stamp: Optional[float] = None) -> None:
        self.joints = (list(names), [float(p) for p in positions])
        self.joints_stamp = stamp
        if header_stamp:
            self.joint_history.append((header_stamp, self.joints))

    def paired_joints(self):
        """The joint state to pair with the current frame: the one whose header stamp is nearest the
        image's (when both carry stamps and pairing is on), else the newest. Returns (joints, gap_s)."""
        if self.cfg.sync_tolerance_s <= 0 or self.image_header is None or not self.joint_history:
            return self.joints, 0.0
        stamp, joints = min(self.joint_history, key=lambda h: abs(h[0] - self.image_header))
        return joints, abs(stamp - self.image_header)

    def joints_in_flight(self, now: float) -> bool:
        """True when the current frame has no joint state within sync_tolerance_s yet but was taken
        after every joint state received and arrived less than one control period ago: camera and
        joints come on separate topics, so its own joint state is most likely still on the way."""
        if (self.cfg.sync_tolerance_s <= 0 or self.image_header is None or not self.joint_history
                or now - self.image_stamp >= self.cfg.step_duration):
            return False
        newest = max(h[0] for h in self.joint_history)      # every joint state is older: none is near
        return self.image_header - newest > self.cfg.sync_tolerance_s

    def frame_ready(self, now: float) -> bool:
        """A camera frame the memory has not taken yet, with its joint state in (not in flight): what
        a tick on frame arrival waits for."""
        return self.image is not None and self.image_seq != self.used_seq and not self.joints_in_flight(now)

    def set_instruction(self, text: str) -> None:
        self.instruction = text

    def reset(self) -> None:
        """New episode: empty memory, no chunk; the frame held now belongs to the old episode, so
        the memory waits for the next one."""
        self.engine.reset()
        self.strategy.reset()
        self.tick_index = 0
        self.used_seq = self.image_seq if self.image is not None else None

    # -- one control tick -------------------------------------------------------------------------
    def _fault(self, now: float) -> Optional[str]:
        if self.joints is None:
            return NO_JOINTS
        names, pos = self.joints
        why = check_joint_state(self.cfg.joint_names, names, pos, self.cfg.joints_max_age_s, now - self.joints_stamp)
        if why:
            return why
        if self.image_error:
            return f"camera: {self.image_error}"
        if self.image is None:
            return NO_IMAGE
        if now - self.image_stamp > self.cfg.image_max_age_s:
            return f"camera image is {now - self.image_stamp:.3f} s old (max {self.cfg.image_max_age_s} s)"
        if not self.instruction:
            return NO_INSTRUCTION
        joints, gap = self.paired_joints()
        if gap > self.cfg.sync_tolerance_s and not self.joints_in_flight(now):
            return (f"camera frame and nearest joint state are {gap:.3f} s apart "
                    f"(sync_tolerance_s {self.cfg.sync_tolerance_s})")
        if joints is not self.joints:          # pairing chose an older state: it must be usable too
            bad = check_joint_state(self.cfg.joint_names, joints[0], joints[1], math.inf, 0.0)
            if bad:
                return f"paired joint state: {bad}"
        return None

    def warm_up(self, steps: int = 2, decode_future: bool = False) -> List[float]:
        """Run the engine `steps` times on a blank frame with the joints at the middle of their limits,
        then empty its memory again; returns each step's ms. The first step of a fresh engine pays
        one-off costs (torch's first kernels and allocations: 0.4-0.5 s against 25-40 ms per step for
        the default student on this CPU, README "On the robot"), which would otherwise fall on the
        first command after activation and drop the camera frames that arrive meanwhile. Nothing of it stays: the memory, the step
        count and the noise generator are reset, so the actions are those of an engine never warmed."""
        h, w = self.engine.image_size
        mid = {n: 0.5 * (lo + hi) for n, lo, hi in zip(self.cfg.joint_names, self.cfg.lower, self.cfg.upper)}
        obs = Observation(np.zeros((h, w, 3), np.uint8), np.array([mid[n] for n in self.cfg.model_joint_names]),
                          self.instruction or "warm up")
        took = []
        for _ in range(max(0, steps)):
            t0 = time.perf_counter()
            pred = self.engine.step(obs)
            if decode_future and hasattr(self.engine, "decode_future") and pred.future_latents is not None:
                self.engine.decode_future(pred.future_latents)
            took.append(1e3 * (time.perf_counter() - t0))
        self.engine.reset()
        return took

    def current_position(self) -> Optional[np.ndarray]:
        """The newest complete, finite joint position (robot order); with a bad joint state, the last
        good one: a hold keeps the arm where it last was known to be."""
        if self.joints is not None:
            names, pos = self.joints
            try:
                cur = reorder(names, pos, self.cfg.joint_names)
            except KeyError:
                cur = None
            if cur is not None and np.isfinite(cur).all():
                self.last_good_position = cur
        return self.last_good_position

    def _hold(self, reason: str) -> TickResult:
        new = [] if reason in self.active_faults else [reason]
        self.active_faults = {reason}
        cur = self.current_position()
        if cur is None:
            return TickResult("idle", None, reason, new, tick=self.tick_index)
        return TickResult("hold", np.clip(cur, self.cfg.lower, self.cfg.upper)[None], reason, new,
                          tick=self.tick_index)

    def tick(self, now: float) -> TickResult:
        """Decide this tick's command. Runs inference when the strategy wants a new chunk."""
        fault = self._fault(now)
        if fault:
            return self._hold(fault)
        new_frame = self.image_seq != self.used_seq
        in_flight = new_frame and self.joints_in_flight(now)
        if in_flight:                        # take this frame next tick, with its own joint state
            if self.used_seq is None or self.tick_index == 0:
                return self._hold(WAIT_JOINTS_FOR_FRAME)
            new_frame = False
        if not new_frame and self.used_seq is not None and self.tick_index == 0:
            return self._hold(WAIT_FRAME_AFTER_RESET)
        cur = self.current_position()
        pred = None
        names, pos = self.joints if in_flight else self.paired_joints()[0]
        obs = Observation(self.image, reorder(names, pos, self.cfg.model_joint_names), self.instruction)
        need = self.strategy.needs_chunk(self.tick_index)
        kw = {}
        if need and isinstance(self.strategy, RealTimeChunking):
            pre = self.strategy.prefix(self.tick_index)                # [d, J] robot order, or None
            if pre is not None:
                kw["action_prefix"] = pre[:, [self.cfg.joint_names.index(n) for n in self.cfg.model_joint_names]]
        if not new_frame:
            kw["update_memory"] = False      # the memory already holds this frame
        try:                                 # the memory takes every new frame; sampling only when needed
            if new_frame or need:
                pred = self.engine.step(obs, sample=need, **kw)
        except Exception as e:               # a backend failure must not take the robot down
            return self._hold(f"backend error: {type(e).__name__}: {e}")
        if not in_flight:
            self.used_seq, self.used_stamp = self.image_seq, self.image_stamp
        if need:
            chunk = pred.actions[:, [self.cfg.model_joint_names.index(n) for n in self.cfg.joint_names]]
            if not np.isfinite(chunk).all():
                return self._hold("backend produced non-finite actions")
            self.strategy.add(chunk, start_tick=self.tick_index)
        cmds = []
        t = self.tick_index
        while (c := self.strategy.command(t)) is not None and len(cmds) < 256:
            cmds.append(c)
            t += 1
        if not cmds:
            return self._hold("no chunk covers this tick")
        self.active_faults = set()
        traj = self.limits.clamp_chunk(np.stack(cmds), cur, self.cfg.step_duration)
        result = TickResult("trajectory", traj, "", [], pred, tick=self.tick_index)
        self.tick_index += 1
        return result
