"""SGLD, preconditioned SGLD and CLASSP as optax transformations: stationary variances on
Gaussian posteriors against their closed forms, the transforms on pytrees inside
`optax.chain` and `jit`, CLASSP's suppression and threshold, and refused hyperparameters.
(x64 is on in conftest.)"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import gammaln

from jaxdyn.learning import classp, psgld, sgld

N, RHO = 1000, 0.954  # data size; the data's variance over the likelihood's (see `sgld`)
STEP = 0.2  # ε / s²


def sgld_variance(batch: int, rho: float = RHO, n: int = N, step: float = STEP) -> float:
    """`V/s²` of SGLD on `U = θ²/(2s²)` with minibatch noise `s²σ_ξ² = ρn(n − B)/(B(n − 1))`
    (batches without replacement): `[ε + (ε²/4)σ_ξ²] / (1 − a²)`, `a = 1 − ε/(2s²)`, in units
    of `s²`."""
    noise = rho * n * (n - batch) / (batch * (n - 1))
    return (step + step**2 / 4 * noise) / (1 - (1 - step / 2) ** 2)


def test_the_closed_form_gives_the_issue_numbers():
    """Issue 16: `V/s² = 1.053, 1.505, 6.03` for `B = 1000, 100, 10` (ρ = 0.954); the
    well-specified data (ρ = 1) give 1.053, 1.527, 6.27."""
    assert [round(sgld_variance(b), 3) for b in (1000, 100)] == [1.053, 1.505]
    assert round(sgld_variance(10), 2) == 6.03
    assert [round(sgld_variance(b, rho=1.0), 3) for b in (1000, 100)] == [1.053, 1.527]
    assert round(sgld_variance(10, rho=1.0), 2) == 6.27


def _hypergeometric_cdf(batch: int) -> np.ndarray:
    """The distribution function at `k = 0, …, n` of the number `K` of `+√ρ` among `batch`
    data drawn without replacement from `n/2` of `+√ρ` and `n/2` of `−√ρ`: `P(K = k) =
    C(n/2, k) C(n/2, B − k) / C(n, B)`."""
    k = np.arange(N + 1)
    half = N // 2
    with np.errstate(invalid="ignore"):
        log_pmf = (gammaln(half + 1) - gammaln(k + 1) - gammaln(half - k + 1)
                   + gammaln(half + 1) - gammaln(batch - k + 1) - gammaln(half - batch + k + 1)
                   - gammaln(N + 1) + gammaln(batch + 1) + gammaln(N - batch + 1))  # fmt: skip
    cdf = np.cumsum(np.where(np.isfinite(log_pmf), np.exp(log_pmf), 0.0))
    assert abs(cdf[-1] - 1) < 1e-9
    return cdf


@jax.jit
def _sgld_chains(key, cdf, batch):
    """Mean of `θ²/s²` after burn-in, per chain: SGLD (ε = 0.2 s²) on the Gaussian mean (σ = 1,
    flat prior: `s² = 1/n`) with ∇Û = (n/B) Σ_{i∈batch} (θ − xᵢ) = nθ − (n/B) Σ_{batch} xᵢ on
    the data ±√ρ. A batch's sum `√ρ (2K − B)` is drawn by inverting `K`'s distribution function
    `cdf` (exact, one uniform a batch), a fresh batch every step."""
    s2, chains, burn, steps = 1.0 / N, 2000, 60, 200
    opt = sgld(STEP * s2, key=jax.random.fold_in(key, 0))
    plus = jnp.searchsorted(cdf[:-1], jax.random.uniform(key, (burn + steps, chains)), "right")
    sums = np.sqrt(RHO) * (2 * plus - batch)

    def body(carry, sums):
        theta, state = carry
        updates, state = opt.update(N * theta - (N / batch) * sums, state)
        theta = theta + updates
        return (theta, state), theta**2

    theta = jnp.sqrt(s2) * jax.random.normal(jax.random.fold_in(key, 2), (chains,))
    _, squares = jax.lax.scan(body, (theta, opt.init(theta)), sums)
    return jnp.mean(squares[burn:], axis=0) / s2  # the posterior mean is exactly 0


@pytest.mark.parametrize("batch", [1000, 100, 10])
def test_sgld_stationary_variance_with_minibatch_noise_matches_the_ar1_closed_form(batch):
    """The data: `n/2` of `+√ρ` and `n/2` of `−√ρ` (mean exactly 0, variance exactly ρ), so a
    batch's sum is hypergeometric and drawn exactly in `O(1)` (no permutation); ε = 0.2 s².
    2000 independent chains × 200 steps after a burn-in of 60 (`a¹²⁰ ≈ 3·10⁻⁶`) from
    posterior draws: with `a = 0.9`, θ²'s integrated autocorrelation time is `(1 + a²)/(1 −
    a²) = 9.5`, so the relative standard error is ≈ √(2 · 9.5 / 400k) ≈ 0.7%, under a quarter
    of the 3% tolerance (the test asserts the measured one, from the chains' spread, is below
    1%). One compiled program serves the three batch sizes."""
    cdf = jnp.asarray(_hypergeometric_cdf(batch))
    estimates = np.asarray(_sgld_chains(jax.random.key(batch), cdf, float(batch)))
    variance = estimates.mean()
    standard_error = estimates.std(ddof=1) / np.sqrt(estimates.size)
    assert standard_error / variance < 0.01
    np.testing.assert_allclose(variance, sgld_variance(batch), rtol=0.03)


def test_psgld_equalises_scales_and_samples_the_gaussian_to_its_closed_form():
    """pSGLD on `U = Σⱼ θⱼ²/(2sⱼ²)`, full gradients, scales `s = (0.5, 2)`. With `α → 1` the
    preconditioner is frozen at `Gⱼ = 1/√E[gⱼ²]` (λ → 0) and each coordinate is SGLD with
    step `εGⱼ`: `Var θⱼ = sⱼ²/(1 − εGⱼ/(4sⱼ²))` (the AR(1) form of `sgld`), while `E[gⱼ²] =
    Var θⱼ/sⱼ⁴`. Together, `Gⱼ = sⱼ x` and `Var θⱼ = sⱼ²/x²` with `x² + cx − 1 = 0`, `c =
    ε/(4sⱼ)`: RMSprop equalises the scales to `G ∝ s`, so the step `εG/s²` is larger for the
    narrow coordinate. α = 0.999 (the Γ term omitted is then small), chains started at that
    fixed point (θ ~ N(0, s²/x²), V = 1/(sx)²), which must stay put: 200 steps of burn-in;
    600 chains × 600 steps give a relative standard error ≈ √(2τ/360k) ≤ 1.1% (τ = (1 + a²)/
    (1 − a²) ≤ 19.5 for `a = 1 − εG/(2s²)`), asserted from the chains' spread, against the 3%
    tolerance. The noise's scale is checked too: with `N(0, ε)` noise instead of `N(0, εG)`,
    the variance would scale as `1/G` (by 2 and 1/2 here)."""
    s = jnp.array([0.5, 2.0])
    step, chains, burn, steps = 0.4, 600, 200, 600
    c = step / (4 * s)
    x = (jnp.sqrt(c**2 + 4) - c) / 2

    def chain(key):
        opt = psgld(step, key=key, decay=0.999, eps=1e-8)
        theta = s / x * jax.random.normal(jax.random.fold_in(key, 1), (2,))
        state = opt.init(theta)._replace(nu=1 / (s * x) ** 2)

        def body(carry, _):
            theta, state = carry
            updates, state = opt.update(theta / s**2, state)
            theta = theta + updates
            return (theta, state), (theta**2, 1 / (1e-8 + jnp.sqrt(state.nu)))

        _, (squares, g) = jax.lax.scan(body, (theta, state), None, length=burn + steps)
        return squares[burn:].mean(0), g[burn:].mean(0)

    squares, g = jax.jit(jax.vmap(chain))(jax.random.split(jax.random.key(0), chains))
    variance = np.asarray(squares.mean(0) / s**2)
    standard_error = np.asarray(squares.std(0, ddof=1) / np.sqrt(chains) / s**2)
    assert np.all(standard_error / variance < 0.012)
    np.testing.assert_allclose(variance, 1 / x**2, rtol=0.03)
    np.testing.assert_allclose(g.mean(0), s * x, rtol=0.03)


def _pytree_params():
    return {"w": jnp.ones((3, 2)), "b": (jnp.zeros(2), jnp.full((), 0.5))}


@pytest.mark.parametrize(
    "make",
    [
        lambda: sgld(optax.linear_schedule(0.1, 0.01, 10), key=0),
        lambda: psgld(1e-2, key=jax.random.key(1)),
        lambda: classp(0.1, threshold=0.05, power=1.0),
    ],
    ids=["sgld", "psgld", "classp"],
)
def test_transforms_work_on_a_pytree_inside_chain_and_jit(make):
    """The transforms take any pytree, chain with optax ones, run under `jit` and keep the
    gradient's structure and dtypes; their state carries through a `lax.scan`. (Under `vmap`:
    the chains of the pSGLD test, the grids of `continual_digits`.)"""
    params = _pytree_params()
    opt = optax.chain(optax.clip_by_global_norm(1.0), make())
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)

    @jax.jit
    def run(params):
        def body(carry, _):
            params, state = carry
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        return jax.lax.scan(body, (params, opt.init(params)), None, length=5)[0]

    out, state = run(params)
    assert jax.tree.structure(out) == jax.tree.structure(params)
    for new, old in zip(jax.tree.leaves(out), jax.tree.leaves(params), strict=True):
        assert new.shape == old.shape and new.dtype == old.dtype
        assert bool(jnp.all(jnp.isfinite(new))) and not bool(jnp.all(new == old))
    assert int(state[1].count) == 5


def test_sgld_at_zero_temperature_is_gradient_descent_and_draws_fresh_noise():
    grads = jnp.array([0.4, -0.6])

    @jax.jit
    def steps(grads):
        cold = sgld(0.1, key=0, temperature=0.0)
        zero, _ = cold.update(grads, cold.init(grads))
        opt = sgld(0.1, key=0)
        first, state = opt.update(grads, opt.init(grads))
        return zero, first, opt.update(grads, state)[0]

    zero, first, second = steps(grads)
    np.testing.assert_allclose(zero, -0.05 * grads, rtol=1e-12)
    assert not np.allclose(first, second)  # the key is split every step


def test_classp_suppresses_much_adjusted_weights():
    """After a history of large gradients on weight 0 and none on weight 1, the same gradient
    moves weight 0 less: `η g/(A + ε)^{1/p}` with `A` the accumulated `|g|^p`; with `p = 2`,
    `τ = 0` it is AdaGrad's step."""

    def run(opt, history):  # the updates of the last step and the final state
        def step(state, g):
            updates, state = opt.update(g, state)
            return state, updates

        state, updates = jax.lax.scan(step, opt.init(history[0]), history)
        return updates[-1], state

    history = jnp.array([[1.0, 0.0]] * 5 + [[0.5, 0.5]])
    updates, state = jax.jit(lambda h: run(classp(0.1, power=2.0, eps=1e-8), h))(history)
    np.testing.assert_allclose(state.total, [5.25, 0.25])
    expected = -0.1 * 0.5 / np.sqrt(np.array([5.25, 0.25]) + 1e-8)
    np.testing.assert_allclose(updates, expected, rtol=1e-12)
    assert abs(updates[0]) < abs(updates[1]) / 4
    history = jnp.array([[1.0, 0.3], [0.2, -0.6], [1.0, 0.3]])
    adagrad = optax.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0)
    pair = jax.jit(lambda h: (run(adagrad, h)[0], run(classp(0.1, power=2.0, eps=1e-30), h)[0]))
    expected, got = pair(history)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_classp_threshold_leaves_small_gradients_unapplied_and_unaccumulated():
    opt = classp(0.2, threshold=0.1, power=1.0, eps=1e-8)
    grads = {"a": jnp.array([0.05, 0.5, -0.2]), "b": jnp.array([-0.1])}
    updates, state = jax.jit(lambda g: opt.update(g, opt.init(g)))(grads)
    np.testing.assert_array_equal(updates["a"][0], 0.0)
    np.testing.assert_array_equal(updates["b"], 0.0)  # |g| = τ is not above it
    np.testing.assert_allclose(state.total["a"], [0.0, 0.5, 0.2])
    expected = -0.2 * np.array([0.5, -0.2]) / (np.array([0.5, 0.2]) + 1e-8)
    np.testing.assert_allclose(updates["a"][1:], expected, rtol=1e-12)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: sgld(-0.1, key=0), "learning_rate must be a positive number"),
        (lambda: sgld(0.0, key=0), "learning_rate must be a positive number"),
        (lambda: sgld(0.1, key=0, temperature=-1.0), "temperature must be a number >= 0"),
        (lambda: psgld(0.1, key=0, decay=1.0), "decay must be < 1"),
        (lambda: psgld(0.1, key=0, decay=-0.5), "decay must be a number >= 0"),
        (lambda: psgld(0.1, key=0, eps=0.0), "eps must be a positive number"),
        (lambda: classp(float("nan")), "learning_rate must be a positive number"),
        (lambda: classp(0.1, threshold=-1.0), "threshold must be a number >= 0"),
        (lambda: classp(0.1, power=0.0), "power must be a positive number"),
        (lambda: classp(0.1, eps=-1e-8), "eps must be a positive number"),
    ],
)
def test_bad_hyperparameters_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_bad_key_is_refused():
    with pytest.raises(TypeError, match=r"sgld needs key=jax.random.key\(seed\)"):
        sgld(0.1, key=jax.random.split(jax.random.key(0), 3))
    with pytest.raises(TypeError, match=r"psgld needs key=jax.random.key\(seed\)"):
        psgld(0.1, key=1.5)
