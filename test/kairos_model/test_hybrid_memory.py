"""SWA, DSWA, GDN and the hybrid stack: streaming equals training form, nothing leaks from the
future, the streaming state never grows, and bad input is refused clearly."""
import random

import pytest
import torch

from kairos_model.memory.attention import FrameAttention, FrameAttentionConfig
from kairos_model.memory.gated_deltanet import GatedDeltaNet, GatedDeltaNetConfig
from kairos_model.memory.hybrid import HybridMemory, HybridMemoryConfig
from kairos_model.ops.frame_attention import (FrameMaskSpec, frame_mask, masked_attention,
                                              masked_attention_reference)

N = 3  # tokens per frame


def layer(kind: str):
    torch.manual_seed(0)
    if kind == "gdn":
        return GatedDeltaNet(GatedDeltaNetConfig(dim=32, heads=2, head_k_dim=8, head_v_dim=8, backend="torch",
                                                 chunk_size=16)).double()
    spec = {"swa": FrameMaskSpec("swa", window=3), "dswa": FrameMaskSpec("dswa", dilation=4, taps=3),
            "full": FrameMaskSpec("full")}[kind]
    return FrameAttention(FrameAttentionConfig(dim=32, heads=2, head_dim=8, mask=spec)).double()


def hybrid(pattern=("swa", "dswa6", "gdn", "swa", "dswa12", "gdn")):
    torch.manual_seed(0)
    return HybridMemory(HybridMemoryConfig(dim=32, heads=2, head_dim=8, pattern=pattern, swa_window=3,
                                           gdn_backend="torch")).double()


def init_state(m, B):
    return m.init_state(B, N) if isinstance(m, HybridMemory) else (
        None if isinstance(m, GatedDeltaNet) else m.init_state(B, N))


def stream(m, x, sizes):
    state, outs, i = init_state(m, x.shape[0]), [], 0
    if isinstance(m, GatedDeltaNet):
        state = m.init_state(x.shape[0])
    for n in sizes:
        y, state = m(x[:, i:i + n], state)
        outs.append(y)
        i += n
    return torch.cat(outs, 1), state


def random_splits(T, rng):
    sizes = []
    while sum(sizes) < T:
        sizes.append(min(rng.choice([1, 1, 2, 3, 5, 8, 13]), T - sum(sizes)))
    return sizes


@pytest.mark.parametrize("kind", ["swa", "dswa", "gdn", "full", "hybrid"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_in_arbitrary_splits_equals_the_training_form(kind, seed):
    m = hybrid() if kind == "hybrid" else layer(kind)
    T = 40
    x = torch.randn(2, T, N, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y_full, _ = m(x)
        y_stream, _ = stream(m, x, random_splits(T, random.Random(seed)))
    assert (y_stream - y_full).abs().max() < 1e-9


@pytest.mark.parametrize("kind", ["swa", "dswa", "gdn", "full", "hybrid"])
def test_no_output_depends_on_a_later_frame(kind):
    """Gradient test: d y[frame t] / d x[frame s] is exactly zero for every s > t."""
    m = hybrid() if kind == "hybrid" else layer(kind)
    T = 12
    x = torch.randn(1, T, N, 32, dtype=torch.float64, requires_grad=True)
    y, _ = m(x)
    for t in range(T - 1):
        (grad,) = torch.autograd.grad(y[:, t].sum(), x, retain_graph=True)
        assert grad[:, t + 1:].abs().max() == 0, f"frame {t} sees the future"
        assert grad[:, t].abs().max() > 0


@pytest.mark.parametrize("kind,seen", [("swa", {0, 1, 2, 3}), ("dswa", {0, 4, 8})])
def test_one_attention_layer_sees_exactly_its_frames(kind, seen):
    m = layer(kind)
    T = 14
    x = torch.randn(1, T, N, 32, dtype=torch.float64, requires_grad=True)
    y, _ = m(x)
    (grad,) = torch.autograd.grad(y[:, T - 1].sum(), x)
    back = {T - 1 - s for s in range(T) if grad[:, s].abs().max() > 0}
    assert back == seen


def test_masks_never_admit_a_future_frame_nor_an_empty_slot():
    frames = torch.arange(-1, 30)
    for spec in (FrameMaskSpec("swa", window=5), FrameMaskSpec("dswa", dilation=6, taps=4),
                 FrameMaskSpec("dswa", dilation=12, taps=2), FrameMaskSpec("full")):
        m = frame_mask(frames, frames, spec)
        fq, fk = frames.unsqueeze(-1).expand_as(m), frames.unsqueeze(0).expand_as(m)
        assert not (m & (fk > fq)).any()
        assert not m[:, 0].any()                    # slot with frame -1
        assert m[1:, 1:].diagonal().all()           # every frame sees itself
    dswa = frame_mask(torch.tensor([24]), torch.arange(25), FrameMaskSpec("dswa", dilation=6, taps=4))
    assert dswa.nonzero()[:, 1].tolist() == [6, 12, 18, 24]


def test_sdpa_attention_equals_the_written_out_reference():
    q, k, v = (torch.randn(2, 9, 3, 8, dtype=torch.float64) for _ in range(3))
    mask = frame_mask(torch.arange(9) // 3, torch.arange(9) // 3, FrameMaskSpec("swa", window=1))
    assert (masked_attention(q, k, v, mask) - masked_attention_reference(q, k, v, mask)).abs().max() < 1e-12


def test_streaming_state_of_the_hybrid_stack_never_grows():
    m = hybrid().float()
    state = m.init_state(1, N)
    sizes = []
    with torch.no_grad():
        for t in range(120):
            _, state = m(torch.randn(1, 1, N, 32), state)
            sizes.append((state.nbytes(), [tuple(s.k.shape) if hasattr(s, "k") else tuple(s.shape)
                                           for s in state.layers]))
    assert all(s == sizes[0] for s in sizes)
    full = hybrid(("full", "gdn")).float()
    st = full.init_state(1, N)
    with torch.no_grad():
        _, st = full(torch.randn(1, 5, N, 32), st)
        n5 = st.nbytes()
        _, st = full(torch.randn(1, 5, N, 32), st)
    assert st.nbytes() > n5                          # the baseline's cache grows, as it should


def test_bad_input_is_refused_with_the_expected_shape():
    m = hybrid()
    x = torch.randn(2, 4, N, 32, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\[B, T, N, C\] with C = 32"):
        m(x[0])
    with pytest.raises(ValueError, match=r"\[B, T, N, C\] with C = 32"):
        m(x[..., :16])
    other = hybrid(("swa", "gdn"))
    with pytest.raises(ValueError, match="state holds 2 layers but this stack has 6"):
        m(x, other.init_state(2, N))
    wrong_n = m.init_state(2, N + 1)
    with pytest.raises(ValueError, match="another tokens-per-frame"):
        m(x, wrong_n)
    wrong_b = m.init_state(3, N)
    with pytest.raises(ValueError, match=r"expected \[B, S\*N, H, D\]"):
        m(x, wrong_b)
    swapped = m.init_state(2, N)
    swapped.layers[0], swapped.layers[2] = swapped.layers[2], swapped.layers[0]
    with pytest.raises(TypeError, match="expects a KVCacheState"):
        m(x, swapped)
    gdn = layer("gdn")
    with pytest.raises(ValueError, match=r"GDN state must be \[B, H, K, V\]"):
        gdn(x, torch.zeros(2, 3, 8, 8, dtype=torch.float64))


def test_configs_reject_unknown_names():
    with pytest.raises(ValueError, match="unknown layer kind 'lstm'"):
        HybridMemoryConfig(pattern=("swa", "lstm"))
    with pytest.raises(ValueError, match="unknown preset"):
        HybridMemoryConfig.preset("huge")
    with pytest.raises(ValueError, match=r"unknown HybridMemoryConfig keys \['widht'\]"):
        HybridMemoryConfig.from_dict({"widht": 3})
    assert HybridMemoryConfig.from_dict({"dim": 48, "pattern": ["gdn"]}).pattern == ("gdn",)
