"""The act node: a managed (lifecycle) ROS 2 node, a thin adapter over kairos_ros.core.ActCore.

configure: declare/read parameters, load the model (artifact directory, or an untrained preset with a loud
warning), create publishers, subscriptions and services. activate: start the control timer.
deactivate: publish a hold, stop commanding. cleanup: free the model.

The control timer only hands the tick to a worker thread; inference never runs on the executor
thread, so subscriptions keep flowing while the model thinks. A tick that finds the worker still
busy is a deadline miss.
"""
from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from typing import List, Optional

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration as RosDuration
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from kairos_msgs.msg import ActionChunk, ImaginedFuture
from kairos_msgs.srv import ResetMemory, SetInstruction
from kairos_ros.core.act_core import (ActConfig, ActCore, check_control_rate, distilled_step_note, fault_severity,
                                     hold_kind)
from kairos_ros.node_util import declare_parameters
from kairos_ros.core.image import ImageError, decode_compressed, image_to_rgb

PARAMETERS = {
    # name: (default, description)
    "artifact": ("", "model directory: a checkpoint (config.json + safetensors) or an exported artifact (kairos export); "
                 "empty: an untrained preset"),
    "backend": ("auto", "inference backend: torch | onnx (onnxruntime) | tensorrt | auto (the exported "
                        "artifact's default when it can run here, torch for a plain checkpoint)"),
    "quantized": (False, "run quantized graphs (int8 world model, int4 text encoder; onnx backend; "
                         "a plain checkpoint is exported with them)"),
    "device": ("auto", "torch backend: cpu | cuda | auto (cuda when this machine has it)"),
    "cuda_graphs": (True, "torch backend on CUDA: replay the control step as CUDA graphs (false: eager; "
                          "same actions, launch-bound and several times slower at batch 1)"),
    "preset": ("tiny", "world model preset used when no artifact is given"),
    "joint_names": (["joint1"], "the robot's joints, in command order"),
    "model_joint_names": ([""], "the model's joint order (empty: same as joint_names)"),
    "lower": ([-3.14], "lower position limit per joint (robot order)"),
    "upper": ([3.14], "upper position limit per joint (robot order)"),
    "max_velocity": ([1.0], "largest joint speed per joint, units/s"),
    "urdf": ("", "URDF file: when set, lower/upper/max_velocity come from its <limit> tags"),
    "control_rate_hz": (10.0, "control ticks per second; one chunk step per tick; must be the artifact's own rate "
                               "(1 / its control_dt), else configure fails"),
    "tick_on": ("timer", "timer: a control tick every 1/control_rate_hz on the node's own clock (the frame it uses "
                         "is up to one period old); frame: a tick as soon as a new camera frame and its joint state "
                         "are in, at most one per 0.9 period, the timer only a watchdog that ticks (and holds on "
                         "stale input) when none came for 1.5 periods"),
    "strategy": ("execute_then_replan", "execute_then_replan | temporal_ensemble | real_time_chunking"),
    "rtc_delay": (1, "real_time_chunking: chunk steps that run while the next chunk is computed (inpainted)"),
    "execution_horizon": (4, "chunk steps executed before replanning (execute_then_replan)"),
    "ensemble_decay": (0.01, "weight decay per tick of age (temporal_ensemble)"),
    "image_max_age_s": (0.5, "hold if the newest camera image is older than this"),
    "joints_max_age_s": (0.5, "hold if the newest joint state is older than this"),
    "instruction": ("", "initial task instruction"),
    "sampler_steps": (0, "flow-matching steps per sampling tick; 0: the artifact's own (a distilled student records "
                         "it), else 4"),
    "cfg_scale": (1.0, "classifier-free guidance on the instruction (1: off)"),
    "output": ("joint_trajectory", "joint_trajectory | float64_multi_array (ros2_control forward controller)"),
    "camera_topic": ("camera/image_raw", "sensor_msgs/Image input"),
    "joint_states_topic": ("joint_states", "sensor_msgs/JointState input"),
    "instruction_topic": ("instruction", "std_msgs/String input"),
    "trajectory_topic": ("joint_trajectory_controller/joint_trajectory", "trajectory_msgs/JointTrajectory output"),
    "forward_topic": ("forward_position_controller/commands", "std_msgs/Float64MultiArray output"),
    "diagnostics_period_s": (1.0, "diagnostics publishing period"),
    "sync_tolerance_s": (0.05, "pair camera and joints by header stamp within this (0: newest of each); a frame "
                         "newer than every joint state waits one control period for its own"),
    "camera_transport": ("raw", "raw (sensor_msgs/Image on camera_topic) | compressed (CompressedImage on camera_topic/compressed)"),
    "inference_threads": (0, "intra-op threads for inference, torch or onnxruntime (0: the library's default); "
                             "1 is often fastest for small models"),
    "warm_up_steps": (2, "engine steps run on a blank frame at configure and then forgotten, so the first command "
                         "does not wait for the engine's one-off start-up (torch: ~0.5 s); 0: none"),
    "imagine_every": (1, "publish ImaginedFuture (decoded future frames) every N-th new chunk; 0: never"),
}


def _stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class ActNode(LifecycleNode):
    def __init__(self, name: str = "kairos_act", **kwargs):
        super().__init__(name, **kwargs)
        declare_parameters(self, PARAMETERS)
        self.core: Optional[ActCore] = None
        self.timer = None
        self.worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kairos_infer")
        self.busy = threading.Lock()
        self.latencies: List[float] = []
        self.frame_ages: List[float] = []      # s from a frame's arrival to the command sampled from it
        self.deadline_misses = 0
        self.holds = collections.deque(maxlen=10_000)  # (node-clock ns, hold_kind) of each tick that held
        self.last_tick = -float("inf")         # node-clock s of the last tick started (ROS time: sim time under use_sim_time)
        self.frame_ticks = False               # tick_on: frame (set at configure)
        self.artifact_id = ""

    # -- lifecycle ---------------------------------------------------------------------------------
    def p(self, name):
        return self.get_parameter(name).value

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            lower, upper, vel = list(self.p("lower")), list(self.p("upper")), list(self.p("max_velocity"))
            if self.p("urdf"):
                from kairos_ros.core.urdf import urdf_limits
                lower, upper, vel = urdf_limits(self.p("urdf"), list(self.p("joint_names")))
            cfg = ActConfig(joint_names=list(self.p("joint_names")),
                            model_joint_names=[n for n in self.p("model_joint_names") if n],
                            lower=lower, upper=upper, max_velocity=vel, control_rate_hz=self.p("control_rate_hz"),
                            strategy=self.p("strategy"), execution_horizon=self.p("execution_horizon"),
                            ensemble_decay=self.p("ensemble_decay"), image_max_age_s=self.p("image_max_age_s"),
                            joints_max_age_s=self.p("joints_max_age_s"), instruction=self.p("instruction"),
                            sync_tolerance_s=self.p("sync_tolerance_s"), rtc_delay=self.p("rtc_delay"))
            if self.p("inference_threads") > 0:
                import torch
                torch.set_num_threads(self.p("inference_threads"))
            engine = self._load_engine(cfg)
            self.core = ActCore(cfg, engine)
            if self.p("warm_up_steps") > 0:
                took = self.core.warm_up(self.p("warm_up_steps"), decode_future=self.p("imagine_every") > 0)
                self.get_logger().info("warm-up: " + ", ".join(f"{t:.0f}" for t in took) + " ms per step")
        except Exception as e:
            self.get_logger().error(f"configure failed: {e}")
            return TransitionCallbackReturn.FAILURE
        if self.p("tick_on") not in ("timer", "frame"):
            self.get_logger().error(f"tick_on must be timer or frame, got {self.p('tick_on')!r}")
            return TransitionCallbackReturn.FAILURE
        self.frame_ticks = self.p("tick_on") == "frame"       # read once: the input callbacks check it
        if self.p("output") not in ("joint_trajectory", "float64_multi_array"):
            self.get_logger().error(f"output must be joint_trajectory or float64_multi_array, got {self.p('output')!r}")
            return TransitionCallbackReturn.FAILURE
        self.traj_pub = self.create_lifecycle_publisher(JointTrajectory, self.p("trajectory_topic"), 10)
        self.fwd_pub = self.create_lifecycle_publisher(Float64MultiArray, self.p("forward_topic"), 10)
        self.chunk_pub = self.create_lifecycle_publisher(ActionChunk, "~/action_chunk", 10)
        self.future_pub = self.create_lifecycle_publisher(ImaginedFuture, "~/imagined_future", 2)
        self.chunks_published = 0
        self.diag_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        self.subs = [
            (self.create_subscription(CompressedImage, self.p("camera_topic") + "/compressed", self.on_compressed,
                                      qos_profile_sensor_data) if self.p("camera_transport") == "compressed" else
             self.create_subscription(Image, self.p("camera_topic"), self.on_image, qos_profile_sensor_data)),
            self.create_subscription(JointState, self.p("joint_states_topic"), self.on_joints, qos_profile_sensor_data),
            self.create_subscription(String, self.p("instruction_topic"), lambda m: self.core.set_instruction(m.data), 10),
        ]
        self.srvs = [self.create_service(ResetMemory, "~/reset_memory", self.on_reset),
                     self.create_service(SetInstruction, "~/set_instruction", self.on_set_instruction)]
        self.get_logger().info(f"configured: backend {self.core.engine.backend}, joints {self.core.cfg.joint_names}")
        return TransitionCallbackReturn.SUCCESS

    def _torch_device(self) -> str:
        import torch
        dev = self.p("device")
        if dev not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be cpu, cuda or auto, got {dev!r}")
        if dev == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but this machine has no CUDA GPU (use cpu or auto)")
        return ("cuda" if torch.cuda.is_available() else "cpu") if dev == "auto" else dev

    def _load_engine(self, cfg: ActConfig):
        from kairos_model.checkpoint import build_parts
        from kairos_model.engine import DEFAULT_SAMPLER_STEPS, TorchEngine, artifact_sampler_steps, load_engine
        from kairos_model.world_model import WorldModelConfig
        n_joints = len(cfg.joint_names)
        ckpt = self.p("artifact")
        if ckpt and self.p("backend") in ("onnx", "tensorrt"):
            from training.export import ensure_exported     # a plain checkpoint is exported once, then cached
            quant = ("int8", "int4-text") if self.p("quantized") else ()
            ckpt = ensure_exported(ckpt, log=self.get_logger().info, quantize=quant)
        steps = self.p("sampler_steps")
        if steps < 0:
            raise ValueError(f"sampler_steps must be >= 1, or 0 for the artifact's own; got {steps}")
        if ckpt:
            steps = steps or artifact_sampler_steps(ckpt)
            self.get_logger().info(f"sampling {steps} flow-matching step(s) per sampling tick")
            device = self._torch_device()
            loaded = load_engine(ckpt, sampler_steps=steps, cfg_scale=self.p("cfg_scale"),
                                 backend=self.p("backend"), threads=self.p("inference_threads"),
                                 quantized=self.p("quantized"), device=device,
                                 cuda_graphs=self.p("cuda_graphs") and device == "cuda")
            self.artifact_id = ckpt
            check_control_rate(loaded.meta, cfg.control_rate_hz, f"artifact {ckpt}")
            note = distilled_step_note(loaded.meta, steps, f"artifact {ckpt}")
            if note:
                self.get_logger().warning(note)
            if loaded.joint_names and sorted(loaded.joint_names) != sorted(cfg.joint_names):
                raise ValueError(f"artifact {ckpt} was trained on joints {loaded.joint_names}; the robot has "
                                 f"{cfg.joint_names}")
            if loaded.joint_names and cfg.model_joint_names != loaded.joint_names:
                cfg.model_joint_names = list(loaded.joint_names)     # the artifact knows its own order
            if not cfg.instruction and loaded.meta.get("instructions"):
                cfg.instruction = loaded.meta["instructions"][0]
            engine = loaded.engine
        else:
            if self.p("backend") not in ("torch", "auto"):
                raise ValueError(f"backend {self.p('backend')!r} needs an exported artifact (kairos export); "
                                 "without one only the torch backend can run an untrained preset")
            mcfg = WorldModelConfig.preset(self.p("preset"), action_dim=n_joints, proprio_dim=n_joints)
            parts = build_parts(mcfg)
            self.artifact_id = f"untrained:{self.p('preset')}"
            self.get_logger().warning(f"no artifact given: running an UNTRAINED '{self.p('preset')}' model "
                                      "(its commands are meaningless; limits still apply)")
            device = self._torch_device()
            engine = TorchEngine(parts["world_model"], parts["vae"], parts["understanding"],
                                 sampler_steps=steps or DEFAULT_SAMPLER_STEPS, cfg_scale=self.p("cfg_scale"),
                                 device=device, cuda_graphs=self.p("cuda_graphs") and device == "cuda")
        if engine.cfg.action_dim != n_joints:
            raise ValueError(f"model acts on {engine.cfg.action_dim} joints, the robot has {n_joints}")
        return engine

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.timer = self.create_timer(1.0 / self.core.cfg.control_rate_hz, self.on_timer)
        # Diagnostics run on the steady clock: under use_sim_time a stopped /clock stops the control
        # timer, and /diagnostics is where an operator sees why.
        self.diag_timer = self.create_timer(self.p("diagnostics_period_s"), self.publish_diagnostics,
                                            clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._clock_last_ns, self._clock_last_moved, self._clock_fault_logged = None, time.monotonic(), None
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.stop_commanding()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.core = None
        for s in self.subs:
            self.destroy_subscription(s)
        for s in self.srvs:
            self.destroy_service(s)
        for pub in (self.traj_pub, self.fwd_pub, self.chunk_pub, self.diag_pub):
            self.destroy_lifecycle_publisher(pub)
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self.core is not None and self.timer is not None:
            self.stop_commanding()
        self.worker.shutdown(wait=True)
        return TransitionCallbackReturn.SUCCESS

    def stop_commanding(self):
        """Stop the timers, wait for a running tick, publish a final hold, log the latency summary."""
        for t in (self.timer, getattr(self, "diag_timer", None)):
            if t is not None:
                self.destroy_timer(t)
        self.timer = None
        with self.busy:
            cur = self.core.current_position() if self.core else None
            if cur is not None:
                self.publish_command(np.clip(cur, self.core.cfg.lower, self.core.cfg.upper)[None])
        if self.latencies:
            lat = np.asarray(self.latencies) * 1e3
            age = np.asarray(self.frame_ages) * 1e3
            self.get_logger().info(f"stopped: {len(lat)} ticks, latency p50 {np.percentile(lat, 50):.1f} ms, "
                                   f"p99 {np.percentile(lat, 99):.1f} ms, deadline misses {self.deadline_misses}; "
                                   f"frame age at command p50 {np.percentile(age, 50):.1f} ms")

    # -- inputs --------------------------------------------------------------------------------------
    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_image(self, msg: Image):
        if self.core is None:
            return
        try:
            rgb = image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data)
            self.core.set_image(rgb, self.now_s(), header_stamp=_stamp_s(msg.header.stamp))
        except ImageError as e:
            self.core.set_image(None, self.now_s(), error=str(e))
        self._tick_on_frame()

    def on_compressed(self, msg: CompressedImage):
        if self.core is None:
            return
        try:
            rgb = decode_compressed(msg.format, msg.data)
            self.core.set_image(rgb, self.now_s(), header_stamp=_stamp_s(msg.header.stamp))
        except ImageError as e:
            self.core.set_image(None, self.now_s(), error=str(e))
        self._tick_on_frame()

    def on_joints(self, msg: JointState):
        if self.core is not None:
            self.core.set_joints(msg.name, msg.position, self.now_s(), header_stamp=_stamp_s(msg.header.stamp))
            self._tick_on_frame()

    def on_reset(self, req, resp):
        with self.busy:
            self.core.reset()
        resp.success, resp.message = True, "memory cleared"
        return resp

    def on_set_instruction(self, req, resp):
        if not req.instruction.strip():
            resp.success, resp.message = False, "instruction is empty"
            return resp
        self.core.set_instruction(req.instruction)
        resp.success, resp.message = True, f"instruction: {req.instruction}"
        return resp

    # -- control -------------------------------------------------------------------------------------
    def on_timer(self):
        if self.frame_ticks and self.now_s() - self.last_tick < 1.5 * self.core.cfg.step_duration:
            return                              # frames drive the ticks; the timer only covers their absence
        if not self.busy.acquire(blocking=False):
            self.deadline_misses += 1
            return
        self.last_tick = self.now_s()
        self.worker.submit(self._tick)

    def _tick_on_frame(self):
        """tick_on: frame: run the tick now if a new frame and its joint state are in, and the frame came
        at least 0.9 period after the one the memory took last (a faster camera does not tick faster
        than the control rate)."""
        if (not self.frame_ticks or self.timer is None or self.core is None
                or self.core.image_stamp - self.core.used_stamp < 0.9 * self.core.cfg.step_duration
                or not self.core.frame_ready(self.now_s())):
            return
        if not self.busy.acquire(blocking=False):
            return                              # a tick is running: the watchdog or the next frame takes it
        self.last_tick = self.now_s()
        self.worker.submit(self._tick)

    def _tick(self):
        try:
            t0 = time.perf_counter()
            r = self.core.tick(self.now_s())
            for why in r.new_faults:                             # a normal wait is not an error
                getattr(self.get_logger(), fault_severity(why))(f"holding: {why}")
            if r.kind in ("trajectory", "hold"):
                self.publish_command(r.positions)
            if r.kind != "trajectory":
                self.holds.append((self.get_clock().now().nanoseconds, hold_kind(r.reason)))
            chunk_msg = self.publish_chunk(r.prediction) if r.prediction is not None else None
            if r.kind == "trajectory":                           # ticks that ran the model (holds are ~free)
                self.latencies.append(time.perf_counter() - t0)  # command latency: imagination comes after
                self.frame_ages.append(self.now_s() - self.core.used_stamp)
            n = self.p("imagine_every")
            if chunk_msg is not None and n > 0 and self.chunks_published % n == 0:
                self.publish_future(r.prediction, chunk_msg)
            self.chunks_published += chunk_msg is not None
            self.latencies = self.latencies[-1000:]
            self.frame_ages = self.frame_ages[-1000:]
            self.last_result = r
        except Exception as e:  # never let the worker die silently
            self.get_logger().error(f"tick failed: {type(e).__name__}: {e}")
        finally:
            self.busy.release()

    def publish_command(self, positions: np.ndarray):
        cfg = self.core.cfg
        if self.p("output") == "float64_multi_array":
            self.fwd_pub.publish(Float64MultiArray(data=[float(x) for x in positions[0]]))
            return
        msg = JointTrajectory()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.joint_names = list(cfg.joint_names)
        for k, row in enumerate(positions):
            t = (k + 1) * cfg.step_duration
            msg.points.append(JointTrajectoryPoint(positions=[float(x) for x in row],
                                                   time_from_start=Duration(sec=int(t), nanosec=int((t % 1) * 1e9))))
        self.traj_pub.publish(msg)

    def publish_chunk(self, pred):
        cfg = self.core.cfg
        m = ActionChunk()
        m.header.stamp = self.get_clock().now().to_msg()
        m.joint_names = list(cfg.model_joint_names)
        m.horizon = int(pred.actions.shape[0])
        m.step_duration = cfg.step_duration
        m.positions = [float(x) for x in pred.actions.reshape(-1)]
        m.control_step = int(pred.step)
        m.artifact_id = self.artifact_id
        self.chunk_pub.publish(m)
        return m

    def publish_future(self, pred, chunk_msg):
        eng = self.core.engine
        if not hasattr(eng, "decode_future") or pred.future_latents is None or pred.future_latents.numel() == 0:
            return
        frames = eng.decode_future(pred.future_latents)                         # [F, H, W, 3] uint8
        m = ImaginedFuture()
        m.header.stamp = chunk_msg.header.stamp
        m.action_chunk = chunk_msg
        now = self.get_clock().now()
        dt = self.core.cfg.step_duration
        for k, f in enumerate(frames):
            img = Image(height=f.shape[0], width=f.shape[1], encoding="rgb8", step=f.shape[1] * 3, data=f.tobytes())
            t = now + RosDuration(seconds=(k + 1) * dt)
            img.header.stamp = t.to_msg()
            m.frames.append(img)
            m.stamps.append(t.to_msg())
        self.future_pub.publish(m)

    def sim_clock_fault(self) -> Optional[str]:
        """Under use_sim_time, why the node cannot tick (no /clock yet, or /clock stopped moving for
        more than 3 control periods and at least 1 s of steady time); None when the clock moves or the
        node runs on the system clock. Called by the diagnostics timer (steady clock)."""
        if not self.get_parameter("use_sim_time").value:
            return None
        now_ns, mono = self.get_clock().now().nanoseconds, time.monotonic()
        if now_ns == 0:                     # ROS time under use_sim_time before the first /clock
            return ("use_sim_time is set but no /clock has arrived: the node does not tick until a simulator "
                    "or bag player publishes /clock")
        if now_ns != self._clock_last_ns:
            self._clock_last_ns, self._clock_last_moved = now_ns, mono
            return None
        stalled = mono - self._clock_last_moved
        if stalled >= max(1.0, 3.0 * self.core.cfg.step_duration):
            return (f"/clock has not moved for {stalled:.1f} s (simulation paused, or its publisher gone): "
                    "the node does not tick")
        return None

    def publish_diagnostics(self):
        if self.core is None:
            return
        r = getattr(self, "last_result", None)
        st = DiagnosticStatus(name="kairos_act: control", hardware_id=self.artifact_id)
        holding = r is not None and r.kind != "trajectory"
        severity = fault_severity(r.reason) if holding else "ok"
        st.level = {"ok": DiagnosticStatus.OK, "error": DiagnosticStatus.ERROR}.get(severity, DiagnosticStatus.WARN)
        st.message = r.reason if holding else "commanding"
        clock_fault = self.sim_clock_fault()
        if clock_fault is not None:
            st.level, st.message = DiagnosticStatus.WARN, clock_fault
            if self._clock_fault_logged is None:                  # once per stall, not every period
                self.get_logger().warning(clock_fault)
            self._clock_fault_logged = clock_fault
        elif self._clock_fault_logged is not None:
            self.get_logger().info("/clock is moving again")
            self._clock_fault_logged = None
        lat = np.asarray(self.latencies or [0.0]) * 1e3
        now = self.now_s()
        st.values = [KeyValue(key=k, value=v) for k, v in (
            ("latency_p50_ms", f"{np.percentile(lat, 50):.2f}"), ("latency_p99_ms", f"{np.percentile(lat, 99):.2f}"),
            ("deadline_misses", str(self.deadline_misses)), ("backend", self.core.engine.backend),
            ("sampler_steps", str(getattr(self.core.engine, "sampler_steps", ""))),
            ("steps_since_reset", str(self.core.engine.steps)),
            ("memory_state_bytes", str(self.core.engine.state_bytes())),
            ("image_age_s", f"{now - self.core.image_stamp:.3f}"), ("joints_age_s", f"{now - self.core.joints_stamp:.3f}"))]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(arr)


def main(args=None):
    """ros2 run kairos_ros act_node [--executor single|events|multi] --ros-args --params-file
    config/act.yaml (configure/activate it with the lifecycle services, or use `kairos act`, which
    does both). --executor: node_util.make_executor (single, the default, is what rclpy.spin uses)."""
    import argparse
    import sys
    from rclpy.utilities import remove_ros_args
    from kairos_ros.node_util import add_executor_argument, make_executor
    argv = list(sys.argv if args is None else args)
    ap = argparse.ArgumentParser(prog="act_node")
    add_executor_argument(ap)
    opts = ap.parse_args(remove_ros_args(argv)[1:])
    rclpy.init(args=argv)
    node = ActNode()
    ex = make_executor(opts.executor)
    ex.add_node(node)
    try:
        while rclpy.ok():                # spin_once, not spin: EventsExecutor.spin() (rclpy 9.1, Kilted)
            ex.spin_once(timeout_sec=0.1)  # blocked every other Python thread here, the inference worker too
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
