"""The two shims scikit-optimize 0.10.2 needs on numpy 2 and scikit-learn >= 1.6. Nothing else.

1. numpy 2 removed ``np.in1d``; ``skopt.learning.gbrt`` still calls it. We alias it to ``np.isin``
   (the documented replacement, same result for 1-D input).
2. scikit-learn >= 1.6 reads estimator tags through ``__sklearn_tags__``, resolved along the MRO.
   ``GradientBoostingQuantileRegressor(BaseEstimator, RegressorMixin)`` lists the mixin after
   BaseEstimator, so its tags say estimator_type=None, ``is_regressor`` is False and skopt's
   Optimizer refuses it ("has to be a regressor"). We give the class the regressor tags.

``tests/test_skopt_compat.py`` fails when either shim stops being needed (remove it then) or when
the patched behaviour is wrong.
"""

from __future__ import annotations

import numpy as np

_applied = False


def needs_in1d_shim() -> bool:
    return not hasattr(np, "in1d")


def needs_tags_shim() -> bool:
    from sklearn.base import is_regressor
    from skopt.learning import GradientBoostingQuantileRegressor

    return not is_regressor(GradientBoostingQuantileRegressor())


def apply() -> None:
    """Install the shims once per process; safe to call repeatedly."""
    global _applied
    if _applied:
        return
    if needs_in1d_shim():
        np.in1d = np.isin  # type: ignore[attr-defined]
    if needs_tags_shim():
        from sklearn.utils import RegressorTags
        from skopt.learning import GradientBoostingQuantileRegressor

        def __sklearn_tags__(self):  # noqa: N807 - the name scikit-learn looks up
            # What RegressorMixin.__sklearn_tags__ would have added, had the MRO reached it.
            tags = super(GradientBoostingQuantileRegressor, self).__sklearn_tags__()
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
            tags.target_tags.required = True
            return tags

        GradientBoostingQuantileRegressor.__sklearn_tags__ = __sklearn_tags__
    _applied = True
