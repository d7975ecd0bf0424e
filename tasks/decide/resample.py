"""The paired bootstrap of the decision: percentile CIs of each suite's mean(A) - mean(B) and of the composite
difference, resampled by scipy.stats.bootstrap.

Pairing: an item's two scores are resampled together, which for a difference of means is the same as resampling the
items' differences A - B (what is passed to scipy; its ``paired=True`` would resample indices of equal-length
samples, and the suites differ in length). Suites are resampled independently of each other (several samples,
``paired=False``). The composite is linear in the suite means, so composite(A) - composite(B) is the composite of the
suites' mean differences, computed over the whole bootstrap distribution at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# resampled values held at once (items x resamples of one batch): bounds memory on 14k-item suites
_BATCH_VALUES = 4_000_000


def suite_distributions(diffs: dict[str, np.ndarray], n_resamples: int, rng: np.random.Generator
                        ) -> dict[str, np.ndarray]:
    """suite -> ``n_resamples`` bootstrap means of its paired differences. A one-item suite (scipy refuses samples
    of fewer than two) has that item's difference in every resample, which is what resampling it would give."""
    from scipy.stats import bootstrap

    out = {s: np.full(n_resamples, float(d[0])) for s, d in diffs.items() if len(d) == 1}
    varied = [s for s, d in diffs.items() if len(d) > 1]
    if varied:
        def means(*samples, axis=-1):
            return np.stack([x.mean(axis=axis) for x in samples])

        longest = max(len(diffs[s]) for s in varied)
        res = bootstrap(tuple(np.asarray(diffs[s], dtype=float) for s in varied), means, n_resamples=n_resamples,
                        batch=max(1, _BATCH_VALUES // longest), vectorized=True, paired=False, method="percentile",
                        rng=rng)
        out |= dict(zip(varied, np.atleast_2d(res.bootstrap_distribution), strict=True))
    for s, d in diffs.items():
        if len(d) == 0:
            raise ValueError(f"suite {s} has no paired item to resample; leave it out of the comparison.")
    return {s: out[s] for s in diffs}


def paired_diff_ci(paired: dict[str, tuple[np.ndarray, np.ndarray]], suites: list[str], speed_info: dict[str, Any],
                   spec) -> tuple[float, float, dict[str, list[float]]]:
    """(low, high) 95% percentile CI of composite(A) - composite(B), and each suite's 95% CI of mean(A) - mean(B),
    all from one set of resamples. When speed is in the composite its difference is drawn from its sampling
    distribution (a t on the timing's degrees of freedom around the measured difference, scaled by its standard
    error), so the timing noise widens the interval instead of shifting it."""
    from tasks.decide.stats import composite

    rng = np.random.default_rng(spec.seed)
    dist = suite_distributions({s: paired[s][0] - paired[s][1] for s in suites}, spec.bootstrap, rng)
    speed = None
    if speed_info["in_composite"]:
        draws = rng.standard_t(max(speed_info["df"], 1), spec.bootstrap)
        speed = speed_info["diff"] + draws * speed_info["var"] ** 0.5
    diffs = composite(dist, speed, spec)  # linear in the means: the composite of the differences, per resample
    per_suite = {s: [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))] for s, d in dist.items()}
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5)), per_suite
