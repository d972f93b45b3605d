"""Flow matching and the shape-aware shift, checked against their definitions."""
import math

import pytest
import torch

from kairos_model.flow import (ShiftConfig, cfg_velocity, euler_sample, flow_matching_loss, interpolate,
                               shape_shift_factor, shift_sigma, sigma_schedule)


@pytest.mark.parametrize("k", [0.3, 1.0, 2.0, 7.5, 40.0])
def test_shift_is_monotone_and_fixes_zero_and_one(k):
    s = torch.linspace(0, 1, 1001, dtype=torch.float64)
    t = shift_sigma(s, k)
    assert t[0] == 0 and abs(t[-1] - 1) < 1e-12
    assert (t[1:] > t[:-1]).all()
    if k == 1.0:
        assert torch.equal(t, s)
    if k > 1:
        assert (t[1:-1] > s[1:-1]).all()      # more time at high noise


def test_shift_factor_is_exp_f_times_sqrt_frames():
    cfg = ShiftConfig(l_min=16, l_max=4096, f_min=0.5, f_max=1.15)
    assert shape_shift_factor(16, 1, cfg) == pytest.approx(math.exp(0.5))
    assert shape_shift_factor(4096, 9, cfg) == pytest.approx(math.exp(1.15) * 3)
    assert shape_shift_factor(100, 4, ShiftConfig(enabled=False)) == 1.0
    with pytest.raises(ValueError):
        shape_shift_factor(0, 4, cfg)


def test_loss_equals_a_hand_computation():
    z0 = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    eps = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    sigma = torch.tensor([0.25, 0.5])
    zs = interpolate(z0, eps, sigma)
    assert torch.allclose(zs, torch.tensor([[0.75, -1.25], [0.75, 0.5]]))
    pred = torch.tensor([[-1.0, 3.0], [0.0, 0.0]])
    # targets eps - z0 = [[-1, 3], [0.5, 1]] -> squared errors [[0, 0], [0.25, 1]] -> mean 0.3125
    assert flow_matching_loss(pred, z0, eps).item() == pytest.approx(0.3125)
    mask = torch.tensor([[True], [False]])
    assert flow_matching_loss(pred, z0, eps, mask).item() == 0.0


def test_euler_with_the_exact_velocity_recovers_the_data():
    z0 = torch.randn(3, 5)
    eps = torch.randn(3, 5)
    # along the straight path the velocity is constant: eps - z0
    out = euler_sample(lambda z, s: eps - z0, eps, sigma_schedule(4, k=3.0))
    assert torch.allclose(out, z0, atol=1e-5)


def test_cfg_scale_one_is_the_conditional_velocity():
    a, b = torch.randn(4), torch.randn(4)
    assert torch.allclose(cfg_velocity(a, b, 1.0), a, atol=1e-6)
    assert torch.allclose(cfg_velocity(a, b, 3.0), b + 3 * (a - b))
