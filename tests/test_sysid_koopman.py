"""Koopman VAEs (`jaxdyn.sysid.koopman`) and TimeGAN's generation scores
(`jaxdyn.metrics.generation`)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.metrics import discriminative_score, predictive_score
from jaxdyn.sysid import GaussianSequentialVAE, KoopmanVAE, encoder_inputs, koopman_operator

KEY = jax.random.key(0)


def _rotation_data(radius=0.95, angle=0.3, batch=4, time=30):
    """Trajectories of the linear map `z_{t+1} = A z_t`, `A` a scaled rotation (+ a decaying
    third coordinate), from random initial states."""
    a = np.zeros((3, 3))
    a[:2, :2] = radius * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    a[2, 2] = 0.5
    z0 = np.random.default_rng(0).normal(size=(batch, 3))
    z = [z0]
    for _ in range(time - 1):
        z.append(z[-1] @ a.T)
    return a, np.stack(z, 1)


def test_koopman_operator_recovers_a_linear_map():
    a, z = _rotation_data()
    fitted = np.asarray(koopman_operator(jnp.asarray(z)))
    # Noise-free linear data: the least-squares solution is exact up to the LU solve's
    # float64 rounding on a condition number ~ 1/0.5^29 for the decaying coordinate's span.
    np.testing.assert_allclose(fitted, a, atol=1e-8)
    lam = np.linalg.eigvals(fitted)
    np.testing.assert_allclose(np.sort(np.abs(np.angle(lam)))[-1], 0.3, atol=1e-8)


def test_koopman_operator_spectral_bound():
    a, z = _rotation_data(radius=1.2, time=12)  # a growing rotation
    bounded = np.asarray(koopman_operator(jnp.asarray(z), max_radius=1.0))
    # ‖A‖₂ ≤ 1 ⇒ every |λ| ≤ 1; the rescaling keeps the angles.
    assert np.linalg.norm(bounded, 2) <= 1.0 + 1e-12
    assert np.abs(np.linalg.eigvals(bounded)).max() <= 1.0 + 1e-12
    lam = np.linalg.eigvals(bounded)
    np.testing.assert_allclose(np.abs(np.angle(lam)).max(), 0.3, atol=1e-8)
    # A map already inside the bound is left unchanged.
    _, z = _rotation_data(radius=0.9)
    np.testing.assert_allclose(koopman_operator(z, max_radius=1.0), koopman_operator(z), atol=1e-12)


def test_koopman_operator_gradient_matches_finite_differences():
    _, z = _rotation_data(time=8)
    z = jnp.asarray(z + 0.01 * np.random.default_rng(1).normal(size=z.shape))
    direction = jnp.asarray(np.random.default_rng(2).normal(size=z.shape))

    def f(z):
        return jnp.sum(jnp.sin(koopman_operator(z, max_radius=0.9)))

    grad = jax.grad(f)(z)
    eps = 1e-6
    fd = (f(z + eps * direction) - f(z - eps * direction)) / (2 * eps)
    # Central differences in float64: error O(eps²) plus rounding ~1e-16/eps.
    np.testing.assert_allclose(jnp.vdot(grad, direction), fd, rtol=1e-6)


@pytest.fixture(scope="module")
def models():
    @eqx.filter_jit  # one compilation for the initialisation (eagerly, one per operation)
    def init(key):
        k1, k2 = jax.random.split(key)
        return (KoopmanVAE(channels=3, latent=4, hidden=6, max_radius=1.0, key=k1),
                GaussianSequentialVAE(channels=3, hidden=6, key=k2))  # fmt: skip

    return init(KEY)


def test_models_shapes_jit_vmap_and_gradients(models):
    kovae, baseline = models
    x = jax.random.uniform(KEY, (5, 8, 3))

    @eqx.filter_jit
    def losses_and_grads(kovae, baseline, x):
        def total(ms):
            return ms[0].loss(x, key=KEY).total + ms[1].loss(x, key=KEY).total

        value, grads = eqx.filter_value_and_grad(total)((kovae, baseline))
        mean, log_var = jax.vmap(kovae.encode)(x)
        changed = kovae.encode(x[0].at[-1].set(0.0))[0]
        samples = kovae.sample(2, 8, key=KEY), baseline.sample(2, 8, key=KEY)
        a = kovae.operator(key=KEY, num_samples=8, length=8)
        return value, grads, samples, (mean, log_var, changed), a

    value, grads, (s1, s2), (mean, log_var, changed), a = losses_and_grads(kovae, baseline, x)
    assert np.isfinite(value)
    assert s1.shape == s2.shape == (2, 8, 3)
    assert np.all((s1 > 0) & (s1 < 1))  # bounded (sigmoid) outputs
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert np.any(np.abs(grads[0].prior_cell.weight_hh) > 0)  # the prior is trained
    assert mean.shape == log_var.shape == (5, 8, 4)
    # Causal posterior: changing the last step leaves earlier posteriors unchanged.
    np.testing.assert_allclose(changed[:-1], mean[0, :-1], atol=1e-12)
    lam = np.linalg.eigvals(np.asarray(a))  # what `eigenvalues` returns
    assert lam.shape == (4,) and np.abs(lam).max() <= 1.0 + 1e-9  # max_radius=1


def test_loss_terms_against_hand_computation(models):
    """The baseline's NLL and KL against a NumPy computation of the same posterior sample;
    KoVAE's prediction term against a NumPy least-squares fit of its prior samples."""
    kovae, baseline = models
    x = np.asarray(jax.random.uniform(KEY, (3, 8, 3)))

    @eqx.filter_jit
    def pieces(kovae, baseline, x):
        mean, log_var = jax.vmap(baseline.encode)(x)
        g = mean + jnp.exp(0.5 * log_var) * jax.random.normal(KEY, mean.shape, mean.dtype)
        xhat = jax.vmap(lambda g_: baseline.decode(g_, 8))(g)
        post_key, prior_key = jax.random.split(KEY)
        z, prior_mean, prior_log_var = jax.vmap(lambda k: kovae.prior(8, key=k))(
            jax.random.split(prior_key, 3))  # fmt: skip
        q_mean, q_log_var = jax.vmap(kovae.encode)(x)
        z_q = q_mean + jnp.exp(0.5 * q_log_var) * jax.random.normal(post_key, q_mean.shape)
        along_q = jax.vmap(kovae.prior_conditionals)(z_q)
        along_own = jax.vmap(kovae.prior_conditionals)(z)
        kl_terms = (q_mean, q_log_var, along_q, (prior_mean, prior_log_var), along_own)
        return (baseline.loss(x, key=KEY), mean, log_var, xhat,
                kovae.loss(x, key=KEY, prediction_weight=2.0), z,
                kovae.loss(x, key=KEY, kl_against="independent").kl, kl_terms)  # fmt: skip

    out, mean, log_var, xhat, kout, z, kl_independent, kl_terms = pieces(
        kovae, baseline, jnp.asarray(x)
    )
    s = np.exp(np.asarray(baseline.log_scale))
    nll = np.sum(0.5 * ((x - np.asarray(xhat)) / s) ** 2 + np.log(s) + 0.5 * np.log(2 * np.pi))
    m, v = np.asarray(mean), np.exp(np.asarray(log_var))
    kl = 0.5 * np.sum(v + m**2 - 1 - np.log(v))
    np.testing.assert_allclose(out.reconstruction, nll / 3, rtol=1e-10)  # float64, same sample
    np.testing.assert_allclose(out.kl, kl / 3, rtol=1e-10)

    z = np.asarray(z)
    past, future = z[:, :-1].reshape(-1, 4), z[:, 1:].reshape(-1, 4)
    a = np.linalg.lstsq(past, future, rcond=None)[0].T  # a second method (SVD)
    a = a * min(1.0, 1.0 / np.linalg.norm(a, 2))
    pred = np.sum((z[:, 1:] - z[:, :-1] @ a.T) ** 2) / np.sum(z[:, 1:] ** 2)
    np.testing.assert_allclose(kout.prediction, pred, rtol=1e-8)  # float64, conditioned LS
    np.testing.assert_allclose(
        kout.total, kout.reconstruction + 0.007 * kout.kl + 2.0 * kout.prediction, rtol=1e-12
    )

    # The KL: the prior's conditionals along the posterior sample (default, the ELBO's) or
    # along an independent prior sample (the reference code's), against NumPy; teacher-forcing
    # the prior on its own sample reproduces its conditionals (the same operations: float64).
    q_mean, q_log_var, along_q, own, along_own = jax.tree.map(np.asarray, kl_terms)
    np.testing.assert_allclose(along_own[0], own[0], atol=1e-12)
    np.testing.assert_allclose(along_own[1], own[1], atol=1e-12)

    def kl(mean_p, log_var_p):
        v_q, v_p = np.exp(q_log_var), np.exp(log_var_p)
        terms = log_var_p - q_log_var + (v_q + (q_mean - mean_p) ** 2) / v_p - 1
        return 0.5 * np.sum(terms) / 3

    np.testing.assert_allclose(kout.kl, kl(*along_q), rtol=1e-10)  # float64
    np.testing.assert_allclose(kl_independent, kl(*own), rtol=1e-10)
    assert not np.allclose(kout.kl, kl_independent)  # the two differ


def test_irregular_inputs_and_masked_loss():
    x = np.array([[1.0, np.nan], [np.nan, 2.0], [3.0, np.nan]])
    ts = np.array([0.0, 0.5, 2.0])
    feats = np.asarray(encoder_inputs(jnp.asarray(x), jnp.asarray(ts)))
    np.testing.assert_allclose(feats[:, :2], [[1, 0], [1, 2], [3, 2]])  # filled (0 before first)
    np.testing.assert_allclose(feats[:, 2:4], [[1, 0], [0, 1], [1, 0]])  # mask
    np.testing.assert_allclose(feats[:, 4:], [[0, 0], [0.5, 0], [0, 1.5]])  # time since last
    # Bidirectional here (the irregular and the bidirectional encoder share one program).
    model = KoopmanVAE(channels=2, latent=2, hidden=4, irregular=True, bidirectional=True, key=KEY)
    batch = jnp.asarray(np.stack([x, x]))

    @eqx.filter_jit
    def pieces(model, batch):
        out, grads = eqx.filter_value_and_grad(lambda m: m.loss(batch, key=KEY).total)(model)
        post_key, _ = jax.random.split(KEY)
        mean, log_var = jax.vmap(model.encode)(batch)
        z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(post_key, mean.shape, mean.dtype)
        changed = model.encode(batch[0].at[-1].set(5.0))[0]
        return model.loss(batch, key=KEY), grads, jax.vmap(model.decode)(z), mean[0], changed

    out, grads, xhat, mean, changed = pieces(model, batch)
    assert np.isfinite(out.total)
    # Bidirectional posterior: unlike the causal one (test above), the last step reaches
    # every earlier step.
    assert np.all(np.abs(np.asarray(changed - mean)[:-1]).max(axis=-1) > 0)
    # NaN-marked entries enter neither the loss nor its gradient (a NaN behind a `where` would
    # poison the gradient); the reconstruction sums the observed entries only.
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(np.all(np.isfinite(g)) for g in leaves)
    observed = ~np.isnan(np.asarray(batch))
    expected = np.sum((np.asarray(batch) - np.asarray(xhat))[observed] ** 2) / 2
    np.testing.assert_allclose(out.reconstruction, expected, rtol=1e-10)  # float64


def test_bad_inputs_name_the_argument(models):
    kovae, baseline = models
    with pytest.raises(ValueError, match=r"values must have shape \(batch, time >= 2, 3\)"):
        kovae.loss(jnp.zeros((2, 8, 4)), key=KEY)
    with pytest.raises(ValueError, match="values must have shape"):
        baseline.loss(jnp.zeros((8, 3)), key=KEY)
    with pytest.raises(ValueError, match="latent must be an int >= 1"):
        KoopmanVAE(channels=2, latent=0, key=KEY)
    with pytest.raises(ValueError, match="kl_against must be posterior or independent"):
        kovae.loss(jnp.zeros((2, 8, 3)), key=KEY, kl_against="prior")
    with pytest.raises(ValueError, match="max_radius must be a positive number"):
        KoopmanVAE(channels=2, max_radius=-1.0, key=KEY)
    with pytest.raises(ValueError, match="length must be an int >= 2"):
        kovae.sample(3, 1, key=KEY)
    with pytest.raises(ValueError, match="z must have shape"):
        koopman_operator(jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match="at least as many transitions"):
        koopman_operator(jnp.zeros((1, 3, 4)))
    real = np.random.default_rng(0).uniform(size=(20, 6, 1))
    with pytest.raises(ValueError, match="needs at least 2"):
        predictive_score(real, real, key=KEY)
    with pytest.raises(ValueError, match="same \\(time, channels\\)"):
        discriminative_score(real, real[:, :5], key=KEY)
    with pytest.raises(ValueError, match="train_fraction"):
        discriminative_score(real, real, key=KEY, train_fraction=1.0)


def test_generation_scores_tell_apart_what_they_should():
    """The classifier separates clearly different data (score near 0.5) and not the same
    distribution (near 0); the predictor trained on the real process scores a lower MAE on it
    than one trained on noise."""
    rng = np.random.default_rng(0)
    t = np.arange(12)[None, :, None]
    # Four channels (TimeGAN's GRUs then have 2 units) sharing a frequency: the first three
    # predict the last.
    phase = np.linspace(0.0, 1.0, 4)

    def series():
        return (np.sin(rng.uniform(0.2, 0.4, size=(200, 1, 1)) * t + phase) + 1) / 2

    real, same = series(), series()
    noise = rng.uniform(size=real.shape)
    far = discriminative_score(real, noise, key=KEY, steps=600)
    near = discriminative_score(real, same, key=KEY, steps=600)
    # 40 test series per class: the standard error of an accuracy is ~0.05.
    assert far > 0.4 and near < 0.12, (far, near)
    good = predictive_score(real, same, key=KEY, steps=600)
    bad = predictive_score(real, noise, key=KEY, steps=600)
    assert good < 0.6 * bad, (good, bad)
