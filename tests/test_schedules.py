from __future__ import annotations

import math

import pytest

from alpha_gate.schedules import PHI_MINUS_2, LinearSchedule, SigmoidSchedule, schedule_from_dict

GRID = [i / 200 for i in range(201)]


def test_phi_minus_2_is_the_normal_cdf_at_minus_2():
    from scipy.stats import norm

    assert PHI_MINUS_2 == pytest.approx(norm.cdf(-2.0), abs=1e-15)
    assert PHI_MINUS_2 == pytest.approx(0.02275, abs=1e-5)


@pytest.mark.parametrize("start", [0.0, 0.25, 1.0])
def test_linear_endpoints_and_shape(start):
    s = LinearSchedule(start)
    assert s(0.0) == start and s(1.0) == 1.0
    assert s(0.5) == pytest.approx(start + (1 - start) / 2)


@pytest.mark.parametrize("base", [PHI_MINUS_2, 0.0, 0.5])
@pytest.mark.parametrize("k,midpoint", [(0.1, 0.5), (1.0, 0.2), (10.0, 0.5), (30.0, 0.9), (500.0, 0.3)])
def test_sigmoid_endpoints_exact_monotone_and_bounded(k, midpoint, base):
    s = SigmoidSchedule(k, midpoint, base)
    assert s(0.0) == base
    assert s(1.0) == 1.0
    values = [s(p) for p in GRID]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    assert values[-1] - values[0] == pytest.approx(1.0 - base)


def test_sigmoid_matches_the_formula_and_is_centred():
    k, m, base = 7.0, 0.35, PHI_MINUS_2
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    lo, hi = sig(-k * m), sig(k * (1 - m))
    for p in (0.1, 0.35, 0.8):
        expected = base + (1 - base) * (sig(k * (p - m)) - lo) / (hi - lo)
        assert SigmoidSchedule(k, m, base)(p) == pytest.approx(expected, rel=1e-12)
    # symmetric case: midpoint 0.5 sits exactly half-way between base and 1
    assert SigmoidSchedule(12.0, 0.5, 0.0)(0.5) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(k=0.0, midpoint=0.5), "k"), (dict(k=-1.0, midpoint=0.5), "k"), (dict(k=math.nan, midpoint=0.5), "k"),
    (dict(k=5.0, midpoint=0.0), "midpoint"), (dict(k=5.0, midpoint=1.0), "midpoint"),
    (dict(k=5.0, midpoint=-0.2), "midpoint"),
    (dict(k=5.0, midpoint=0.5, base=1.0), "base"), (dict(k=5.0, midpoint=0.5, base=-0.01), "base"),
])
def test_sigmoid_invalid_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SigmoidSchedule(**kwargs)


@pytest.mark.parametrize("start", [-0.1, 1.1, math.inf])
def test_linear_invalid_start(start):
    with pytest.raises(ValueError, match="start"):
        LinearSchedule(start)


@pytest.mark.parametrize("p", [-0.01, 1.01, math.nan])
def test_progress_outside_unit_interval_is_an_error(p):
    for s in (LinearSchedule(), SigmoidSchedule(5.0, 0.5)):
        with pytest.raises(ValueError, match="progress"):
            s(p)


def test_round_trip_through_dict():
    for s in (LinearSchedule(0.1), SigmoidSchedule(3.0, 0.4, 0.0), SigmoidSchedule(9.5, 0.6)):
        assert schedule_from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="Unknown schedule kind"):
        schedule_from_dict({"kind": "cosine"})


def test_a_sampled_schedule_covers_both_ends_and_refuses_a_single_point():
    from alpha_gate.schedules import LinearSchedule, sampled

    rows = sampled(LinearSchedule(0.0), 3)
    assert [r["progress"] for r in rows] == [0.0, 0.5, 1.0]  # both ends, evenly spaced (not 0, 1/3, 2/3)
    assert rows[-1]["blend_alpha"] == LinearSchedule(0.0)(1.0)
    with pytest.raises(ValueError, match="points must be >= 2"):
        sampled(LinearSchedule(0.0), 1)  # one point would divide by zero
