"""Tian 2025's Li₂ energy of a hidden node (arXiv:2509.21519): its gradient is the node's
independent stage-II dynamics, and single Fourier frequencies are its local maxima on the
sphere for modular addition with the quadratic activation. Float64 (conftest)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.learning import li2_energy, li2_gradient_alignment, modular_addition


def _ridge_descent(w, x, y, eta, activation):
    """`−∂ℓ/∂W` of `ℓ = ½‖P⊥(Y − σ(XWᵀ)V)‖² + (η/2)‖V‖²` with `V` held at its ridge
    solution `(F̃ᵀF̃ + ηI)⁻¹F̃ᵀỸ` (stage II's top layer), rows one node each."""
    n = x.shape[0]
    centre = jnp.eye(n) - 1 / n
    f_tilde = centre @ activation(x @ w.T)
    v = jnp.linalg.solve(f_tilde.T @ f_tilde + eta * jnp.eye(w.shape[0]), f_tilde.T @ centre @ y)

    def loss(w):
        return 0.5 * jnp.sum((centre @ (y - activation(x @ w.T) @ v)) ** 2)

    return -jax.grad(loss)(w)


@jax.jit
def _stage_two(w, x, y):
    activation = jnp.tanh  # the derivation holds for any σ, not only the square
    ascent = jax.vmap(jax.grad(lambda row: li2_energy(row, x, y, activation)))(w)
    # the node gradient through σ of the stage-II form G_F = ỸỸᵀF, by a vector–Jacobian
    # product of F(W) = σ(XWᵀ)
    centred = y - y.mean(0)
    features, pullback = jax.vjp(lambda w: activation(x @ w.T), w)
    (through_sigma,) = pullback(centred @ centred.T @ features)
    # weight decay η = factor · ‖F̃‖₂², rescaled by η: the actual descent → ∇E as η → ∞
    scale = jnp.linalg.norm(features - features.mean(0), 2) ** 2
    descents = [factor * scale * _ridge_descent(w, x, y, factor * scale, activation)
                for factor in (1e3, 1e5)]  # fmt: skip
    cosine = li2_gradient_alignment(w, descents[1], x, y, activation)
    return ascent, through_sigma, descents, cosine


def test_energy_gradient_is_the_stage_two_dynamics_of_the_training_loss():
    kx, ky, kw = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (12, 5))
    y = jax.nn.one_hot(jax.random.randint(ky, (12,), 0, 3), 3)
    w = jax.random.normal(kw, (4, 5)) / jnp.sqrt(5.0)
    ascent, through_sigma, descents, cosine = _stage_two(w, x, y)
    np.testing.assert_allclose(through_sigma, ascent, rtol=1e-12, atol=1e-12)  # rounding only
    # the actual loss gradient with V at its ridge solution: η (−∂ℓ/∂W) = ∇E + O(‖F̃‖²/η)
    errors = [float(jnp.linalg.norm(d - ascent) / jnp.linalg.norm(ascent)) for d in descents]
    assert errors[0] < 1e-2 and errors[1] < 1e-4
    # the first-order rate: 100x the weight decay, 1/100 of the error (within 2x)
    assert 0.005 < errors[1] / errors[0] < 0.02
    np.testing.assert_allclose(cosine, 1.0, atol=1e-8)  # 1 − cos is second order in 1e-5


def _fourier_feature(p, k, phases):
    angle = 2 * np.pi * k * np.arange(p) / p
    return jnp.concatenate([jnp.cos(angle + phases[0]), jnp.cos(angle + phases[1])]) / np.sqrt(p)


@pytest.mark.parametrize("k", [1, 3])
def test_fourier_features_are_local_maxima_on_the_sphere(k):
    p = 7
    x, labels = modular_addition(p)
    y = jax.nn.one_hot(labels, p)

    def energy(w):
        return li2_energy(w, x, y)

    @jax.jit
    def derivatives(w):
        return energy(w), jax.grad(energy)(w), jax.hessian(energy)(w)

    w = _fourier_feature(p, k, (0.4, -1.1))
    assert np.isclose(float(jnp.linalg.norm(w)), 1.0, atol=1e-14)
    value, gradient, hessian = derivatives(w)
    # closed form on all p² pairs: Ỹᵀσ(Xw) = cos(θc + φ + ψ) over the classes c, E = p/4
    np.testing.assert_allclose(value, p / 4, rtol=1e-12)
    tangent = jnp.eye(2 * p) - jnp.outer(w, w)
    np.testing.assert_allclose(tangent @ gradient, 0.0, atol=1e-12)  # stationary on the sphere
    # Riemannian Hessian on the tangent space: P (∇²E − (wᵀ∇E) I) P, NSD; its null space holds
    # the two phase shifts (E depends on |û_k||v̂_k| only), the rest strictly negative
    hessian = tangent @ (hessian - (w @ gradient) * jnp.eye(2 * p)) @ tangent
    basis = jnp.linalg.svd(tangent)[0][:, : 2 * p - 1]
    curvature = np.linalg.eigvalsh(basis.T @ hessian @ basis)
    assert curvature.max() < 1e-10
    assert np.sum(np.abs(curvature) < 1e-10) == 2 and np.sort(curvature)[-3] < -0.1
    # random unit directions and mixtures of two frequencies lie lower
    rows = np.random.default_rng(k).normal(size=(50, 2 * p))
    mixed = w + _fourier_feature(p, k % 3 + 1, (0.0, 0.0))
    rows = np.concatenate([rows, np.asarray(mixed)[None]])
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    assert float(jax.jit(jax.vmap(energy))(rows).max()) < p / 4


def test_gradient_alignment_cosines_and_errors():
    x = jax.random.normal(jax.random.key(1), (9, 4))
    y = jax.nn.one_hot(jnp.arange(9) % 3, 3)
    w = jax.random.normal(jax.random.key(2), (3, 4))
    ascent = jax.jit(jax.vmap(jax.grad(lambda row: li2_energy(row, x, y))))(w)
    descent = jnp.stack([2.0 * ascent[0], -ascent[1], jnp.zeros(4)])
    cosines = jax.jit(li2_gradient_alignment)(w, descent, x, y)
    np.testing.assert_allclose(cosines, [1.0, -1.0, 0.0], atol=1e-14)
    with pytest.raises(ValueError, match="descent"):
        li2_gradient_alignment(w, descent[:2], x, y)
    with pytest.raises(ValueError, match="x has 9 samples, y 8"):
        li2_energy(w[0], x, y[:8])
