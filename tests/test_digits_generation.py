"""digits_generation's model-space transform, which the smoke test cannot check: the Jacobian
term against autodiff, the round trip to levels, and the closed form that makes a zero-velocity
flow the independent-pixel model (so the two likelihoods are measured alike). x64 is on in
conftest."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxdyn.experiments.digits_generation import (
    DIM,
    EPSILON,
    LEVELS,
    _bounds,
    _marginals,
    _points,
    _to_levels,
    _to_model_space,
    _transform,
)


def _levels(rng, n):
    # a few pixels always 0 (as digits' borders), the rest skewed towards low levels
    k = np.minimum(rng.geometric(0.3, size=(n, DIM)) - 1, LEVELS - 1)
    k[:, :4] = 0
    k[0, 4:8] = LEVELS - 1  # the top bin reached, with a tiny smoothed probability elsewhere
    return k.astype(np.float64)


@pytest.mark.parametrize("kind", ["gaussianize", "affine"])
def test_log_det_matches_autodiff_and_levels_round_trip(kind):
    rng = np.random.default_rng(0)
    k = _levels(rng, 50)
    t = _transform(kind, _marginals(k, 0.1), half_width=1.0)
    u = rng.uniform(EPSILON, 1 - EPSILON, size=k.shape)
    u[1, :] = EPSILON  # both ends of the bins: F and 1 − F at their smallest
    u[2, :] = 1 - EPSILON

    @jax.jit  # one compilation (eagerly, the transform is dozens of dispatches)
    def transform_and_slope(k, u):
        # T is elementwise: log |det ∂T/∂x| = Σ_i log ∂T_i/∂x_i, here by forward-mode autodiff
        (y, logdet), (slope, _) = jax.jvp(lambda v: _to_model_space(k, v, t), (u,),
                                          (jnp.ones_like(u),))  # fmt: skip
        return y, logdet, slope

    y, logdet, slope = transform_and_slope(jnp.asarray(k), jnp.asarray(u))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(logdet, np.sum(np.log(slope), 1), rtol=1e-10, atol=1e-9)
    np.testing.assert_array_equal(_to_levels(y, t), k)


def test_zero_velocity_flow_is_the_independent_pixel_model():
    # Gaussianised: a standard normal on y = T(k + u) has density Π p_i(k_i) in x, whatever u,
    # so every bound equals the independent model's discrete likelihood (up to −log q)
    rng = np.random.default_rng(1)
    k = _levels(rng, 40)
    p = _marginals(k, 0.03)
    t = _transform("gaussianize", p, half_width=1.0)
    draws = 4
    u = rng.uniform(EPSILON, 1 - EPSILON, size=(k.shape[0] * draws, DIM))
    y, logdet = _points(k, u, t)  # image i's draws are rows i·draws … (i + 1)·draws − 1
    log_p_x = scipy.stats.norm.logpdf(y).sum(1) + logdet
    bounds = _bounds(log_p_x, draws)
    exact = -np.sum(np.log(p[np.arange(DIM), k.astype(int)]), 1) / (DIM * np.log(2))
    log_q = -np.log2(1 - 2 * EPSILON)  # log₂ of q's density 1/(1 − 2ε) per pixel: the bound's cost
    for name in ("iw", "jensen"):
        # float64 throughout; ndtri near its tails costs a few digits
        np.testing.assert_allclose(bounds[name], exact + log_q, rtol=0, atol=1e-9, err_msg=name)
    assert set(bounds["by_draws"]) == {"1", "2", "4"}


def test_importance_weighted_bound_by_hand_and_below_jensen():
    # Two images, two draws each with unequal log p: log p = (0, log 3) gives
    # −log((1 + 3)/2) = −log 2 nats for the IW bound against Jensen's −½ log 3 (both plus
    # −log q = D log(1 − 2ε)); the first draw alone (K = 1) gives 0. In bits per dimension.
    log_p_x = np.array([0.0, np.log(3.0), -5.0, -5.0])
    bounds = _bounds(log_p_x, 2)
    log_q = DIM * np.log(1 - 2 * EPSILON)
    to_bits = -1 / (DIM * np.log(2))
    np.testing.assert_allclose(bounds["iw"], to_bits * (np.array([np.log(2.0), -5.0]) + log_q),
                               rtol=1e-12)  # fmt: skip
    np.testing.assert_allclose(bounds["jensen"],
                               to_bits * (np.array([0.5 * np.log(3.0), -5.0]) + log_q),
                               rtol=1e-12)  # fmt: skip
    assert bounds["by_draws"]["1"] == pytest.approx(to_bits * ((0.0 - 5.0) / 2 + log_q))
    assert bounds["by_draws"]["2"] == pytest.approx(float(bounds["iw"].mean()))
    assert np.all(bounds["iw"] <= bounds["jensen"])  # log-mean-exp ≥ mean, for every draw set
