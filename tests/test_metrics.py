"""Metrics against scipy and closed forms."""

import numpy as np
import pytest
import scipy.stats

from jaxdyn.metrics import wasserstein_1d


def test_wasserstein_1d_is_exact():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=300), rng.normal(0.3, 1.5, size=170)
    # Both compute ∫|F_a - F_b| exactly; they differ by float64 rounding only.
    assert float(wasserstein_1d(a, b)) == pytest.approx(
        scipy.stats.wasserstein_distance(a, b), rel=1e-12
    )
    c = rng.normal(size=300)
    assert float(wasserstein_1d(a, c)) == pytest.approx(
        np.mean(np.abs(np.sort(a) - np.sort(c))), rel=1e-12
    )
    assert float(wasserstein_1d(a, a + 0.25)) == pytest.approx(0.25, rel=1e-12)
