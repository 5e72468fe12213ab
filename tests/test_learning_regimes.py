"""Lazy and rich training: the α-scaled model of Chizat, Oyallon & Bach 2019 and the measures
of kernel and weight change, alignment and effective rank."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdyn.learning import (
    AlphaScaled,
    alpha_learning_rate,
    effective_rank,
    empirical_ntk,
    feature_alignment,
    kernel_alignment,
    ntk_change,
    weight_change,
)


def _mlp(key=0):
    return eqx.nn.MLP(3, "scalar", 8, 2, activation=jnp.tanh, key=jax.random.key(key))


def _data():
    x = jax.random.normal(jax.random.key(5), (6, 3))
    return x, jnp.sin(x[:, 0]) + x[:, 1] * x[:, 2]


def test_alpha_scaled_is_zero_at_init_and_its_gradient_is_alpha_times_the_models():
    x, _ = _data()
    alpha, base = 2.5, _mlp()
    out = jax.vmap(AlphaScaled(base, alpha))(x)
    assert out.shape == (6,) and np.array_equal(np.asarray(out), np.zeros(6))  # exactly
    # move the trained copy away from w₀, so that f(w) − f(w₀) ≠ 0
    moved = jax.tree.map(lambda w: w + 0.1 if eqx.is_inexact_array(w) else w, base)
    wrapped = eqx.tree_at(lambda m: m.model, AlphaScaled(base, alpha), moved)
    grads = eqx.filter_grad(lambda m: jax.vmap(m)(x).sum())(wrapped)
    expected = eqx.filter_grad(lambda m: jax.vmap(m)(x).sum())(moved)
    for g, e in zip(jax.tree.leaves(grads.model), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(g, alpha * e, rtol=1e-12)  # float64: rounding only
    assert all(not np.any(g) for g in jax.tree.leaves(grads.initial))
    np.testing.assert_allclose(
        jax.vmap(wrapped)(x), alpha * (jax.vmap(moved)(x) - jax.vmap(base)(x)), rtol=1e-12
    )


def _train(alpha: float, steps: int = 40, eta: float = 0.2, weight_decay: float = 0.0):
    """Full-batch GD on the squared loss of `AlphaScaled(mlp, alpha)` with lr η/α²."""
    x, y = _data()
    model = AlphaScaled(_mlp(), alpha)
    optimizer = optax.sgd(alpha_learning_rate(eta, alpha))
    if weight_decay:
        decay = optax.masked(optax.add_decayed_weights(weight_decay), model.trainable_mask())
        optimizer = optax.chain(decay, optimizer)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = optimizer.init(params)

    def loss(p):
        return jnp.mean((jax.vmap(eqx.combine(p, static))(x) - y) ** 2) / 2

    @jax.jit
    def step(carry, _):
        p, s = carry
        updates, s = optimizer.update(jax.grad(loss)(p), s, p)
        return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(step, (params, state), None, length=steps)
    return model, eqx.combine(params, static), loss


def _distance(a, b):
    leaves = zip(jax.tree.leaves(eqx.filter(a, eqx.is_inexact_array)),
                 jax.tree.leaves(eqx.filter(b, eqx.is_inexact_array)), strict=True)  # fmt: skip
    return float(jnp.sqrt(sum(jnp.sum((u - v) ** 2) for u, v in leaves)))


def test_large_alpha_with_lr_over_alpha_squared_is_lazy():
    """Weights move O(1/α) while the function moves O(1): α‖w_T − w₀‖ and the trained
    outputs converge as α grows (to the linearised model's), and the frozen copy never
    moves."""
    x, _ = _data()
    moves, outputs = [], []
    for alpha in (10.0, 100.0, 1000.0):
        start, trained, _ = _train(alpha)
        assert _distance(trained.initial, start.initial) == 0.0
        moves.append(alpha * _distance(trained.model, start.model))
        outputs.append(np.asarray(jax.vmap(trained)(x)))
    assert moves[0] > 0.05  # the function did move: the check below is not vacuous
    # the corrections to the linearised dynamics are O(1/α): with c/α exactly, the ratio of
    # (m₁ − m₂) to (m₀ − m₂) is (1/100 − 1/1000) / (1/10 − 1/1000) = 0.09 (measured 0.08)
    assert abs(moves[1] / moves[2] - 1) < 0.2 * abs(moves[0] / moves[2] - 1)
    assert abs(moves[2] / moves[1] - 1) < 0.02
    np.testing.assert_allclose(outputs[1], outputs[2], atol=0.02 * np.abs(outputs[2]).max())


def test_trainable_mask_keeps_weight_decay_off_the_frozen_copy():
    start, trained, _ = _train(1.0, steps=5, weight_decay=0.5)
    assert _distance(trained.initial, start.initial) == 0.0
    assert _distance(trained.model, start.model) > 0.0


@pytest.mark.parametrize("bad", [0.0, -1.0, "1", True])
def test_alpha_must_be_positive(bad):
    with pytest.raises(ValueError, match="alpha"):
        AlphaScaled(_mlp(), bad)
    with pytest.raises(ValueError, match="alpha"):
        alpha_learning_rate(0.1, bad)
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        alpha_learning_rate(bad, 2.0)


def test_alpha_learning_rate_scales_a_schedule():
    assert alpha_learning_rate(0.5, 2.0) == 0.125
    schedule = alpha_learning_rate(lambda t: 1.0 / (1 + t), 4.0)
    assert schedule(1) == pytest.approx(1 / 32)


# ---- measures of lazy and rich training, on closed-form cases


def test_ntk_change_is_zero_for_the_same_kernel_and_relative_otherwise():
    k0 = jnp.array([[2.0, 1.0], [1.0, 2.0]])
    assert float(ntk_change(k0, k0)) == 0.0
    # K − K₀ = I: ‖I‖_F / ‖K₀‖_F = √2 / √10
    np.testing.assert_allclose(ntk_change(k0 + jnp.eye(2), k0), np.sqrt(0.2), rtol=1e-14)
    with pytest.raises(ValueError, match="ntk_change"):
        ntk_change(k0, jnp.eye(3))


def test_kernel_alignment_of_the_ideal_kernel_is_one_and_is_invariant_to_scale_and_shift():
    y = jnp.array([0.3, -1.2, 2.0, 0.5, -0.1])
    np.testing.assert_allclose(kernel_alignment(jnp.outer(y, y), y), 1.0, rtol=1e-14)
    # centring: a constant added to the kernel or the targets changes nothing; nor a scale
    shifted = 4.0 * jnp.outer(y, y) + 7.0
    np.testing.assert_allclose(kernel_alignment(shifted, y + 3.0), 1.0, rtol=1e-14)
    np.testing.assert_allclose(kernel_alignment(-jnp.outer(y, y), y), -1.0, rtol=1e-14)
    # hand-computed: K = I, y centred with ‖y_c‖² = s: A = s / (‖H‖_F s) = 1/√(n − 1)
    np.testing.assert_allclose(kernel_alignment(jnp.eye(5), y), 1 / 2.0, rtol=1e-14)
    # several outputs: Y Yᵀ with Y (n, k)
    ys = jnp.stack([y, y**2], axis=1)
    np.testing.assert_allclose(kernel_alignment(ys @ ys.T, ys), 1.0, rtol=1e-14)


def test_effective_rank_of_identity_rank_one_and_a_two_level_spectrum():
    np.testing.assert_allclose(effective_rank(jnp.eye(7)), 7.0, rtol=1e-12)
    u = jnp.arange(1.0, 5.0)
    np.testing.assert_allclose(effective_rank(jnp.outer(u, u[:3])), 1.0, rtol=1e-6)
    # σ = (3, 1): p = (3/4, 1/4), exp(H) = exp(−¾ log ¾ − ¼ log ¼)
    p = np.array([0.75, 0.25])
    np.testing.assert_allclose(
        effective_rank(jnp.diag(jnp.array([3.0, 1.0, 0.0]))), np.exp(-(p * np.log(p)).sum())
    )


def test_weight_change_of_the_same_model_is_zero_and_of_a_scaled_one_is_the_scale():
    model = _mlp()
    assert float(weight_change(model, model)) == 0.0
    doubled = jax.tree.map(lambda w: 2 * w if eqx.is_inexact_array(w) else w, model)
    np.testing.assert_allclose(weight_change(doubled, model), 1.0, rtol=1e-14)
    # of the α-wrapper only the trained copy counts
    wrapped = AlphaScaled(model, 4.0)
    moved = eqx.tree_at(lambda m: m.model, wrapped, doubled)
    np.testing.assert_allclose(weight_change(moved, wrapped), 1.0, rtol=1e-14)
    with pytest.raises(ValueError, match="weight_change"):
        weight_change(model, _wide())


def _wide():
    return eqx.nn.MLP(3, "scalar", 9, 2, key=jax.random.key(0))


def test_feature_alignment_is_one_on_the_top_singular_direction_and_small_off_it():
    beta = jnp.array([0.0, 3.0, 0.0])
    spike = jnp.outer(jnp.array([1.0, -2.0]), beta) + 0.1 * jnp.eye(2, 3)
    w = jnp.diag(jnp.array([3.0, 1.0, 0.5]))  # σ = 3 along e₀
    np.testing.assert_allclose(feature_alignment(w, jnp.array([2.0, 0.0, 0.0])), 1.0)
    np.testing.assert_allclose(feature_alignment(w, beta), 1 / 9, rtol=1e-14)
    assert float(feature_alignment(spike, beta)) > 0.99
    # Gaussian N × D: ≈ 1 / (1 + √(D/N))² (here 0.64, up to O(1/√N) fluctuations)
    gauss = jax.random.normal(jax.random.key(2), (400, 25))
    assert abs(float(feature_alignment(gauss, jnp.ones(25))) - 1 / 1.25**2) < 0.05


def test_measures_are_jittable_inside_an_eval_fn():
    x, y = _data()
    model = AlphaScaled(_mlp(), 2.0)
    k0 = empirical_ntk(model, x)

    @eqx.filter_jit
    def eval_fn(m, key=None):
        k = empirical_ntk(m, x)
        return {"change": ntk_change(k, k0), "alignment": kernel_alignment(k, y),
                "rank": effective_rank(k), "weights": weight_change(m, model)}  # fmt: skip

    out = eval_fn(model)
    assert float(out["change"]) == 0.0 and float(out["weights"]) == 0.0
    assert -1 <= float(out["alignment"]) <= 1 and 1 <= float(out["rank"]) <= 6
