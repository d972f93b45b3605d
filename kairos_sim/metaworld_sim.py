"""Meta-World (MuJoCo) Sawyer arm with joint-space actions, a camera, task text and success.

    sim = MetaWorldSim(SimConfig(task="button-press-topdown-v3"))
    obs = sim.reset(variation=3)              # a scene from Meta-World's task sampling, seeded
    obs = sim.step(joint_targets)             # one control step (SimConfig.substeps physics steps)
    obs.image [S, S, 3] uint8, obs.joints [8], obs.success

Why joint space: real arms are commanded in joint space (a joint_trajectory_controller), so the model's
action chunk is target joint positions over the horizon. Meta-World itself is driven by end-effector
deltas through a mocap body; this wrapper turns a joint target into one: forward kinematics of the
target joints (a scratch MjData) gives the target hand position, and each physics step the mocap is
moved toward it (Meta-World's own clipping of 1 cm per step applies). Expert demonstrations are
recorded in the same form. SimConfig.targets says what a target is: by default ('reached') the
joints the arm should reach, and the expert's action at control step t is the joint positions it
reached at t + 1; with 'commanded' the arm's commanded set-point (the mocap, which the hand follows
through a spring-like weld and lags in contact), and the expert's action is its set-point at t + 1
through inverse kinematics, which keeps the force it pushes with (training.experiments.expert_interface).

Joints: right_j0..right_j6 of the Sawyer arm and r_close, the gripper finger (its target above the
middle of its range closes the gripper, below opens it).

Rendering is a raw `mujoco.Renderer` (made on the first render, in the rendering thread: a GL context
belongs to one thread, so a ROS node must render from one executor thread) with shadows, reflections, skybox and multisampling off
(~100 frames/s at 64-128 px in software GL); the picture is flipped to the usual orientation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from kairos_sim.camera import CameraModel

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

# Triton's LLVM must be loaded before Mesa's (llvmpipe renders MuJoCo here): a process that has rendered
# and then imports triton (which torch does lazily, e.g. in the first AdamW or torch.compile) segfaults.
# Seen in the test suite and reproduced alone; test_metaworld_sim checks that the order below is safe.
try:
    import triton  # noqa: F401
except ImportError:   # triton is optional for the simulator
    pass

JOINT_NAMES = ["right_j0", "right_j1", "right_j2", "right_j3", "right_j4", "right_j5", "right_j6", "r_close"]
ENV_STATE_NAMES = ["object_x", "object_y", "object_z", "goal_x", "goal_y", "goal_z"]   # MetaWorldSim.env_state

# Cameras this project adds to every scene (MuJoCo free cameras: look-at point (m), distance (m), azimuth and
# elevation (degrees)). Meta-World's default `corner2` shows the whole table and the arm's base, so at 64 px
# a task's goal marker (a 2 cm sphere) covers about one pixel; `workspace` frames the part of the table the
# tasks use, from the front-left, so the same marker covers about six (training.experiments.camera_footprint).
FREE_CAMERAS: Dict[str, Dict[str, object]] = {
    "workspace": {"lookat": (-0.05, 0.72, 0.10), "distance": 1.15, "azimuth": 150.0, "elevation": -45.0},
}

# One instruction per MT10 task (and a few more); the model is conditioned on these.
INSTRUCTIONS: Dict[str, str] = {
    "reach-v3": "reach the red goal",
    "push-v3": "push the puck to the goal",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "door-open-v3": "open the door",
    "drawer-open-v3": "open the drawer",
    "drawer-close-v3": "close the drawer",
    "button-press-topdown-v3": "press the button from the top",
    "peg-insert-side-v3": "insert the peg into the hole from the side",
    "window-open-v3": "open the window",
    "window-close-v3": "close the window",
    "button-press-v3": "press the button",
    "reach-wall-around-v3": "reach the goal around the wall",
}
# Tasks this project adds: its own scripted expert in a Meta-World scene (kairos_sim.experts).
# name -> (Meta-World task whose scene it uses, expert class name, scene edit function name or None), the
# names in kairos_sim.experts (the edit takes the Meta-World env before its first reset).
PROJECT_TASKS: Dict[str, tuple] = {
    "reach-wall-around-v3": ("reach-wall-v3", "AroundWallPolicy", "edit_scene"),
}
MT10 = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
        "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3"]
TEST_VARIATIONS = 10_000   # variations >= this are held out from demonstrations
PHYSICS_DT = 0.0125        # s per Meta-World env step (frame_skip 5 x 2.5 ms)
EPISODE_SECONDS = 4.0      # an episode's length in time (40 control steps at 10 Hz)


def _policy_name(task: str) -> str:
    base = task[:-3] if task.endswith("-v3") else task
    special = {"peg-insert-side": "PegInsertionSide"}
    camel = special.get(base) or "".join(p.capitalize() for p in base.split("-"))
    return f"Sawyer{camel}V3Policy"


@dataclass
class SimConfig:
    """task: Meta-World v3 task. camera: a MuJoCo camera of the scene (corner, corner2, corner3, topview,
    behindGripper, gripperPOV) or one of FREE_CAMERAS (this project's, e.g. 'workspace'). image_size:
    square frame side.
    substeps: physics (env) steps per control step; 8 x 12.5 ms = a 10 Hz control step.
    max_steps: control steps per episode. follow_gain: mocap delta per metre of hand error.
    targets: what a joint target means, for the arm and for the expert's recorded actions (TARGETS):
      'reached': the joints the arm should reach. Each physics step the set-point (Meta-World's mocap,
        which the hand is welded to) moves by the error between the target's hand position and the
        hand, so it keeps moving until the hand gets there; the expert's action is the joints it
        reached. In contact the reached joints lag the expert's set-point, so its force is not recorded.
      'commanded': the commanded set-point, as a position-controlled arm takes it. Each physics step
        the set-point moves toward the target's hand position and stops there; the hand follows it
        through the weld, a spring, so in contact it lags and pushes. The expert's action is its
        set-point at the end of the control step in joint space (inverse kinematics of the mocap)."""
    task: str = "button-press-topdown-v3"
    camera: str = "corner2"
    image_size: int = 64
    substeps: int = 8
    max_steps: int = 40
    follow_gain: float = 100.0
    targets: str = "reached"

    @property
    def control_dt(self) -> float:
        return self.substeps * PHYSICS_DT

    @classmethod
    def at_rate(cls, control_hz: float, seconds: float = EPISODE_SECONDS, **kw) -> "SimConfig":
        """A config whose control step is 1/control_hz s (a whole number of 12.5 ms physics steps:
        10, 16, 20, 40 or 80 Hz) with episodes of `seconds` (4 s: 40 steps at 10 Hz)."""
        n = substeps_for(control_hz)
        return cls(substeps=n, max_steps=int(round(seconds * control_hz)), **kw)


TARGETS = ("reached", "commanded")


def substeps_for(control_hz: float) -> int:
    """Physics steps (12.5 ms) per control step at `control_hz`; an error unless it is a whole number."""
    n = 1.0 / (float(control_hz) * PHYSICS_DT) if control_hz > 0 else 0.5
    if control_hz <= 0 or abs(n - round(n)) > 1e-6:
        raise ValueError(f"control rate {control_hz} Hz is not a whole number of {PHYSICS_DT * 1e3:g} ms physics "
                         f"steps; use 80 Hz divided by a whole number (10, 16, 20, 40, 80)")
    return int(round(n))


@dataclass
class SimObs:
    image: np.ndarray        # [S, S, 3] uint8 RGB
    joints: np.ndarray       # [8] positions, JOINT_NAMES order
    hand: np.ndarray         # [3] hand position (m), for metrics
    success: bool
    step: int
    distance: float = float("nan")   # hand to what the task is about (m): the object, or reach's goal


class MetaWorldSim:
    def __init__(self, cfg: SimConfig = SimConfig()):
        import mujoco
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS
        scene = PROJECT_TASKS[cfg.task][0] if cfg.task in PROJECT_TASKS else cfg.task
        if scene not in ALL_V3_ENVIRONMENTS:
            raise ValueError(f"unknown Meta-World task {cfg.task!r}; MT10 is {MT10}, and this project adds "
                             f"{sorted(PROJECT_TASKS)}")
        if cfg.targets not in TARGETS:
            raise ValueError(f"targets {cfg.targets!r}: one of {TARGETS}")
        self.cfg = cfg
        self._mj = mujoco
        env = ALL_V3_ENVIRONMENTS[scene]()
        if env._partially_observable:     # as Meta-World's set_task does: the goal is observed
            env._partially_observable = False
            try:
                del env.sawyer_observation_space   # a cached property computed with the goal hidden
            except AttributeError:
                pass
        env._set_task_called = True
        env._freeze_rand_vec = False      # scenes come from the env's own sampler (with its rejection loops),
        env.seeded_rand_vec = True        # seeded per variation in reset()
        self.env = env
        self.model, self.data = env.model, env.data
        if cfg.task in PROJECT_TASKS and PROJECT_TASKS[cfg.task][2]:
            from kairos_sim import experts
            getattr(experts, PROJECT_TASKS[cfg.task][2])(env)
            mujoco.mj_forward(self.model, self.data)
        self.model.vis.quality.shadowsize = 0
        self.model.vis.quality.offsamples = 0
        cams = [self.model.camera(i).name for i in range(self.model.ncam)]
        if cfg.camera not in FREE_CAMERAS and cfg.camera not in cams:
            raise ValueError(f"unknown camera {cfg.camera!r}; the scene has {cams}, and {sorted(FREE_CAMERAS)} "
                             "are this project's")
        self._renderer = None          # made on first render: a GL context belongs to the thread that made it
        self._scratch = mujoco.MjData(self.model)
        self._qadr = [self.model.joint(n).qposadr[0] for n in JOINT_NAMES]
        self._arm_dofs = [self.model.joint(n).dofadr[0] for n in JOINT_NAMES[:7]]
        self._hand = self.model.body("hand").id
        lo, hi = self.model.jnt_range[self.model.joint("r_close").id]
        self._grip_mid = 0.5 * (lo + hi)
        self.joint_lower = np.array([self.model.jnt_range[self.model.joint(n).id][0] for n in JOINT_NAMES])
        self.joint_upper = np.array([self.model.jnt_range[self.model.joint(n).id][1] for n in JOINT_NAMES])
        self.instruction = INSTRUCTIONS.get(cfg.task, cfg.task.replace("-v3", "").replace("-", " "))
        self._obs_vec = None
        self.steps, self.success = 0, False
        self.variation = 0

    # -- scene ---------------------------------------------------------------------------------
    def reset(self, variation: int = 0) -> SimObs:
        """A new episode in scene `variation` (object/goal positions drawn from Meta-World's task
        sampling space with this seed). Variations >= TEST_VARIATIONS are the held-out ones."""
        self.env.seed(int(variation))
        self.variation = int(variation)
        self._obs_vec, _ = self.env.reset()
        # Meta-World's reset_model moves the goal marker (model.site_pos) and, for some tasks, objects
        # after its last forward pass, so the derived positions that rendering draws (data.site_xpos,
        # xpos) and the observation it returns were stale until the first physics step: the first frame
        # of every episode showed the goal somewhere else, and its recorded object positions lagged
        # (found 2026-11-27). A forward pass updates them without advancing time; the observation's
        # current part (and its frame-stacked copy, as Meta-World's reset sets it) is read again.
        self._mj.mj_forward(self.model, self.data)
        curr = np.asarray(self.env._get_curr_obs_combined_no_goal(), np.float64)
        n = len(curr)
        self._obs_vec = np.array(self._obs_vec, np.float64)
        self._obs_vec[:n], self._obs_vec[n:2 * n] = curr, curr
        self.env._prev_obs = curr.copy()
        self.steps, self.success = 0, False
        return self.observe()

    def render(self) -> np.ndarray:
        mj = self._mj
        if self._renderer is None:
            self._renderer = mj.Renderer(self.model, self.cfg.image_size, self.cfg.image_size)
        r = self._renderer
        free = FREE_CAMERAS.get(self.cfg.camera)
        if free is not None:
            cam = mj.MjvCamera()
            cam.type = mj.mjtCamera.mjCAMERA_FREE
            cam.lookat[:] = free["lookat"]
            cam.distance, cam.azimuth, cam.elevation = free["distance"], free["azimuth"], free["elevation"]
            r.update_scene(self.data, camera=cam)
        else:
            r.update_scene(self.data, camera=self.cfg.camera)
        for f in (mj.mjtRndFlag.mjRND_SHADOW, mj.mjtRndFlag.mjRND_REFLECTION, mj.mjtRndFlag.mjRND_SKYBOX):
            r.scene.flags[f] = 0
        img = r.render()
        # Meta-World's own cameras are mounted upside down (its renderer flips them too); free cameras are upright
        return np.ascontiguousarray(img if free is not None else np.flipud(img))

    def camera_model(self) -> "CameraModel":
        """The pinhole model of this sim's camera as `render` draws it (kairos_sim.camera)."""
        if self._renderer is None:
            self.render()
        return CameraModel.from_scene(self._renderer.scene, self.cfg.image_size,
                                      flipped=self.cfg.camera not in FREE_CAMERAS)

    def project(self, points_n3: np.ndarray) -> np.ndarray:
        """Pixel coordinates [N, 2] (column, row) of world points [N, 3] in this sim's frames."""
        return self.camera_model().project(points_n3)

    def joints(self) -> np.ndarray:
        return self.data.qpos[self._qadr].astype(np.float64).copy()

    def hand(self) -> np.ndarray:
        return self.data.xpos[self._hand].copy()

    def env_state(self) -> np.ndarray:
        """Privileged simulator state [6] (ENV_STATE_NAMES): the first object's position and the goal's
        (m), from Meta-World's observation vector. Recorded as a dataset's observation.environment_state
        for training-time supervision only; no policy input at test time ever comes from it."""
        o = self._obs_vec
        return np.concatenate([o[4:7], o[-3:]]).astype(np.float64)

    def task_distance(self) -> float:
        """Distance (m) from the gripper's centre to the task's object (reach: to the goal)."""
        e = self.env
        goal = e._target_pos if self.cfg.task.startswith("reach") else e._get_pos_objects()[:3]
        return float(np.linalg.norm(np.asarray(e.tcp_center) - np.asarray(goal)))

    def observe(self) -> SimObs:
        return SimObs(self.render(), self.joints(), self.hand(), self.success, self.steps, self.task_distance())

    def forward_hand(self, joints: np.ndarray) -> np.ndarray:
        """Hand position [3] for joint positions [8] (forward kinematics on a scratch copy)."""
        s = self._scratch
        s.qpos[:] = self.data.qpos
        s.qpos[self._qadr] = joints
        self._mj.mj_kinematics(self.model, s)
        return s.xpos[self._hand].copy()

    def setpoint(self) -> np.ndarray:
        """The arm's commanded hand position [3]: Meta-World's mocap body, which the hand is welded to."""
        return self.data.mocap_pos[0].copy()

    def inverse_hand(self, hand_xyz: np.ndarray, start: Optional[np.ndarray] = None, iters: int = 50,
                     tol: float = 1e-6) -> np.ndarray:
        """Joint positions [8] (arm joints moved, the rest of `start` kept; default the current joints)
        whose hand position is `hand_xyz` [3], or as near as the joint limits allow: damped least squares
        on the hand's positional Jacobian (a scratch MjData), from `start`."""
        mj, s = self._mj, self._scratch
        q = (self.joints() if start is None else np.asarray(start, np.float64)).copy()
        jac = np.zeros((3, self.model.nv))
        for _ in range(iters):
            s.qpos[:] = self.data.qpos
            s.qpos[self._qadr] = q
            mj.mj_kinematics(self.model, s)
            mj.mj_comPos(self.model, s)
            err = np.asarray(hand_xyz, np.float64) - s.xpos[self._hand]
            if np.linalg.norm(err) < tol:
                break
            mj.mj_jacBody(self.model, s, jac, None, self._hand)
            J = jac[:, self._arm_dofs]
            q[:7] += J.T @ np.linalg.solve(J @ J.T + 1e-4 * np.eye(3), err)
            q[:7] = np.clip(q[:7], self.joint_lower[:7], self.joint_upper[:7])
        return q

    # -- control -------------------------------------------------------------------------------
    def _env_step(self, action4: np.ndarray) -> None:
        self._obs_vec, _, _, _, info = self.env.step(np.asarray(action4, np.float32))
        self.success = self.success or bool(info["success"])

    def step(self, target: np.ndarray, render: bool = True) -> Optional[SimObs]:
        """Follow joint targets [8] (or a waypoint list [K, 8], spread over the control step) for one
        control step of `substeps` physics steps."""
        target = np.asarray(target, np.float64)
        if target.ndim == 1:
            target = target[None]
        if target.shape[1] != len(JOINT_NAMES) or not np.isfinite(target).all():
            raise ValueError(f"joint targets must be finite [{len(JOINT_NAMES)}] or [K, {len(JOINT_NAMES)}], "
                             f"got {target.shape}")
        target = np.clip(target, self.joint_lower, self.joint_upper)
        n = self.cfg.substeps
        follow = self.hand if self.cfg.targets == "reached" else self.setpoint   # see SimConfig.targets
        for i in range(n):
            q = target[min(len(target) - 1, (i * len(target)) // n)]
            delta = (self.forward_hand(q) - follow()) * self.cfg.follow_gain
            grip = 1.0 if q[-1] > self._grip_mid else -1.0
            self._env_step(np.concatenate([np.clip(delta, -1, 1), [grip]]))
            if self.env.curr_path_length >= self.env.max_path_length:
                break
        self.steps += 1
        return self.observe() if render else None

    # -- the scripted expert ---------------------------------------------------------------------
    def expert_policy(self):
        if self.cfg.task in PROJECT_TASKS:
            from kairos_sim import experts
            return getattr(experts, PROJECT_TASKS[self.cfg.task][1])(self)
        import metaworld.policies as policies
        name = _policy_name(self.cfg.task)
        if not hasattr(policies, name):
            raise ValueError(f"Meta-World has no scripted expert {name} for {self.cfg.task}")
        return getattr(policies, name)()

    def expert_step(self, policy) -> np.ndarray:
        """Run the scripted expert for one control step; returns the joint-space action that reproduces
        it [8]: the joint positions it reached, or with SimConfig.targets 'commanded' its set-point in
        joint space. The gripper target is the expert's command mapped onto the finger's range (closed
        above the middle)."""
        qs, grips = self.expert_substeps(policy)
        self.steps += 1
        q = qs[-1].copy() if self.cfg.targets == "reached" else self.inverse_hand(self.setpoint())
        lo, hi = self.joint_lower[-1], self.joint_upper[-1]
        q[-1] = hi if np.mean(grips) > 0 else lo
        return q

    def expert_substeps(self, policy) -> tuple:
        """The scripted expert on Meta-World's own controller for one control step: the joints after each
        physics step [n, 8] and its gripper command at each [n] (float32, as the policy gives it)."""
        qs, grips = [], []
        for _ in range(self.cfg.substeps):
            a = np.clip(policy.get_action(self._obs_vec), -1, 1)
            grips.append(a[-1])
            self._env_step(a)
            qs.append(self.joints())
            if self.env.curr_path_length >= self.env.max_path_length:
                break
        return np.stack(qs), np.asarray(grips)

    def save_state(self) -> tuple:
        """Everything one control step changes: the physics (MuJoCo's integration state: positions,
        velocities, mocap, ...) and the Python-side state of the env and of this wrapper."""
        mj, e = self._mj, self.env
        spec = mj.mjtState.mjSTATE_INTEGRATION
        phys = np.empty(mj.mj_stateSize(self.model, spec))
        mj.mj_getState(self.model, self.data, phys, spec)
        last = None if e._last_stable_obs is None else e._last_stable_obs.copy()
        return (phys, e.curr_path_length, e._prev_obs.copy(), last, e._did_see_sim_exception,
                self._obs_vec.copy(), self.success, self.steps)

    def restore_state(self, state: tuple) -> None:
        mj, e = self._mj, self.env
        phys, e.curr_path_length, prev, last, e._did_see_sim_exception, obs, self.success, self.steps = state
        e._prev_obs, e._last_stable_obs, self._obs_vec = prev.copy(), None if last is None else last.copy(), obs.copy()
        spec = mj.mjtState.mjSTATE_INTEGRATION
        mj.mj_setState(self.model, self.data, phys, spec)
        mj.mj_forward(self.model, self.data)           # positions that rendering and the expert read
        mj.mj_setState(self.model, self.data, phys, spec)   # mj_forward rewrote the solver's warm start
        for site in e._target_site_config:    # as the env's own step does: sites follow the goal
            e._set_pos_site(*site)

    def expert_target(self, policy) -> np.ndarray:
        """The action [8] expert_step would record for one control step from here (the joints the
        expert reaches, or its set-point with targets 'commanded'); it runs the step on the physics and
        then puts everything back, so the scene is left as it was."""
        state = self.save_state()
        try:
            return self.expert_step(policy)
        finally:
            self.restore_state(state)

    def expert_joint_step(self, policy) -> np.ndarray:
        """One control step of the expert through the policy's own interface: it looks one step ahead
        (expert_target) and the arm then follows that joint target with `step`, exactly as it follows a
        model's. Returns the target [8], the recorded action, whose replay reproduces the episode."""
        q = self.expert_target(policy)
        self.step(q, render=False)
        return q

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


EXPERT_CONTROL = ("native", "joint")


def rollout_expert(sim: MetaWorldSim, variation: int, extra_steps: Optional[int] = None,
                   record_env_state: bool = False, control: str = "native"):
    """One expert episode in joint space: (frames [T, S, S, 3], joints [T, 8], actions [T, 8], success),
    and with record_env_state the privileged state of every frame [T, 6] (MetaWorldSim.env_state) last.
    Stops `extra_steps` control steps after success (default: 0.2 s worth), or at max_steps.

    control: 'native' lets the expert drive its own end-effector controller every physics step and
    records the joints it reached each control step (MetaWorldSim.expert_step); 'joint' makes it act
    through the policy's interface, one joint target per control step that the arm then follows
    (MetaWorldSim.expert_joint_step), so the recorded actions are the commands that made the episode."""
    if control not in EXPERT_CONTROL:
        raise ValueError(f"expert control {control!r}: one of {EXPERT_CONTROL}")
    if extra_steps is None:
        extra_steps = max(1, int(round(0.2 / sim.cfg.control_dt)))
    pol = sim.expert_policy()
    obs = sim.reset(variation)
    frames, joints, actions, env = [], [], [], []
    after = None
    for _ in range(sim.cfg.max_steps):
        frames.append(obs.image)
        joints.append(obs.joints)
        env.append(sim.env_state())
        actions.append(sim.expert_step(pol) if control == "native" else sim.expert_joint_step(pol))
        obs = sim.observe()
        if sim.success:
            after = extra_steps if after is None else after - 1
            if after <= 0:
                break
    out = (np.stack(frames), np.stack(joints), np.stack(actions), sim.success)
    return out + (np.stack(env),) if record_env_state else out
