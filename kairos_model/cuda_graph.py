"""CUDA graphs for the streaming control step: the launch-bound parts captured once, replayed per frame.

Why: at batch 1 a control step is thousands of small kernels. On a GPU the fixed part of a step (VAE
encode, understanding image tokens, the memory update through every layer) costs more in Python
dispatch and kernel launches than in arithmetic: ~3.5 ms per layer in eager mode at every preset from
tiny to kairos_4b (bench/gpu_check.py, section big_step_scaling). A CUDA graph replays the recorded
kernels without the host, so what is left is the GPU's own time.

What is captured, and its eager reference beside it:
- ``fixed_part``: the eager fixed part (what TorchEngine runs on the CPU). ``GraphedFixedPart``
  records it once, with the streaming state's tensors as static buffers that the graph reads and
  then overwrites in place with the new state, so the memory carries across replays as in eager mode.
- ``GraphedVelocity``: one call of ``KairosWorldModel.velocity`` (one sampler step's network) for a
  fixed context, replayed at every sampler step; ``KairosWorldModel.sample(velocity_fn=...)`` runs the
  same Euler loop around it.

test/kairos_model/test_cuda_graph.py checks on a GPU that a graphed stream gives the eager stream's
actions. Capture needs static shapes and no host synchronisation inside; both hold for streaming at
batch 1. A capture that fails anyway raises, and TorchEngine then runs eagerly (logged once).
"""
from __future__ import annotations

from typing import Callable

import torch

from kairos_model.memory.hybrid import HybridState


def copy_state_(dst: HybridState, src: HybridState) -> None:
    """dst <- src, tensor by tensor, in place (the addresses of dst stay what a graph recorded)."""
    a, b = dst.tensors(), src.tensors()
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        raise ValueError("the two streaming states do not have the same layout")
    for x, y in zip(a, b):
        if x.data_ptr() != y.data_ptr():
            x.copy_(y)


def fixed_part(model, vae, und, img: torch.Tensor, proprio: torch.Tensor, text: torch.Tensor,
               state: HybridState, latent_scale: float = 1.0):
    """The fixed part of a control step, eager: img [1, 3, H, W] in [0, 1], proprio [1, 1, J]
    (normalised), text [1, M_text, C] (the instruction's tokens) -> (Context, new HybridState)."""
    z, _ = vae.encode(img.unsqueeze(1))                                           # [1, 1, C, h, w]
    z = z * latent_scale
    u = und.combine(text, und.encode_image(img)).unsqueeze(1)                    # [1, 1, M, C]
    return model.encode_context(z, proprio, u, state)


def _warm_and_capture(fn: Callable[[], object], warmup: int):
    """Run fn `warmup` times on a side stream (allocator and Triton autotuning settle), then record
    one call into a CUDA graph. Returns (graph, what the recorded call returned)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


class GraphedFixedPart:
    """``fixed_part`` as a CUDA graph. `state` is the live streaming state: its tensors are the graph's
    static state, updated in place by every replay (warm-up runs are undone, so capturing does not
    advance the memory). The returned Context lives in the graph's memory: valid until the next call.
    """

    def __init__(self, model, vae, und, img, proprio, text, state: HybridState, latent_scale: float = 1.0,
                 warmup: int = 2):
        if not img.is_cuda:
            raise ValueError("CUDA graphs need CUDA tensors")
        self.inputs = [img.clone(), proprio.clone(), text.clone()]
        self.state = state
        snapshot = [t.clone() for t in state.tensors()]

        def run():
            ctx, new = fixed_part(model, vae, und, *self.inputs, self.state, latent_scale)
            copy_state_(self.state, new)
            return ctx

        try:
            self.graph, self.ctx = _warm_and_capture(run, warmup)
        finally:                                   # the warm-up runs advanced the memory: undo them
            for t, s in zip(state.tensors(), snapshot):
                t.copy_(s)

    def __call__(self, img: torch.Tensor, proprio: torch.Tensor, text: torch.Tensor):
        for dst, src in zip(self.inputs, (img, proprio, text)):
            if dst.shape != src.shape:
                raise ValueError(f"graph input of shape {tuple(src.shape)}; it was captured for {tuple(dst.shape)}")
            dst.copy_(src)
        self.graph.replay()
        return self.ctx


class GraphedVelocity:
    """``model.velocity(ctx, anchors, fut, act, sigma, hide_text)`` as CUDA graphs for one fixed context
    (e.g. the one GraphedFixedPart returns, whose tensors keep their addresses): one graph per
    with/without-instruction variant, captured on first use. A drop-in `velocity_fn` for sample()."""

    def __init__(self, model, ctx, warmup: int = 2):
        self.model, self.ctx, self.warmup = model, ctx, warmup
        self.graphs = {}

    def _capture(self, key, anchors, fut, act, sigma, hide_text):
        ins = [anchors.to(fut.device), fut.clone(), None if act is None else act.clone(), sigma.clone(),
               None if hide_text is None else hide_text.clone()]

        def run():
            return self.model.velocity(self.ctx, *ins)

        graph, out = _warm_and_capture(run, self.warmup)
        self.graphs[key] = (graph, ins, out)

    def __call__(self, ctx, anchors, fut, act, sigma, hide_text=None):
        if ctx is not self.ctx:
            raise ValueError("GraphedVelocity was captured for another context")
        key = (act is None, hide_text is None, tuple(fut.shape), anchors.shape[0])
        if key not in self.graphs:
            self._capture(key, anchors, fut, act, sigma, hide_text)
        graph, ins, out = self.graphs[key]
        for dst, src in zip(ins, (anchors, fut, act, sigma, hide_text)):
            if dst is not None:
                dst.copy_(src)       # anchors may come from the CPU: copied, never indexed across devices
        graph.replay()
        return out


def graphs_supported(device) -> bool:
    return str(device).startswith("cuda") and torch.cuda.is_available()

