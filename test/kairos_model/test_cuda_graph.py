"""kairos_model/cuda_graph.py: the CUDA-graph control step agrees with the eager one (GPU only), and
its device-agnostic parts (the eager fixed part, the in-place state copy) behave on the CPU."""
import numpy as np
import pytest
import torch

from kairos_model import cuda_graph
from kairos_model.checkpoint import build_parts
from kairos_model.engine import Observation, TorchEngine, load_engine
from kairos_model.world_model import WorldModelConfig

ARTIFACT = "artifacts/tiny_button_press"


def _stream(n, size, joints, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield Observation(image_hwc=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                          joints=rng.normal(0, 0.3, joints), instruction="press the button from the top")


def test_fixed_part_is_the_engine_eager_memory_update():
    torch.manual_seed(0)
    cfg = WorldModelConfig.preset("tiny")
    parts = build_parts(cfg)
    eng = TorchEngine(parts["world_model"], parts["vae"], parts["understanding"], cuda_graphs=False)
    obs = next(_stream(1, eng.image_size[0], cfg.proprio_dim))
    state0 = eng.model.init_state(1)
    eng.step(obs, sample=False)
    img = torch.from_numpy(obs.image_hwc).permute(2, 0, 1).float().div(255).unsqueeze(0)
    proprio = torch.from_numpy(obs.joints).float().view(1, 1, -1)
    with torch.no_grad():
        ctx, state1 = cuda_graph.fixed_part(eng.model, eng.vae, eng.und, img, proprio,
                                            eng.und.encode_text([obs.instruction]), state0)
    torch.testing.assert_close(ctx.obs, eng._ctx.obs)
    for a, b in zip(state1.tensors(), eng.state.tensors()):
        torch.testing.assert_close(a, b)


def test_copy_state_writes_in_place_and_refuses_another_layout():
    wm = build_parts(WorldModelConfig.preset("tiny"))["world_model"]
    dst, src = wm.init_state(1), wm.init_state(1)
    ptrs = [t.data_ptr() for t in dst.tensors()]
    for t in src.tensors():
        t.fill_(3)
    cuda_graph.copy_state_(dst, src)
    assert [t.data_ptr() for t in dst.tensors()] == ptrs
    assert all((t == 3).all() for t in dst.tensors())
    other = build_parts(WorldModelConfig.preset("small"))["world_model"].init_state(1)
    with pytest.raises(ValueError, match="same layout"):
        cuda_graph.copy_state_(dst, other)


def test_cuda_graphs_on_a_cpu_engine_is_a_clear_error():
    parts = build_parts(WorldModelConfig.preset("tiny"))
    with pytest.raises(ValueError, match="CUDA device"):
        TorchEngine(parts["world_model"], parts["vae"], parts["understanding"], device="cpu", cuda_graphs=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("cfg_scale", [1.0, 2.0])
def test_graphed_stream_gives_the_eager_actions_on_cuda(cfg_scale):
    eager = load_engine(ARTIFACT, device="cuda", cfg_scale=cfg_scale, cuda_graphs=False).engine
    graphed = load_engine(ARTIFACT, device="cuda", cfg_scale=cfg_scale, cuda_graphs=True).engine
    obs = list(_stream(30, eager.image_size[0], eager.cfg.proprio_dim))
    diffs = []
    for episode in range(2):                 # the second episode checks that reset() empties the graph's memory
        eager.reset()
        graphed.reset()
        for i, o in enumerate(obs):
            pe = eager.step(o, sample=i % 3 == 0 or i > 20)
            pg = graphed.step(o, sample=i % 3 == 0 or i > 20)
            if pe is not None:
                diffs.append(np.abs(pe.actions - pg.actions).max())
                assert "fixed_graph" in pg.timings_ms and "memory_update" in pe.timings_ms
    assert graphed._fixed_graph is not None and graphed.cuda_graphs, "the graph path did not run"
    assert max(diffs) < 1e-4, f"graphed vs eager actions differ by up to {max(diffs):.2e}"
