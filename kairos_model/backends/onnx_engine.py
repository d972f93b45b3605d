"""onnxruntime backend of the streaming control step: the graphs `kairos export` writes, driven by a
thin sampling loop. Same interface and semantics as kairos_model.engine.TorchEngine:

    eng = OnnxEngine.from_artifact("artifacts/tiny_button_press_onnx", providers=["CPUExecutionProvider"])
    eng.reset(); pred = eng.step(Observation(image_hwc, joints, "press the button"))   # pred.actions [H, A]

The memory state lives here as named arrays (`state.<i>.*`, see training/export.py: state_spec) fed
into context_step.onnx and replaced by its `new_state.*` outputs every control step. The noise comes
from a torch.Generator seeded like the torch engine's, so both backends sample the same chunk from the
same observations (the parity test runs them side by side for 200 steps).
"""
from __future__ import annotations

import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from kairos_model import flow
from kairos_model.engine import ActionPrediction, Observation, check_observation, normalizer_from_meta
from kairos_model.understanding import hash_tokenize
from kairos_model.world_model import WorldModelConfig

GRAPHS = ("text_encoder", "frame_encoder", "context_step", "denoise_step", "vae_decoder")
_NP = {"float32": np.float32, "int64": np.int64, "bool": np.bool_, "float16": np.float16}


def _ort():
    try:
        import onnxruntime
    except ImportError as e:
        raise RuntimeError("the onnx backend needs onnxruntime (pip install onnxruntime==1.32.0, in "
                           "requirements.txt)") from e
    return onnxruntime


def available_providers() -> List[str]:
    return list(_ort().get_available_providers())


class OnnxEngine:
    """onnxruntime sessions for the five graphs of an exported artifact (CPU or CUDA provider)."""

    backend = "onnx"

    def __init__(self, path: str, manifest: dict, cfg: WorldModelConfig, meta: dict, sampler_steps: int = 4,
                 cfg_scale: float = 1.0, seed: int = 0, providers: Optional[Sequence[str]] = None,
                 threads: int = 0, quantized: bool = False, spinning: bool = False):
        self.path, self.manifest, self.cfg, self.meta = path, manifest, cfg, meta
        self.sampler_steps, self.cfg_scale, self.seed = sampler_steps, cfg_scale, seed
        self._open_sessions(providers, threads, quantized, spinning)
        self.state_spec = [(s["name"], tuple(s["shape"]), s["dtype"]) for s in manifest["state"]]
        self.proprio = normalizer_from_meta(meta, "proprio", cfg.proprio_dim, path)
        self.actions = normalizer_from_meta(meta, "actions", cfg.action_dim, path)
        frame_in = manifest["graphs"]["frame_encoder"]["inputs"][0]["shape"]
        self.image_size = (int(frame_in[2]), int(frame_in[3]))
        self.shift = flow.shape_shift_factor(cfg.video_tokens, cfg.future_frames, cfg.shift)
        self.reset()

    def _open_sessions(self, providers, threads: int, quantized: bool, spinning: bool = False) -> None:
        ort = _ort()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise RuntimeError(f"onnxruntime providers {missing} are not available here "
                               f"(available: {ort.get_available_providers()})")
        self.providers = list(providers)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        if not spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        quant = self.manifest.get("quantized", {}) if quantized else {}
        if quantized and not quant:
            raise ValueError(f"{self.path}: quantized graphs were requested but the artifact has none "
                             "(export with --quantize int8 / int4-text)")
        self.graph_files = {g: quant.get(g, {}).get("file", self.manifest["graphs"][g]["file"]) for g in GRAPHS}
        self.sessions = {g: ort.InferenceSession(os.path.join(self.path, f), so, providers=self.providers)
                         for g, f in self.graph_files.items()}
        self._check_sessions()

    @classmethod
    def from_artifact(cls, path: str, **kw) -> "OnnxEngine":
        from kairos_model.backends import read_artifact
        manifest, cfg, meta = read_artifact(path, need_graphs=True)
        return cls(path, manifest, cfg, meta, **kw)

    def _check_sessions(self) -> None:
        """Each session's inputs and outputs must be the ones the manifest promises (names, shapes)."""
        for g, sess in self.sessions.items():
            want = self.manifest["graphs"][g]
            got_in = [(i.name, list(i.shape)) for i in sess.get_inputs()]
            exp_in = [(i["name"], i["shape"]) for i in want["inputs"]]
            got_out = [o.name for o in sess.get_outputs()]
            if got_in != exp_in or got_out != [o["name"] for o in want["outputs"]]:
                raise ValueError(f"{self.path}: {self.graph_files[g]} does not have the inputs/outputs its "
                                 f"manifest lists (got {got_in[:3]}..., expected {exp_in[:3]}...); the artifact "
                                 "is inconsistent: re-export it")

    # -- the engine interface ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the episode: empty memory (ring-buffer slots -1), step 0, noise re-seeded."""
        self.state: Dict[str, np.ndarray] = {}
        for name, shape, dtype in self.state_spec:
            fill = -1 if name.endswith(".slots") else 0
            self.state[name] = np.full(shape, fill, dtype=_NP[dtype])
        self.steps = 0
        self._kp_hold = {}              # the frame encoder's held goal readings (und.keypoint_hold)
        for spec in self.manifest["graphs"]["frame_encoder"]["inputs"][1:]:
            self._kp_hold[spec["name"]] = np.zeros(spec["shape"], _NP[spec["dtype"]])
        self.generator = torch.Generator().manual_seed(self.seed)
        self._instruction = None
        self._text_tokens = None
        self._ctx, self._ctx_joints = None, None

    def state_bytes(self) -> int:
        return int(sum(a.nbytes for a in self.state.values()) + sum(a.nbytes for a in self._kp_hold.values()))

    def _run(self, graph: str, feeds: dict) -> list:
        try:
            return self.sessions[graph].run(None, feeds)
        except Exception as e:          # onnxruntime raises its own exception types
            raise RuntimeError(f"onnxruntime failed in {graph}: {e}") from e

    def step(self, obs: Observation, decode_future: bool = False, sample: bool = True,
             action_prefix: Optional[np.ndarray] = None, update_memory: bool = True) -> Optional[ActionPrediction]:
        """See TorchEngine.step: one memory update per call (unless update_memory=False), the chunk
        sampled when sample=True."""
        cfg = self.cfg
        t = {}
        t0 = time.perf_counter()
        if update_memory:
            joints = check_observation(obs, self.image_size, cfg.proprio_dim)
            self._ctx_joints = joints                       # relative actions are offsets from these
            img = np.ascontiguousarray(obs.image_hwc.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
            t["image"] = time.perf_counter()
            latent, image_tokens, *held = self._run("frame_encoder", {"image": img, **self._kp_hold})
            self._kp_hold = dict(zip(self._kp_hold, held))
            t["vae_encode"] = time.perf_counter()
            if obs.instruction != self._instruction:
                ids, _ = hash_tokenize([obs.instruction], cfg.und.vocab_buckets, cfg.und.max_words)
                self._text_tokens = self._run("text_encoder", {"ids": ids.numpy()})[0]
                self._instruction = obs.instruction
            proprio = self.proprio.normalize(joints).astype(np.float32)[None]
            feeds = {"latent": latent, "image_tokens": image_tokens, "text_tokens": self._text_tokens,
                     "proprio": proprio}
            feeds.update(self.state)
            out = self._run("context_step", feeds)
            self._ctx = (out[0], out[1])
            self.state = {name: a for (name, _, _), a in zip(self.state_spec, out[2:])}
            t["memory_update"] = time.perf_counter()
        elif self._ctx is None:
            raise ValueError("update_memory=False needs a previous step: the memory has no frame yet")
        ctx_k, ctx_v = self._ctx
        if not sample:
            self.steps += update_memory
            return None
        h, w = cfg.latent_hw
        # the same draws, in the same order, as KairosWorldModel.sample with B = P = 1
        fut = torch.randn(1, 1, cfg.future_frames, cfg.latent_channels, h, w, generator=self.generator)[:, 0]
        act = torch.randn(1, 1, cfg.action_horizon, cfg.action_dim, generator=self.generator)[:, 0]
        sigmas = flow.sigma_schedule(self.sampler_steps, self.shift)
        d = 0
        if action_prefix is not None:
            prefix = torch.from_numpy(self.actions.normalize(np.asarray(action_prefix), self._ctx_joints)).float()[None]
            d = prefix.shape[1]
            if d >= cfg.action_horizon or prefix.shape[-1] != cfg.action_dim:
                raise ValueError(f"action_prefix must be [d < {cfg.action_horizon}, {cfg.action_dim}], "
                                 f"got {tuple(np.shape(action_prefix))}")
            eps_prefix = act[:, :d].clone()
            act[:, :d] = flow.interpolate(prefix, eps_prefix, sigmas[0])
        visible, hidden = np.array([True]), np.array([False])
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            base = {"ctx_k": ctx_k, "ctx_v": ctx_v, "fut": fut.numpy(), "act": act.numpy(),
                    "sigma": s.reshape(1).numpy()}
            vf, va = (torch.from_numpy(x) for x in self._run("denoise_step", {**base, "text_visible": visible}))
            if self.cfg_scale != 1.0:
                uf, ua = (torch.from_numpy(x) for x in self._run("denoise_step", {**base, "text_visible": hidden}))
                vf, va = flow.cfg_velocity(vf, uf, self.cfg_scale), flow.cfg_velocity(va, ua, self.cfg_scale)
            fut = fut + (s_next - s) * vf
            act = act + (s_next - s) * va
            if d:
                act[:, :d] = flow.interpolate(prefix, eps_prefix, s_next)
        t["sampler"] = time.perf_counter()
        actions = self.actions.denormalize(act[0].double().numpy(), self._ctx_joints)
        t["postprocess"] = time.perf_counter()
        if decode_future:
            fut = torch.from_numpy(self._run("vae_decoder", {"latents": fut[0].numpy()})[0])   # [F, 3, H, W]
            t["future_decode"] = time.perf_counter()
        else:
            fut = fut[0]
        self.steps += update_memory
        stamps = [t0] + list(t.values())
        timings = {k: 1e3 * (b - a) for k, a, b in zip(t, stamps[:-1], stamps[1:])}
        return ActionPrediction(actions=actions, future_latents=fut, step=self.steps, timings_ms=timings)

    def decode_future(self, future_latents: torch.Tensor) -> np.ndarray:
        """future latents [F, C, h, w] -> uint8 [F, H, W, 3]."""
        x = self._run("vae_decoder", {"latents": np.ascontiguousarray(future_latents.numpy(), np.float32)})[0]
        return (np.clip(x, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
