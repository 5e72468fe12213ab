"""latent_sde_sine's exact reference band: the OU prior's Gaussian-process posterior against a
second method (a Kalman filter and Rauch–Tung–Striebel smoother on the same times, float64
NumPy) and against the closed form for one noiseless observation."""

import numpy as np

from jaxdyn.experiments.latent_sde_sine import ou_posterior


def _ou_smoother(obs_ts, ys, ts, *, sigma, theta, noise_var):
    """Posterior mean and sd of z(ts) by Kalman filtering and RTS smoothing of the OU's exact
    AR(1) transitions (z(t+Δ) = e^{-θΔ} z(t) + N(0, v(1 - e^{-2θΔ})), v = σ²/2θ) on the merged
    times, starting from the stationary law at t = 0."""
    var0 = sigma**2 / (2 * theta)
    times = np.union1d(np.union1d(obs_ts, ts), [0.0])
    observed = dict(zip(obs_ts.tolist(), ys.tolist(), strict=True))
    means, variances, predicted = [], [], []
    mean, var, previous = 0.0, var0, 0.0
    for t in times:
        a = np.exp(-theta * (t - previous))
        mean, var = a * mean, a**2 * var + var0 * (1 - a**2)
        predicted.append((mean, var, a))
        if t in observed:
            gain = var / (var + noise_var)
            mean, var = mean + gain * (observed[t] - mean), (1 - gain) * var
        means.append(mean)
        variances.append(var)
        previous = t
    for i in range(len(times) - 2, -1, -1):  # RTS: back from the last time
        p_mean, p_var, a = predicted[i + 1]
        gain = variances[i] * a / p_var
        means[i] = means[i] + gain * (means[i + 1] - p_mean)
        variances[i] = variances[i] + gain**2 * (variances[i + 1] - p_var)
    at = np.searchsorted(times, ts)
    return np.array(means)[at], np.sqrt(np.array(variances)[at])


def test_ou_posterior_matches_kalman_smoother():
    rng = np.random.default_rng(0)
    obs_ts = np.sort(rng.uniform(0.4, 1.6, 7))
    ys = 0.8 * np.sin(2 * np.pi * obs_ts) + 0.05 * rng.standard_normal(7)
    ts = np.sort(rng.uniform(0.0, 2.0, 11))
    options = {"sigma": 0.75, "theta": 1.3, "noise_var": 0.005}
    mean, std = ou_posterior(obs_ts, ys, ts, **options)
    ref_mean, ref_std = _ou_smoother(obs_ts, ys, ts, **options)
    # float64 throughout: the two differ by rounding only
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(std, ref_std, rtol=1e-9, atol=1e-12)


def test_ou_posterior_of_one_noiseless_observation():
    # z(t) | z(s) = y is N(y e^{-θ|t-s|}, v (1 - e^{-2θ|t-s|})), v = σ²/2θ
    sigma, theta, s, y = 0.5, 1.0, 0.7, 0.3
    ts = np.array([0.0, 0.5, 0.7, 1.2, 2.0])
    mean, std = ou_posterior(np.array([s]), np.array([y]), ts, sigma=sigma, theta=theta,
                             noise_var=0.0)  # fmt: skip
    decay = np.exp(-theta * np.abs(ts - s))
    np.testing.assert_allclose(mean, y * decay, rtol=1e-12)
    # variances: at the observation, v - k K^-1 k cancels to rounding (~ eps v), not 0
    np.testing.assert_allclose(std**2, sigma**2 / (2 * theta) * (1 - decay**2), atol=1e-15)
