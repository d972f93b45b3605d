"""The robot-facing runtime: `reset()`, `step(observation) -> ActionPrediction`. Knows nothing of ROS
and nothing of training.

One control step:
1. the camera frame is encoded alone by the VAE (its first-frame path): one latent per control
   step, so the memory advances once per camera frame;
2. the understanding tokens (instruction + frame) and the normalised joint state join it, and the
   world model's context pass updates the streaming memory (once);
3. `sampler_steps` Euler steps sample the action chunk and the future latents together, reusing
   that context;
4. actions are de-normalised into the model's joint order; future latents are decoded on request.

Timings of each stage are returned with the prediction (the act node reports them; bench/ reads them).

On CUDA, steps 1-2 run as one CUDA graph and every sampler step's network as another
(kairos_model/cuda_graph.py): at batch 1 they are launch-bound, and the graphs replay the same
kernels without the host. Their timings then come as one stage, `fixed_graph`, instead of
`vae_encode` + `memory_update`. `cuda_graphs=False` keeps the eager path (the reference).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from kairos_model import cuda_graph
from kairos_model.memory.hybrid import HybridState
from kairos_model.understanding import UnderstandingEncoder
from kairos_model.vae import VideoVAE
from kairos_model.world_model import KairosWorldModel

log = logging.getLogger(__name__)


@dataclass
class Normalizer:
    """Affine normalisation of joint vectors: model value = (x - mean) / std. Identity by default;
    training stores the dataset's statistics with the checkpoint. relative: the model's values are
    offsets from the joint state its frame was taken at (x - joints - mean) / std, so normalize and
    denormalize need those joints [J]."""
    mean: Sequence[float]
    std: Sequence[float]
    relative: bool = False

    @classmethod
    def identity(cls, dim: int) -> "Normalizer":
        return cls([0.0] * dim, [1.0] * dim)

    def __post_init__(self):
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ValueError("normalizer needs mean and std of the same length, std > 0")

    def _base(self, joints) -> np.ndarray:
        if not self.relative:
            return np.zeros(len(self.mean))
        if joints is None:
            raise ValueError("relative actions are offsets from the joint state: pass the joints")
        return np.asarray(joints, np.float64)

    def normalize(self, x: np.ndarray, joints: Optional[np.ndarray] = None) -> np.ndarray:
        """x [..., J] in robot units -> model values (relative: offsets from `joints`)."""
        return (np.asarray(x, np.float64) - self._base(joints) - np.asarray(self.mean)) / np.asarray(self.std)

    def denormalize(self, x: np.ndarray, joints: Optional[np.ndarray] = None) -> np.ndarray:
        """model values [..., J] -> robot units (relative: added to `joints`)."""
        return np.asarray(x, np.float64) * np.asarray(self.std) + np.asarray(self.mean) + self._base(joints)


@dataclass
class Observation:
    """image_hwc: uint8 [H, W, 3] RGB at the model's resolution. joints: [J] positions in the model's
    joint order. instruction: the task text."""
    image_hwc: np.ndarray
    joints: np.ndarray
    instruction: str


@dataclass
class ActionPrediction:
    """actions: [H, A] target joint positions (model joint order, robot units). future_latents:
    [F, C, h, w]. step: control steps since reset. timings_ms: per stage."""
    actions: np.ndarray
    future_latents: torch.Tensor
    step: int
    timings_ms: Dict[str, float] = field(default_factory=dict)


def check_observation(obs: Observation, image_size, proprio_dim: int) -> np.ndarray:
    """Validate an observation for any backend; returns the joints as float64 [J]."""
    img = obs.image_hwc
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.shape != (*image_size, 3):
        got = (getattr(img, "shape", None), getattr(img, "dtype", type(img).__name__))
        raise ValueError(f"image must be uint8 [{image_size[0]}, {image_size[1]}, 3], got {got}")
    j = np.asarray(obs.joints, dtype=np.float64)
    if j.shape != (proprio_dim,):
        raise ValueError(f"joints must be [{proprio_dim}], got {j.shape}")
    if not np.isfinite(j).all():
        raise ValueError(f"joints contain non-finite values: {j.tolist()}")
    return j


def normalizer_from_meta(meta: dict, key: str, dim: int, where: str = "checkpoint") -> Normalizer:
    """The `proprio` or `actions` normalisation a checkpoint stores (identity when absent)."""
    d = meta.get(key)
    if d is None:
        return Normalizer.identity(dim)
    if len(d["mean"]) != dim:
        raise ValueError(f"{where}: {key} normalisation has {len(d['mean'])} entries, the model {dim}")
    return Normalizer(d["mean"], d["std"], relative=d.get("relative_to") == "joint state")


class TorchEngine:
    """Eager PyTorch backend of the streaming control step."""

    backend = "torch"

    def __init__(self, model: KairosWorldModel, vae: VideoVAE, und: UnderstandingEncoder,
                 sampler_steps: int = 4, cfg_scale: float = 1.0, proprio: Optional[Normalizer] = None,
                 actions: Optional[Normalizer] = None, seed: int = 0, device: str = "cpu",
                 latent_scale: float = 1.0, cuda_graphs: Optional[bool] = None):
        """cuda_graphs: None = on CUDA yes, elsewhere no; True on a device without CUDA is an error.
        With und.cfg.keypoint_hold the engine carries the held goal readings as streaming state; the
        CUDA graph of the fixed part does not hold them yet, so graphs are then off (True is an error)."""
        if cuda_graphs and not cuda_graph.graphs_supported(device):
            raise ValueError(f"cuda_graphs=True needs a CUDA device, got {device!r}")
        self.keypoint_hold = bool(und.cfg.keypoint_hold)
        if self.keypoint_hold and und.image.keypoints is None:
            raise ValueError("keypoint_hold needs a keypoint net in the understanding encoder (und.keypoint_tasks)")
        if cuda_graphs and self.keypoint_hold:
            raise ValueError("cuda_graphs=True with keypoint_hold: the graphed fixed part does not carry the hold")
        self.cuda_graphs = (cuda_graph.graphs_supported(device) and not self.keypoint_hold if cuda_graphs is None
                            else bool(cuda_graphs))
        self._fixed_graph, self._velocity_graph = None, None
        self._sync_stamps = cuda_graph.graphs_supported(device)
        self.model, self.vae, self.und = model.eval().to(device), vae.eval().to(device), und.eval().to(device)
        self.cfg = model.cfg
        self.sampler_steps, self.cfg_scale, self.device = sampler_steps, cfg_scale, device
        self.proprio = proprio or Normalizer.identity(self.cfg.proprio_dim)
        self.actions = actions or Normalizer.identity(self.cfg.action_dim)
        self.seed = seed
        self.latent_scale = float(latent_scale)
        s = vae.cfg.spatial_down
        self.image_size = (self.cfg.latent_hw[0] * s, self.cfg.latent_hw[1] * s)
        self.reset()

    def reset(self) -> None:
        """Forget the episode: empty memory, step counter 0, noise generator re-seeded."""
        fresh = self.model.init_state(1, device=self.device)
        if self._fixed_graph is not None:       # the graph owns the state's addresses: empty it in place
            cuda_graph.copy_state_(self._fixed_graph.state, fresh)
        else:
            self.state: HybridState = fresh
        self.steps = 0
        self._kp_hold = self.und.image.init_hold(1, self.device) if self.keypoint_hold else None
        self.generator = torch.Generator().manual_seed(self.seed)
        self._instruction = None
        self._text_tokens = None
        self._ctx, self._ctx_joints = None, None

    def state_bytes(self) -> int:
        held = sum(t.numel() * t.element_size() for t in self._kp_hold) if self._kp_hold is not None else 0
        return self.state.nbytes() + held

    def _check(self, obs: Observation):
        return check_observation(obs, self.image_size, self.cfg.proprio_dim)

    @torch.no_grad()
    def step(self, obs: Observation, decode_future: bool = False, sample: bool = True,
             action_prefix: Optional[np.ndarray] = None, update_memory: bool = True) -> Optional[ActionPrediction]:
        """One control step: the memory takes the frame; with sample=True the action chunk (and the
        future latents) are sampled from it. sample=False only advances the memory (ticks where the
        execution strategy still has commands): the memory sees every camera frame, as in training.
        action_prefix [d, A] (model joint order, robot units): the chunk's first d steps are fixed
        to these (real-time chunking) and the rest is sampled consistent with them.
        update_memory=False: the frame is the one the memory already took (a control tick without a
        new camera frame); the chunk is sampled from that step's context, the memory is unchanged."""
        t = {}
        t0 = self._clock()
        if update_memory:
            joints = self._check(obs)
            self._ctx_joints = joints                       # relative actions are offsets from these
            img = torch.from_numpy(obs.image_hwc).to(self.device).permute(2, 0, 1).float().div_(255).unsqueeze(0)
            proprio = torch.from_numpy(self.proprio.normalize(joints)).float().to(self.device).view(1, 1, -1)
            if obs.instruction != self._instruction:        # the text part only changes with the task
                self._text_tokens = self.und.encode_text([obs.instruction])
                self._instruction = obs.instruction
            t["image"] = self._clock()
            graph = self._graphed_fixed_part(img, proprio) if self.cuda_graphs else None
            if graph is not None:
                self._ctx = graph(img, proprio, self._text_tokens)
                t["fixed_graph"] = self._clock()
            else:
                z, _ = self.vae.encode(img.unsqueeze(1))                                  # [1, 1, C, h, w]
                z = z * self.latent_scale
                t["vae_encode"] = self._clock()
                if self._kp_hold is not None:
                    tokens, *self._kp_hold = self.und.encode_image_held(img, *self._kp_hold)
                else:
                    tokens = self.und.encode_image(img)
                und = self.und.combine(self._text_tokens, tokens).unsqueeze(1)
                self._ctx, self.state = self.model.encode_context(z, proprio, und, self.state)
                t["memory_update"] = self._clock()
        elif self._ctx is None:
            raise ValueError("update_memory=False needs a previous step: the memory has no frame yet")
        ctx = self._ctx
        if not sample:
            self.steps += update_memory
            return None
        prefix = None
        if action_prefix is not None:
            prefix = torch.from_numpy(self.actions.normalize(np.asarray(action_prefix), self._ctx_joints)).float()
            prefix = prefix.to(self.device).view(1, 1, *prefix.shape)
        velocity_fn = None
        if self._fixed_graph is not None and ctx is self._fixed_graph.ctx:
            if self._velocity_graph is None:
                self._velocity_graph = cuda_graph.GraphedVelocity(self.model, ctx)
            velocity_fn = self._velocity_graph
        fut, act = self.model.sample(ctx, torch.tensor([0]), steps=self.sampler_steps, cfg_scale=self.cfg_scale,
                                     generator=self.generator, action_prefix=prefix, velocity_fn=velocity_fn)
        t["sampler"] = self._clock()
        actions = self.actions.denormalize(act[0, 0].double().cpu().numpy(), self._ctx_joints)
        t["postprocess"] = self._clock()
        if decode_future:
            fut = self.vae.decode(fut[0, 0].unsqueeze(1) / self.latent_scale).squeeze(1)   # F single frames
            t["future_decode"] = self._clock()
        else:
            fut = fut[0, 0]
        self.steps += update_memory
        stamps = [t0] + list(t.values())
        timings = {k: 1e3 * (b - a) for k, a, b in zip(t, stamps[:-1], stamps[1:])}
        return ActionPrediction(actions=actions, future_latents=fut, step=self.steps, timings_ms=timings)

    def _clock(self) -> float:
        """Stage timestamps: on CUDA after the queued kernels finish, so each stage's time is its own
        (kernels run asynchronously; unsynchronised stamps would bill one stage's GPU work to the next)."""
        if self._sync_stamps:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _graphed_fixed_part(self, img, proprio):
        """The fixed part's CUDA graph, captured on the first frame; None (eager from then on, logged)
        when capture fails."""
        if self._fixed_graph is None:
            try:
                self._fixed_graph = cuda_graph.GraphedFixedPart(self.model, self.vae, self.und, img, proprio,
                                                                self._text_tokens, self.state, self.latent_scale)
            except Exception as e:      # noqa: BLE001 (the eager path computes the same; say why once)
                log.warning("CUDA graph capture of the control step failed (%s: %s); running eagerly",
                            type(e).__name__, e)
                self.cuda_graphs = False
                return None
        return self._fixed_graph

    @torch.no_grad()
    def decode_future(self, future_latents: torch.Tensor) -> np.ndarray:
        """Imagined frames: future latents [F, C, h, w] (as in ActionPrediction) -> uint8 [F, H, W, 3],
        each latent decoded alone (one latent per control step)."""
        x = self.vae.decode(future_latents.unsqueeze(1).to(self.device) / self.latent_scale)[:, 0]   # [F, 3, H, W]
        return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class LoadedModel:
    """An engine built from a checkpoint directory, with what the checkpoint says about itself."""
    engine: TorchEngine
    joint_names: list
    meta: dict


BACKENDS = ("torch", "onnx", "tensorrt")


DEFAULT_SAMPLER_STEPS = 4


def artifact_sampler_steps(path: str, default: int = DEFAULT_SAMPLER_STEPS) -> int:
    """The sampler step count an artifact (checkpoint or export) was made for: a distilled student
    records its own (meta.sampler_steps, written by `kairos distill`); anything else samples at
    `default`. What a `sampler_steps` of 0 (the act node's default) resolves to."""
    import json
    import os
    cfg = os.path.join(path, "config.json")
    if not os.path.isfile(cfg):
        return default
    with open(cfg) as f:
        steps = (json.load(f).get("meta") or {}).get("sampler_steps")
    return int(steps) if steps else default


def load_engine(path: str, sampler_steps: int = 4, cfg_scale: float = 1.0, device: str = "cpu",
                backend: str = "torch", threads: int = 0, quantized: bool = False,
                providers=None, cuda_graphs: Optional[bool] = None,
                keypoint_hold: Optional[bool] = None) -> LoadedModel:
    """Build an engine from a checkpoint or exported artifact directory.

    backend: 'torch' (eager, from the safetensors), 'onnx' (onnxruntime on the exported graphs; CUDA
    provider when present unless `providers` says otherwise), 'tensorrt' (engines built from the graphs
    on this GPU, cached), or 'auto' (the artifact's default_backend if it can run here, else torch).
    Every backend verifies the artifact's manifest (sha256 of every file) before loading anything.
    cuda_graphs (torch backend): see TorchEngine; None = on when the device is CUDA.
    keypoint_hold (torch backend): override the artifact's und.keypoint_hold (None: as it says); an
    exported artifact holds the goals when it was exported with it on."""
    if backend == "auto":
        from kairos_model.backends import pick_backend
        backend = pick_backend(path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS} or 'auto'")
    if backend == "torch":
        loaded = _load_torch(path, sampler_steps, cfg_scale, device, cuda_graphs, keypoint_hold)
        if threads > 0:
            torch.set_num_threads(threads)
        return loaded
    from kairos_model.backends import read_artifact
    manifest, cfg, meta = read_artifact(path, need_graphs=True)
    if keypoint_hold is not None and keypoint_hold != cfg.und.keypoint_hold:
        raise ValueError(f"{path} was exported with keypoint_hold={cfg.und.keypoint_hold}; its graphs cannot "
                         "change that: export again (kairos export) or use the torch backend")
    if backend == "onnx":
        from kairos_model.backends.onnx_engine import OnnxEngine
        eng = OnnxEngine(path, manifest, cfg, meta, sampler_steps=sampler_steps, cfg_scale=cfg_scale,
                         providers=providers, threads=threads, quantized=quantized)
    else:
        from kairos_model.backends.tensorrt_engine import TensorRTEngine
        eng = TensorRTEngine(path, manifest, cfg, meta, sampler_steps=sampler_steps, cfg_scale=cfg_scale)
    return LoadedModel(eng, _joint_names(path, meta, cfg), meta)


def _joint_names(path, meta, cfg) -> list:
    names = list(meta.get("joint_names") or [])
    if names and len(names) != cfg.action_dim:
        raise ValueError(f"{path}: {len(names)} joint names for a model acting on {cfg.action_dim} joints")
    return names


def _load_torch(path: str, sampler_steps: int = 4, cfg_scale: float = 1.0, device: str = "cpu",
                cuda_graphs: Optional[bool] = None, keypoint_hold: Optional[bool] = None) -> LoadedModel:
    """Build the torch engine from a checkpoint written by `kairos train` (kairos_model.checkpoint):
    weights, joint normalisation, latent scale and the model's joint names."""
    import json
    import os
    from kairos_model.checkpoint import load_checkpoint
    cfg, parts = load_checkpoint(path)
    with open(os.path.join(path, "config.json")) as f:
        meta = json.load(f).get("meta", {})
    if keypoint_hold is not None:
        parts["understanding"].cfg.keypoint_hold = bool(keypoint_hold)

    eng = TorchEngine(parts["world_model"], parts["vae"], parts["understanding"], sampler_steps=sampler_steps,
                      cfg_scale=cfg_scale, proprio=normalizer_from_meta(meta, "proprio", cfg.proprio_dim, path),
                      actions=normalizer_from_meta(meta, "actions", cfg.action_dim, path),
                      latent_scale=meta.get("latent_scale", 1.0),
                      device=device, cuda_graphs=cuda_graphs)
    return LoadedModel(eng, _joint_names(path, meta, cfg), meta)
