from __future__ import annotations

import pytest
import torch

from alpha_gate.pet import PETSchedule, pet_penalty


def _sequence(fn, batch=2, seq=10, hidden=6):
    t = torch.arange(seq, dtype=torch.float32).view(1, seq, 1)
    direction = torch.linspace(-1, 1, hidden).view(1, 1, hidden)
    offset = torch.randn(batch, 1, hidden)
    return offset + fn(t) * direction


def test_zero_on_a_linear_sequence():
    h = _sequence(lambda t: 3.0 * t - 2.0)
    assert pet_penalty(h, torch.ones(2, 10)).item() == pytest.approx(0.0, abs=1e-8)


def test_positive_and_exact_on_a_curved_sequence():
    h = _sequence(lambda t: t**2)  # second difference of t^2 is 2 everywhere
    direction = torch.linspace(-1, 1, 6)
    expected = (2.0 * direction).pow(2).sum().item()
    assert pet_penalty(h).item() == pytest.approx(expected, rel=1e-5)
    assert pet_penalty(h) > 0


def test_padding_is_masked_out_on_either_side():
    h = _sequence(lambda t: t**2, batch=1, seq=8)
    reference = pet_penalty(h)
    padded = torch.cat([torch.randn(1, 3, 6) * 100, h, torch.randn(1, 2, 6) * 100], dim=1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 8), torch.zeros(1, 2)], dim=1)
    assert pet_penalty(padded, mask).item() == pytest.approx(reference.item(), rel=1e-5)
    assert pet_penalty(padded).item() > 10 * reference.item()  # unmasked, the garbage counts


def test_gradient_and_degenerate_inputs():
    h = _sequence(lambda t: torch.sin(t)).requires_grad_()
    pet_penalty(h, torch.ones(2, 10)).backward()
    assert h.grad.abs().sum() > 0
    assert pet_penalty(torch.randn(2, 10, 4), torch.zeros(2, 10)).item() == 0.0
    assert pet_penalty(torch.randn(2, 2, 4)).item() == 0.0
    with pytest.raises(ValueError, match="batch, seq, hidden"):
        pet_penalty(torch.randn(10, 4))
    with pytest.raises(ValueError, match="attention_mask"):
        pet_penalty(torch.randn(2, 10, 4), torch.ones(2, 9))


def test_default_phase_schedule():
    s = PETSchedule()
    assert [s(p) for p in (0.0, 0.19, 0.2, 0.59, 0.6, 0.99, 1.0)] == [0.01, 0.01, 0.05, 0.05, 0.1, 0.1, 0.1]
    assert s.enabled and not PETSchedule.off().enabled and PETSchedule.off()(0.5) == 0.0


@pytest.mark.parametrize("phases", [(), ((0.5, 0.1),), ((0.6, 0.1), (0.4, 0.1), (1.0, 0.1)), ((1.0, -0.1),)])
def test_invalid_phase_schedule(phases):
    with pytest.raises(ValueError, match="PET"):
        PETSchedule(phases)
