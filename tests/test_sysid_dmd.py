"""DMD, Hankel DMD and HAVOK (`jaxdyn.sysid`) against closed forms, finite differences (float64,
tests/conftest.py) and PyDMD on the same data."""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from jaxdyn.sysid import (
    dmd,
    hankel,
    hankel_dmd,
    havok,
    optimal_hard_threshold,
    truncation_rank,
)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# A linear map with known eigenvalues: a rotation-contraction pair 0.9 e^{±0.3i}, 0.95 and 0.5,
# in a non-orthogonal basis.
EIGENVALUES = np.array([0.9 * np.exp(0.3j), 0.9 * np.exp(-0.3j), 0.95, 0.5])


def _linear_map() -> np.ndarray:
    rotation = 0.9 * np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    block = np.zeros((4, 4))
    block[:2, :2], block[2, 2], block[3, 3] = rotation, 0.95, 0.5
    basis = np.random.default_rng(0).normal(size=(4, 4)) + 2 * np.eye(4)
    return basis @ block @ np.linalg.inv(basis)


def _trajectory(A: np.ndarray, x0: np.ndarray, steps: int) -> np.ndarray:
    xs = [x0]
    for _ in range(steps - 1):
        xs.append(A @ xs[-1])
    return np.stack(xs)


def _sorted(values) -> np.ndarray:
    values = np.asarray(values)
    return values[np.lexsort((values.imag, values.real))]


@functools.cache
def _lorenz_x(t1: float, dt: float = 0.001) -> np.ndarray:
    """x of the Lorenz system from (-8, 8, 27) (Brunton et al. 2017), LSODA at 1e-12 as PyDMD's
    HAVOK tutorial; both libraries get this same array."""

    def lorenz(t, s):
        return [10 * (s[1] - s[0]), s[0] * (28 - s[2]) - s[1], s[0] * s[1] - 8 / 3 * s[2]]

    t = np.arange(round(t1 / dt)) * dt
    sol = solve_ivp(lorenz, [0, t[-1]], [-8, 8, 27], t_eval=t, rtol=1e-12, atol=1e-12,
                    method="LSODA")  # fmt: skip
    return sol.y[0]


def test_dmd_recovers_a_linear_map():
    A = _linear_map()
    X = _trajectory(A, np.array([1.0, -0.5, 0.3, 2.0]), 30)
    result = jax.jit(functools.partial(dmd, rank=4, dt=0.1))(X)
    # Exact data of a rank-4 linear map: DMD's operator is A itself, so eigenvalues, the
    # eigen-relation A Φ = Φ Λ and the reconstruction hold to rounding (float64, cond(basis) ~ 10).
    np.testing.assert_allclose(_sorted(result.eigenvalues), _sorted(EIGENVALUES), atol=1e-10)
    np.testing.assert_allclose(
        _sorted(result.continuous_eigenvalues), _sorted(np.log(EIGENVALUES) / 0.1), atol=1e-9
    )
    modes, lam = np.asarray(result.modes), np.asarray(result.eigenvalues)
    np.testing.assert_allclose(A @ modes, modes * lam, atol=1e-10)
    ts = 0.1 * np.arange(40)  # 30 fitted snapshots, then 10 predicted
    np.testing.assert_allclose(result.reconstruct(ts), _trajectory(A, X[0], 40), atol=1e-9)
    # From a new initial condition, and from separate snapshot pairs Y = X Aᵀ.
    x0 = np.array([0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(result.reconstruct(ts[:5], x0), _trajectory(A, x0, 5), atol=1e-9)
    pairs = np.random.default_rng(1).normal(size=(6, 4))
    paired = dmd(pairs, pairs @ A.T, rank=4)
    np.testing.assert_allclose(_sorted(paired.eigenvalues), _sorted(EIGENVALUES), atol=1e-10)


def test_optimal_hard_threshold_and_ranks_match_gavish_donoho_and_pydmd():
    from pydmd.utils import compute_rank

    # Gavish & Donoho (2014): a square matrix's threshold is ω(1) ≈ 2.858 times the median.
    s = np.array([10.0, 3.0, 1.0, 0.5, 0.2])
    assert float(optimal_hard_threshold(s, (5, 5))) == pytest.approx(2.86 * 1.0, abs=1e-12)
    beta = 5 / 500  # either orientation of a 5 × 500 matrix
    omega = 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43
    for shape in ((5, 500), (500, 5)):
        assert float(optimal_hard_threshold(s, shape)) == pytest.approx(omega, rel=1e-12)
    # A rank-3 signal under white noise: the threshold finds 3, as PyDMD's svd_rank=0 does;
    # and an energy fraction keeps what PyDMD keeps.
    rng = np.random.default_rng(2)
    signal = rng.normal(size=(60, 3)) @ rng.normal(size=(3, 200))
    M = signal + 0.05 * rng.normal(size=signal.shape)
    s = np.linalg.svd(M, compute_uv=False)
    assert truncation_rank(s, M.shape, "optimal") == compute_rank(M, 0) == 3
    for fraction in (0.5, 0.9, 0.999):
        assert truncation_rank(s, M.shape, fraction) == compute_rank(M, fraction)
    assert dmd(M.T, rank="optimal").eigenvalues.shape == (3,)


def test_hankel_matches_pydmd_layout():
    from pydmd import HAVOK

    x = np.arange(14.0).reshape(7, 2)  # 7 samples of 2 channels
    ours = np.asarray(hankel(x, 3))
    assert ours.shape == (5, 6)
    np.testing.assert_array_equal(ours.T, HAVOK(delays=3).hankel(x.T))
    np.testing.assert_array_equal(hankel(x[:, 0], 7), x[None, :, 0])


def test_hankel_dmd_finds_the_frequencies_of_a_sum_of_sines():
    dt, omegas = 0.05, np.array([1.0, 2.7])
    t = dt * np.arange(400)
    x = np.sin(omegas[0] * t) + 0.5 * np.sin(omegas[1] * t + 0.4)
    result = hankel_dmd(x, 20, rank=4, dt=dt)
    # Two undamped sines: four eigenvalues ±iω on the unit circle (exact data, rounding only).
    omega = np.asarray(result.continuous_eigenvalues)
    np.testing.assert_allclose(np.sort(omega.imag), [-2.7, -1.0, 1.0, 2.7], atol=1e-8)
    np.testing.assert_allclose(omega.real, 0.0, atol=1e-8)
    np.testing.assert_allclose(result.reconstruct(t)[:, 0], x, atol=1e-8)
    # With noise of 1% of the amplitude the optimal hard threshold keeps the four oscillating
    # components and nothing else, and their frequencies stay within 1% (noise ~ 1e-2).
    noisy = x + 0.01 * np.random.default_rng(3).normal(size=x.shape)
    result = hankel_dmd(noisy, 20, rank="optimal", dt=dt)
    assert result.eigenvalues.shape == (4,)
    np.testing.assert_allclose(
        np.sort(np.asarray(result.continuous_eigenvalues).imag), [-2.7, -1.0, 1.0, 2.7], rtol=1e-2
    )


@pytest.fixture(scope="module")
def lorenz_fits():
    """PyDMD's HAVOK and ours (both stencils, one jitted program) on 10 time units of x."""
    from pydmd import HAVOK

    x = _lorenz_x(10.0)
    reference = HAVOK(svd_rank=15, delays=100).fit(x, 0.001)

    @jax.jit
    def fits(x):
        out = {}
        for derivative in ("central2", "central4"):
            model = havok(x, 0.001, delays=100, rank=15, derivative=derivative)
            out[derivative] = (model, model.reconstruct())
        return out

    return x, reference, fits(x)


def test_havok_matches_pydmd(lorenz_fits):
    x, reference, fits = lorenz_fits
    model, reconstruction = fits["central2"]
    # Singular vectors are defined up to sign: align ours with PyDMD's, then A_ij scales by
    # s_i s_j and B_i by s_i s_r.
    sign = np.sign(np.sum(np.asarray(model.coordinates) * reference.delay_embeddings, axis=0))
    np.testing.assert_allclose(
        np.asarray(model.coordinates) * sign, reference.delay_embeddings, atol=1e-9
    )
    np.testing.assert_allclose(model.singular_values[:15], reference.singular_vals[:15], rtol=1e-10)
    # Same data, same stencil, same regression, same first-order-hold simulation, and the same
    # SVD algorithm (LAPACK gesdd, through jnp and np): agreement to rounding, relative 1e-9.
    # (sigma_15 / sigma_1 ~ 3e-13 here, so another SVD algorithm, e.g. QR first, agrees only to
    # ~eps sigma_1 / sigma_15 ~ 1e-4 in the last coordinate: the float64 floor of rank 15.)
    A, B = np.asarray(model.A), np.asarray(model.B)
    scale = np.abs(reference.A).max()
    np.testing.assert_allclose(A * np.outer(sign[:-1], sign[:-1]), reference.A, atol=1e-9 * scale)
    np.testing.assert_allclose(B * sign[:-1] * sign[-1], reference.B[:, 0], atol=1e-9 * scale)
    np.testing.assert_allclose(
        reconstruction, reference.reconstructed_data, atol=1e-9 * np.abs(x).max()
    )
    rel = np.linalg.norm(reconstruction - x) / np.linalg.norm(x)
    assert rel < 0.05  # the target, on this short window too


def test_havok_fourth_order_stencil_is_the_papers(lorenz_fits):
    x, reference, fits = lorenz_fits
    model, reconstruction = fits["central4"]
    # Second method: Brunton et al.'s fourth-order central differences of PyDMD's coordinates
    # (interior rows), regressed by NumPy.
    sign = np.sign(np.sum(np.asarray(model.coordinates) * reference.delay_embeddings, axis=0))
    v = reference.delay_embeddings * sign
    dv = (-v[4:] + 8 * v[3:-1] - 8 * v[1:-3] + v[:-4]) / (12 * 0.001)
    operator = np.linalg.lstsq(v[2:-2], dv[:, :-1], rcond=None)[0].T
    np.testing.assert_allclose(model.A, operator[:, :-1], atol=1e-9 * np.abs(operator).max())
    np.testing.assert_allclose(model.B, operator[:, -1], atol=1e-9 * np.abs(operator).max())
    assert np.linalg.norm(reconstruction - x) / np.linalg.norm(x) < 0.05


def test_jit_and_vmap_over_trajectories():
    A = _linear_map()
    x0s = np.random.default_rng(4).normal(size=(3, 4))
    Xs = np.stack([_trajectory(A, x0, 12) for x0 in x0s])
    batched = jax.jit(jax.vmap(functools.partial(dmd, rank=4)))(Xs)
    assert batched.eigenvalues.shape == (3, 4) and batched.modes.shape == (3, 4, 4)
    for i in range(3):  # each trajectory alone gives the same operator and reconstruction
        np.testing.assert_allclose(_sorted(batched.eigenvalues[i]), _sorted(EIGENVALUES), atol=1e-9)
        one = jax.tree.map(lambda leaf, i=i: leaf[i], batched)
        np.testing.assert_allclose(one.reconstruct(np.arange(12.0)), Xs[i], atol=1e-9)

    series = np.stack([_lorenz_x(10.0)[:3000], _lorenz_x(10.0)[3000:6000]])
    fit = functools.partial(havok, dt=0.001, delays=30, rank=5)
    models = jax.jit(jax.vmap(fit))(series)
    assert models.A.shape == (2, 4, 4) and models.forcing.shape == (2, 2971)
    for i in range(2):
        single = fit(series[i])
        # A is invariant to the sign of each coordinate only up to D A D: compare |A|.
        np.testing.assert_allclose(np.abs(models.A[i]), np.abs(single.A), rtol=1e-8, atol=1e-8)


def test_gradients_through_dmd_eigenvalues():
    dt = 0.1

    def growth_rate(theta):
        # A damped rotation e^{-θt}(cos t, sin t): DMD's continuous eigenvalues are -θ ± i.
        t = dt * jnp.arange(20)
        X = jnp.exp(-theta * t)[:, None] * jnp.stack([jnp.cos(t), jnp.sin(t)], axis=1)
        return jnp.sum(dmd(X, rank=2, dt=dt).continuous_eigenvalues.real)

    value, grad = jax.jit(jax.value_and_grad(growth_rate))(0.3)
    assert float(value) == pytest.approx(-0.6, abs=1e-10)
    assert float(grad) == pytest.approx(-2.0, abs=1e-8)  # closed form: d(-2θ)/dθ

    # Data gradient of Σ|λ| on the 4-D linear map's trajectory against central differences
    # (float64; step 1e-6 leaves an error ~1e-10 relative to the O(1) derivative).
    X = _trajectory(_linear_map(), np.array([1.0, -0.5, 0.3, 2.0]), 15)
    X = X + 0.01 * np.random.default_rng(5).normal(size=X.shape)  # a full-rank fit, rank 4

    def spectral_radius_sum(X):
        return jnp.sum(jnp.abs(dmd(X, rank=4).eigenvalues))

    direction = np.random.default_rng(6).normal(size=X.shape)
    f = jax.jit(spectral_radius_sum)
    _, tangent = jax.jit(lambda X, d: jax.jvp(spectral_radius_sum, (X,), (d,)))(X, direction)
    h = 1e-6
    fd = (f(X + h * direction) - f(X - h * direction)) / (2 * h)
    assert float(tangent) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: dmd(np.ones(5), rank=1), "X"),
        (lambda: dmd(np.ones((5, 2)), np.ones((4, 2)), rank=1), "Y"),
        (lambda: dmd(np.eye(5)[:, :3], rank=4), "rank"),
        (lambda: dmd(np.eye(5)[:, :3], rank=0.0), "rank"),
        (lambda: dmd(np.eye(5)[:, :3], rank="best"), "rank"),
        (lambda: jax.jit(functools.partial(dmd, rank="optimal"))(np.eye(5)), "rank"),
        (lambda: hankel(np.ones(5), 6), "delays"),
        (lambda: hankel(np.ones((5, 2, 2)), 2), "x"),
        (lambda: hankel_dmd(np.ones(5), 5, rank=1), "delays"),
        (lambda: havok(np.ones((50, 2)), 0.1, delays=5, rank=3), "x"),
        (lambda: havok(np.ones(50), 0.0, delays=5, rank=3), "dt"),
        (lambda: havok(np.ones(50), 0.1, delays=5, rank=6), "rank"),
        (lambda: havok(np.ones(50), 0.1, delays=5, rank=1), "rank"),
        (lambda: havok(np.ones(50), 0.1, delays=50, rank=3), "delays"),
        (lambda: havok(np.ones(50), 0.1, delays=5, rank=3, derivative="spline"), "derivative"),
        (lambda: optimal_hard_threshold(np.ones(3), (5, 4)), "singular_values"),
    ],
)
def test_bad_input_names_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_havok_lorenz_seed_picks_the_initial_condition():
    """The experiment's seed: 0 is the paper's y0 exactly; s > 0 perturbs it by
    y0_spread · N(0, I) from key(s): distinct, reproducible, at the spread's scale (each of the
    3 components within 5 sd)."""
    from jaxdyn.experiments import havok_lorenz, load

    def start(seed):
        _, cfg = load(CONFIGS / "havok_lorenz.yaml", [f"seed={seed}", "data.y0_spread=0.5"])
        return havok_lorenz.initial_condition(cfg)

    starts = {seed: start(seed) for seed in (0, 1, 2)}
    np.testing.assert_array_equal(starts[0], [-8.0, 8.0, 27.0])
    np.testing.assert_array_equal(start(2), starts[2])
    for seed in (1, 2):
        shift = np.abs(starts[seed] - starts[0])
        assert 0.0 < shift.max() < 5 * 0.5, (seed, starts[seed])
    assert not np.array_equal(starts[1], starts[2])
