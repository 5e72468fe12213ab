"""Curvature tools (`jaxdyn.learning`) against dense Hessians (`jax.hessian`, `eigh`, traces) of
small models, in float64.

Compilation dominates on CPU, so each model's estimates come from one jitted program shared
by its checks (module fixtures).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import jaxdyn
from jaxdyn.learning import (
    WHICH,
    hessian_operator,
    hutchinson_trace,
    hvp,
    power_iteration,
    spectral_density,
    top_eigenpairs,
)

NUM_PROBES = 2000  # Hutchinson: standard errors of ~2% of tr(H) here
SLQ_PROBES, SLQ_STEPS = 40, 20


def mse(model, x, y):
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def dense_hessian(model, x, y) -> np.ndarray:
    """The Hessian of `mse` in `ravel_pytree` order of the model's floating-point arrays."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.hessian(lambda f: mse(eqx.combine(unravel(f), static), x, y))(flat))


@pytest.fixture(scope="module")
def mlp():
    """A tanh MLP 3 → 6 → 6 → 2 (80 parameters) on 20 random regression samples, its dense
    Hessian, and every estimate from one jitted program."""
    model = eqx.nn.MLP(3, 2, 6, 2, activation=jnp.tanh, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (20, 3))
    y = jax.random.normal(jax.random.key(2), (20, 2))
    hessian = dense_hessian(model, x, y)
    params = eqx.filter(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(3), len(leaves))
    v = treedef.unflatten(
        [jax.random.normal(k, p.shape) for k, p in zip(keys, leaves, strict=True)]
    )
    n = hessian.shape[0]

    @eqx.filter_jit
    def estimates(model, v, key):
        operator = hessian_operator(mse, model, x, y)
        return {
            "hvp": hvp(mse, model, v, x, y),
            "matvec": operator(ravel_pytree(v)[0]),
            "full": top_eigenpairs(operator, 4, key=key, num_steps=n),
            "partial": top_eigenpairs(operator, 4, key=key, num_steps=30),
            "power": power_iteration(operator, key=key),
            "trace": hutchinson_trace(operator, key=key, num_probes=NUM_PROBES),
            "slq_trace": hutchinson_trace(operator, key=key, num_probes=SLQ_PROBES),
            "slq": spectral_density(operator, key=key, num_probes=SLQ_PROBES, num_steps=SLQ_STEPS),
        }

    return hessian, v, estimates(model, v, jax.random.key(4))


def test_hvp_matches_the_dense_hessian(mlp):
    hessian, v, out = mlp
    flat_v = ravel_pytree(v)[0]
    expected = hessian @ flat_v
    scale = np.abs(expected).max()
    # the same products in another order of summation: agreement to rounding
    np.testing.assert_allclose(ravel_pytree(out["hvp"])[0], expected, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(out["matvec"], expected, rtol=0, atol=1e-12 * scale)
    assert jax.tree.structure(out["hvp"]) == jax.tree.structure(v)  # the pytree comes back


def test_lanczos_top_eigenpairs_match_eigh(mlp):
    hessian, _, out = mlp
    values, vectors = np.linalg.eigh(hessian)
    top, top_vectors = values[::-1][:4], vectors[:, ::-1][:, :4]
    assert np.all(np.diff(top) < -0.1)  # separated, so each eigenvector is defined up to sign
    # n steps with full reorthogonalisation: all of the spectrum, to rounding
    full = out["full"]
    np.testing.assert_allclose(full.values, top, rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.abs(full.vectors @ top_vectors), np.eye(4), rtol=0, atol=1e-8)
    assert np.all(full.residuals <= 1e-8)
    # 30 of 80 steps: the extreme values have converged; a Ritz value is within its residual of
    # an eigenvalue (measured 1e-14 against residuals up to 2e-7: errors go as residual²/gap)
    partial = out["partial"]
    np.testing.assert_allclose(partial.values, top, rtol=0, atol=1e-8)
    assert np.all(np.abs(partial.values - top) <= partial.residuals + 1e-12)
    gram = partial.vectors @ partial.vectors.T
    np.testing.assert_allclose(gram, np.eye(4), rtol=0, atol=1e-10)  # orthonormal Ritz vectors


def test_power_iteration_finds_the_largest_magnitude(mlp):
    hessian, _, out = mlp
    values = np.linalg.eigvalsh(hessian)
    largest = values[np.argmax(np.abs(values))]
    pair, info = out["power"]
    assert bool(info.converged) and int(info.iterations) < 500
    assert float(info.error) <= np.finfo(np.float64).eps ** 0.5  # the default tol
    # residual 1.5e-8 → eigenvalue error ~ residual² |λ| / gap, far below 1e-8
    np.testing.assert_allclose(pair.values[0], largest, rtol=1e-8)
    np.testing.assert_allclose(np.linalg.norm(pair.vectors[0]), 1.0, rtol=1e-12)


def test_hutchinson_traces_within_standard_errors(mlp):
    hessian, _, out = mlp
    est = out["trace"]
    square = hessian @ hessian
    # within 4 standard errors of the exact traces (a 6e-5 chance of failing for a correct
    # estimator; the key is fixed, so the test is deterministic)
    assert abs(est.trace - np.trace(hessian)) <= 4 * est.trace_se
    assert abs(est.trace_square - np.trace(square)) <= 4 * est.trace_square_se
    # the standard errors against the Rademacher variances 2 Σ_{i≠j} A_ij²: the sample standard
    # deviation over 2000 probes has a relative spread of ~2-3% here, so 10% is ~4 of them
    for se, matrix in [(est.trace_se, hessian), (est.trace_square_se, square)]:
        exact = np.sqrt(2 * (np.sum(matrix**2) - np.sum(np.diag(matrix) ** 2)) / NUM_PROBES)
        np.testing.assert_allclose(se, exact, rtol=0.1)


def test_spectral_density_integrates_to_one_with_the_hessians_moments(mlp):
    hessian, _, out = mlp
    n = hessian.shape[0]
    slq = out["slq"]
    grid, density, sigma = np.asarray(slq.grid), np.asarray(slq.density), float(slq.sigma)
    np.testing.assert_allclose(np.sum(slq.weights, axis=1), 1.0, rtol=1e-12)
    # the grid spans the nodes ± 6σ at ~0.6σ spacing: the trapezoid rule is exact to ~1e-9
    np.testing.assert_allclose(np.trapezoid(density, grid), 1.0, atol=1e-6)
    # Gauss quadrature of t and t² per probe is exact (degree < 2m): n times its mean is
    # Hutchinson's estimate from the same Rademacher probes (same key), to rounding
    first = np.sum(slq.weights * slq.nodes, axis=1)
    second = np.sum(slq.weights * slq.nodes**2, axis=1)
    np.testing.assert_allclose(n * first.mean(), out["slq_trace"].trace, rtol=1e-10)
    np.testing.assert_allclose(n * second.mean(), out["slq_trace"].trace_square, rtol=1e-10)
    # the density's moments: those of the quadrature, plus σ² from the Gaussian (grid rule)
    np.testing.assert_allclose(np.trapezoid(grid * density, grid), first.mean(), rtol=1e-6)
    np.testing.assert_allclose(
        np.trapezoid(grid**2 * density, grid), second.mean() + sigma**2, rtol=1e-6
    )
    # and tr(H)/n, tr(H²)/n within 4 standard errors of the 40 probes
    for values, exact in [(first, np.trace(hessian) / n), (second, np.sum(hessian**2) / n)]:
        assert abs(values.mean() - exact) <= 4 * values.std(ddof=1) / np.sqrt(SLQ_PROBES)


@pytest.fixture(scope="module")
def repeated():
    """A 12 × 12 matrix with eigenvalues 3, −1, 0.5, each four times (a Krylov space of
    dimension 3: Lanczos must restart twice), and the estimates from one program."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(12, 12)))
    matrix = jnp.asarray(q @ np.diag(np.repeat([3.0, -1.0, 0.5], 4)) @ q.T)

    @jax.jit
    def estimates(matrix, key):
        pairs = {w: top_eigenpairs(matrix, 5, key=key, num_steps=12, which=w) for w in WHICH}
        traces = [hutchinson_trace(matrix, key=key, num_probes=10, batch_size=b) for b in (None, 3)]
        grid = jnp.linspace(-2.0, 4.0, 601)
        densities = [
            spectral_density(matrix, key=key, num_probes=10, num_steps=4, grid=grid, sigma=0.1,
                             batch_size=b)
            for b in (None, 3)
        ]  # fmt: skip
        return pairs, power_iteration(-matrix, key=key), traces, densities

    return matrix, *estimates(matrix, jax.random.key(0))


def test_lanczos_finds_repeated_eigenvalues_at_either_end(repeated):
    matrix, pairs, *_ = repeated
    expected = {
        "largest": [3, 3, 3, 3, 0.5],
        "smallest": [-1, -1, -1, -1, 0.5],
        "magnitude": [3, 3, 3, 3, -1],
    }
    for which, values in expected.items():
        pair = pairs[which]
        np.testing.assert_allclose(pair.values, values, rtol=0, atol=1e-12)
        residual = matrix @ pair.vectors.T - pair.vectors.T * pair.values
        np.testing.assert_allclose(np.linalg.norm(residual, axis=0), 0, atol=1e-12)
        np.testing.assert_allclose(pair.vectors @ pair.vectors.T, np.eye(5), atol=1e-12)


def test_power_iteration_keeps_the_sign(repeated):
    _, _, (pair, info), *_ = repeated
    assert bool(info.converged)
    np.testing.assert_allclose(pair.values, [-3.0], rtol=1e-12)  # gap ratio 1/3: fast


def test_probes_in_batches_give_the_same_estimates(repeated):
    """`batch_size` only changes how the probes are scheduled (3 at a time over 10: a
    remainder), not their values; an explicit grid and width are used as given."""
    _, _, _, traces, densities = repeated
    for whole, batched in zip(*[jax.tree.leaves(t) for t in traces], strict=True):
        np.testing.assert_allclose(batched, whole, rtol=1e-12)
    whole, batched = densities
    np.testing.assert_allclose(batched.density, whole.density, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(whole.grid, np.linspace(-2.0, 4.0, 601), rtol=0, atol=1e-15)
    assert float(whole.sigma) == 0.1
    # three distinct eigenvalues: the quadrature puts its weight on three nodes, one at each,
    # with the spectrum's weight 1/3 each on average over probes
    for value in (3.0, -1.0, 0.5):
        near = np.abs(np.asarray(whole.nodes) - value) < 1e-8
        weight = np.sum(np.where(near, whole.weights, 0.0), axis=1)
        assert abs(weight.mean() - 1 / 3) <= 4 * weight.std(ddof=1) / np.sqrt(10)


def test_power_iteration_reports_non_convergence():
    matrix = jnp.diag(jnp.array([1.0, -1.0, 0.5]))  # ±1: the iterates oscillate forever
    key = jax.random.key(0)
    pair, info = power_iteration(matrix, key=key, max_steps=30, on_failure="return")
    assert not bool(info.converged) and int(info.iterations) == 30
    assert np.isfinite(pair.values).all()
    pair, info = power_iteration(matrix, key=key, max_steps=30, on_failure="nan")
    assert np.isnan(pair.values).all() and np.isnan(pair.vectors).all()
    with pytest.raises(eqx.EquinoxRuntimeError, match="max_steps=30"):
        power_iteration(matrix, key=key, max_steps=30, on_failure="raise")


def test_sharpness_is_tracked_during_fit():
    """λ_max every 10 steps of full-batch gradient descent, through `fit`'s `eval_fn`."""
    model = eqx.nn.MLP(2, 1, 8, 1, activation=jnp.tanh, key=jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (32, 2))
    y = jnp.sin(x[:, :1]) * x[:, 1:]

    def eval_fn(model, key):
        operator = hessian_operator(mse, model, x, y)
        lanczos = top_eigenpairs(operator, 1, key=key, num_steps=operator.size)
        power, _ = power_iteration(operator, key=key)
        return {"sharpness": lanczos.values[0], "power": power.values[0]}

    result = jaxdyn.fit(
        lambda m, batch, key: mse(m, *batch), model, (x, y), optax.sgd(0.5), steps=40,
        batch_size=None, key=jax.random.key(3), chunk=10, eval_fn=eval_fn, progress=False,
    )  # fmt: skip
    assert [e["step"] for e in result.evaluations] == [10, 20, 30, 40]
    sharpness = [e["validation.sharpness"] for e in result.evaluations]
    assert len(set(sharpness)) == 4  # it moves as the model trains
    last = np.linalg.eigvalsh(dense_hessian(result.model, x, y))
    np.testing.assert_allclose(sharpness[-1], last[-1], rtol=1e-10)
    # the largest eigenvalue here is also the largest in magnitude (power iteration's)
    assert last[-1] > abs(last[0])
    np.testing.assert_allclose(result.evaluations[-1]["validation.power"], last[-1], rtol=1e-8)


def test_bad_arguments_are_named():
    model = eqx.nn.MLP(2, 1, 4, 1, key=jax.random.key(0))
    x, y = jnp.ones((3, 2)), jnp.ones((3, 1))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="loss_fn must return a real scalar"):
        hessian_operator(lambda m, x: jax.vmap(m)(x), model, x)
    with pytest.raises(ValueError, match="params has no floating-point arrays"):
        hessian_operator(lambda p: 0.0, {"n": 3})
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        hvp("mse", model, model, x, y)
    with pytest.raises(ValueError, match="v must have the structure"):
        hvp(mse, model, {"w": jnp.ones(3)}, x, y)
    matrix = jnp.eye(4)
    with pytest.raises(ValueError, match=r"square matrix \(n, n\), got shape \(4, 3\)"):
        top_eigenpairs(jnp.ones((4, 3)), 1, key=key)
    with pytest.raises(TypeError, match="operator must be a HessianOperator"):
        hutchinson_trace(lambda v: v, key=key)
    with pytest.raises(ValueError, match="k=5 exceeds the operator's size 4"):
        top_eigenpairs(matrix, 5, key=key)
    with pytest.raises(ValueError, match="num_steps must be an int >= 2"):
        top_eigenpairs(matrix, 2, key=key, num_steps=1)
    with pytest.raises(ValueError, match="num_steps=5 exceeds the operator's size 4"):
        spectral_density(matrix, key=key, num_steps=5)
    with pytest.raises(ValueError, match="unknown which='middle'"):
        top_eigenpairs(matrix, 1, key=key, which="middle")
    with pytest.raises(TypeError, match="needs key=jax.random.key"):
        power_iteration(matrix, key=0)
    with pytest.raises(ValueError, match="unknown on_failure='ignore'"):
        power_iteration(matrix, key=key, on_failure="ignore")
    with pytest.raises(ValueError, match="tol must be a positive number"):
        power_iteration(matrix, key=key, tol=0.0)
    with pytest.raises(ValueError, match="num_probes must be an int >= 2"):
        hutchinson_trace(matrix, key=key, num_probes=1)
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        spectral_density(matrix, key=key, sigma=-1.0)
    with pytest.raises(ValueError, match="grid must be a number of points or a 1-D array"):
        spectral_density(matrix, key=key, grid=jnp.ones((2, 2)))
