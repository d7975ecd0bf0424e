"""Fails when a shim is no longer needed (then delete it) or when a shim is broken."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
from alpha_gate import skopt_compat as c
print(int(c.needs_in1d_shim()), int(c.needs_tags_shim()))
"""


def test_each_shim_is_still_needed():
    # A fresh interpreter, shims not applied: the upstream problems must still exist.
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "1", "numpy has np.in1d again: remove the in1d shim from alpha_gate/skopt_compat.py"
    assert out[1] == "1", ("skopt's GradientBoostingQuantileRegressor is a regressor by sklearn's tags again: "
                           "remove the tags shim from alpha_gate/skopt_compat.py")


def test_shims_make_the_broken_paths_work():
    import numpy as np

    from alpha_gate import skopt_compat

    skopt_compat.apply()
    skopt_compat.apply()  # idempotent
    from sklearn.base import is_regressor
    from skopt import Optimizer
    from skopt.learning import GradientBoostingQuantileRegressor

    assert np.array_equal(np.in1d([1, 2, 3], [2]), np.isin([1, 2, 3], [2]))
    assert is_regressor(GradientBoostingQuantileRegressor())
    # the path that raised before: GBRT surrogate (np.in1d in predict, tags in Optimizer)
    opt = Optimizer([(0.0, 1.0), (0.0, 1.0)], base_estimator="GBRT", n_initial_points=3, random_state=0)
    for _ in range(5):
        x = opt.ask()
        opt.tell(x, (x[0] - 0.3) ** 2 + (x[1] - 0.6) ** 2)
    assert len(opt.yi) == 5
