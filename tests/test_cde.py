"""cdeint, the irregular-data utilities and NeuralCDE (float64, see conftest.py)."""

import functools

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_difference, compiled
from jax.scipy.linalg import expm

from jaxdyn.data import (
    augment,
    cubic_path,
    drop_observations,
    fill_forward,
    hermite_coefficients,
    observation_counts,
    observation_mask,
)
from jaxdyn.models.cde import CDEField, NeuralCDE
from jaxdyn.solve import RESULTS
from jaxdyn.solve._cde import cdeint

nan = np.nan


def irregular_grid(count: int = 12, seed: int = 0) -> jax.Array:
    rng = np.random.default_rng(seed)
    return jnp.asarray(np.concatenate([[0.0], np.sort(rng.uniform(0.0, 3.0, count - 2)), [3.0]]))


@jax.jit
def scalar_path(ts):
    """A smooth scalar control sampled at `ts`, as a backward-Hermite cubic path (one compiled
    program: eager, each operation of the spline fit compiles on its own)."""
    x = jnp.sin(2 * ts) + 0.3 * ts
    return cubic_path(ts, hermite_coefficients(ts, x[:, None]))


A = jnp.array([[0.0, 1.0], [-1.0, -0.2]])
Y0 = jnp.array([1.0, 0.5])


def linear_field(t, y, args):
    """dy = θ A y dX for a scalar X, with y(t) = exp(θ A (X_t - X_0)) y0."""
    theta = 1.0 if args is None else args
    return (theta * A @ y)[:, None]


@eqx.filter_jit  # eager, every primitive under the vmap compiles on its own
def linear_exact(path, ts, theta=1.0):
    x0 = path.evaluate(ts[0])[0]
    return jax.vmap(lambda t: expm(theta * A * (path.evaluate(t)[0] - x0)) @ Y0)(ts)


# --- cdeint against closed forms ----------------------------------------------------------


@pytest.mark.parametrize(
    "solver, options, tol",
    [
        # Adaptive at 1e-8 tolerances: the global error is a small multiple of them.
        ("tsit5", dict(rtol=1e-8, atol=1e-8), 1e-7),
        # Fixed steps cross the kinks of dX/dt at the knots: second order, 4e-4 at h = 0.01.
        ("heun", dict(dt0=0.01), 1e-3),
    ],
)
def test_linear_cde_matches_matrix_exponential(solver, options, tol):
    ts = irregular_grid()
    path = scalar_path(ts)
    sol = compiled(cdeint, linear_field, path, y0=Y0, ts=ts, solver=solver, **options)
    assert sol.ys.shape == (ts.shape[0], 2)
    assert bool(sol.succeeded)
    np.testing.assert_allclose(sol.ys, linear_exact(path, ts), atol=tol)


def test_two_channels_with_commuting_matrices():
    # dy = A1 y dX1 + A2 y dX2 with A2 = A1², so y(t) = exp(A1 ΔX1 + A2 ΔX2) y0.
    ts = np.asarray(irregular_grid(15, seed=1))
    mats = jnp.stack([A, A @ A], axis=-1)  # (hidden, hidden, channels)

    def field(t, y, args):
        return jnp.einsum("ijc,j->ic", mats, y)

    @jax.jit  # one program (eager, each operation compiles on its own); ts stays concrete
    def solve_and_exact():
        x = jnp.stack([jnp.sin(2 * ts), jnp.cos(ts) + ts**2 / 4], axis=-1)
        path = cubic_path(ts, hermite_coefficients(ts, x))
        sol = cdeint(field, path, Y0, ts, rtol=1e-9, atol=1e-9)
        dx = jax.vmap(path.evaluate)(ts) - path.evaluate(ts[0])
        return sol.ys, jax.vmap(lambda d: expm(jnp.einsum("ijc,c->ij", mats, d)) @ Y0)(dx)

    ys, exact = solve_and_exact()
    np.testing.assert_allclose(ys, exact, atol=1e-7)  # 100 × tolerance, as above


def test_adaptive_steps_stop_at_knots_and_count_fevals():
    ts = irregular_grid()
    path = scalar_path(ts)
    evaluations = []

    def counted(t, y, args):
        jax.debug.callback(lambda: evaluations.append(1))
        return linear_field(t, y, args)

    sol = jax.jit(lambda: cdeint(counted, path, Y0, ts))()  # one program (eager: 19)
    jax.block_until_ready(sol.ys)
    jax.effects_barrier()
    # Measured: 38 steps (112 without stepping to the knots) and error 3e-6 at tol 1e-6.
    assert int(sol.stats.num_steps) < 60
    np.testing.assert_allclose(sol.ys, linear_exact(path, ts), atol=2e-5)
    # num_fevals misses only re-evaluations after steps rejected just past a knot.
    assert 0 <= len(evaluations) - int(sol.stats.num_fevals) <= 6


GRAD_TS = irregular_grid(8)
GRAD_X = (jnp.sin(2 * GRAD_TS) + 0.3 * GRAD_TS)[:, None]  # scalar_path's observations


def observed_loss(theta, shift, adjoint):
    """y_T summed, for dy = θ A y dX with the observation x_3 moved by `shift` (the path
    through the observations is differentiable too)."""
    path = cubic_path(GRAD_TS, hermite_coefficients(GRAD_TS, GRAD_X.at[3, 0].add(shift)))
    ends = GRAD_TS[jnp.array([0, -1])]
    sol = cdeint(linear_field, path, Y0, ends, args=theta, rtol=1e-10, atol=1e-10,
                 adjoint=adjoint)  # fmt: skip
    return jnp.sum(sol.ys[-1])


# Jitted, theta and shift stay arrays: in `args` a Python float would be static (a recompile).
@functools.partial(jax.jit, static_argnames="adjoint")
def loss_and_gradients(theta, shift, adjoint):
    return jax.value_and_grad(observed_loss, argnums=(0, 1))(theta, shift, adjoint)


@pytest.fixture(scope="module")
def references():
    """At (θ, shift) = (0.7, 0): central differences in θ and in x_3, on the loss values of
    the compiled backsolve-adjoint program (the forward solve is the same for every adjoint),
    and the closed-form d y_T / dθ."""

    def loss(theta, shift):
        return loss_and_gradients(theta, shift, adjoint="backsolve")[0]

    def exact_loss(theta):
        return jnp.sum(linear_exact(scalar_path(GRAD_TS), GRAD_TS, theta)[-1])

    return (
        central_difference(lambda theta: loss(theta, 0.0), 0.7, h=1e-5),
        central_difference(lambda shift: loss(0.7, shift), 0.0, h=1e-5),
        float(jax.jit(jax.grad(exact_loss))(0.7)),
    )


# The continuous adjoint is cdeint's own branch (the field closure-converted); the default
# checkpointed one is only an adjoint name (test_solve) and differentiates the NeuralCDE below.
@pytest.mark.parametrize("adjoint", ["backsolve"])
def test_gradient_matches_finite_differences_and_closed_form(adjoint, references):
    """d y_T / dθ against central differences and the closed form, and d y_T / d x_3 (through
    the spline) against central differences."""
    d_theta, d_shift = map(float, loss_and_gradients(0.7, 0.0, adjoint=adjoint)[1])
    fd_theta, fd_shift, exact_theta = references
    # Central differences of a solve at tol 1e-10 with h = 1e-5: error ~ 1e-10 / 1e-5 + h².
    assert d_theta == pytest.approx(fd_theta, abs=1e-5)
    assert d_theta == pytest.approx(exact_theta, abs=1e-6)
    assert d_shift != 0.0
    assert d_shift == pytest.approx(fd_shift, abs=1e-5)


def test_failure_policies():
    ts = irregular_grid()
    path = scalar_path(ts)
    with pytest.raises(Exception, match="max_steps=3"):
        cdeint(linear_field, path, Y0, ts, max_steps=3)
    sol = cdeint(linear_field, path, Y0, ts, max_steps=3, on_failure="nan")
    assert bool(jnp.all(jnp.isnan(sol.ys)))
    sol = cdeint(linear_field, path, Y0, ts, max_steps=3, on_failure="return")
    assert sol.result == RESULTS.max_steps_reached


# --- clear errors -------------------------------------------------------------------------


def test_errors_name_the_bad_argument():
    ts = irregular_grid()
    path = scalar_path(ts)
    with pytest.raises(ValueError, match=r"\(hidden, channels\) = \(2, 1\).*got \(2,\)"):
        cdeint(lambda t, y, a: A @ y, path, Y0, ts)
    with pytest.raises(ValueError, match="path channels 1"):
        cdeint(lambda t, y, a: jnp.zeros((2, 3)), path, Y0, ts)
    scalar_values = dfx.CubicInterpolation(ts, dfx.backward_hermite_coefficients(ts, ts))
    with pytest.raises(ValueError, match=r"shape \(channels,\), got shape \(\)"):
        cdeint(linear_field, scalar_values, Y0, ts)
    with pytest.raises(TypeError, match="path must be a Diffrax path"):
        cdeint(linear_field, jnp.zeros((12, 1)), Y0, ts)
    with pytest.raises(ValueError, match="within the path's interval"):
        cdeint(linear_field, path, Y0, jnp.array([0.0, 4.0]))
    with pytest.raises(ValueError, match=r"y0 must be .* shape \(hidden,\)"):
        cdeint(linear_field, path, jnp.ones((3, 2)), ts)
    with pytest.raises(ValueError, match="unknown on_failure"):
        cdeint(linear_field, path, Y0, ts, on_failure="ignore")
    with pytest.raises(ValueError, match="strictly increasing"):
        cdeint(linear_field, path, Y0, ts[::-1])
    with pytest.raises(ValueError, match=r"coefficients of one series .* \(11, channels\)"):
        cubic_path(ts, hermite_coefficients(ts, jnp.ones((2, 12, 1))))


# --- irregular-data utilities -------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5, 0.7])
def test_drop_observations_drops_the_requested_fraction_per_series(rate):
    values = jnp.ones((6, 20, 3))
    dropped = drop_observations(values, rate, key=jax.random.key(0))
    missing = jnp.isnan(dropped)
    # Whole time steps go missing (every channel), exactly floor(rate · time) per series.
    assert bool(jnp.all(missing.all(-1) == missing.any(-1)))
    np.testing.assert_array_equal(missing[..., 0].sum(-1), int(rate * 20))
    if rate > 0:  # independent draws per series
        assert len({tuple(np.asarray(m)) for m in missing[..., 0]}) > 1
    np.testing.assert_array_equal(dropped[~missing], 1.0)


def test_drop_observations_is_jittable_with_a_traced_rate_and_checks_it():
    values = jnp.ones((4, 10, 2))
    dropped = jax.jit(drop_observations)(values, 0.5, key=jax.random.key(1))
    np.testing.assert_array_equal(jnp.isnan(dropped[..., 0]).sum(-1), 5)
    with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\)"):
        drop_observations(values, 1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"shape \(\*batch, time, channels\)"):
        drop_observations(jnp.ones(10), 0.5, key=jax.random.key(0))
    with pytest.raises(TypeError, match="positional"):  # key is keyword-only
        drop_observations(values, 0.5, jax.random.key(0))


def test_fill_forward_hand_example():
    values = jnp.array([[nan, 1.0], [2.0, nan], [nan, nan], [4.0, 5.0], [nan, nan]])
    expected = jnp.array([[nan, 1.0], [2.0, 1.0], [2.0, 1.0], [4.0, 5.0], [4.0, 5.0]])
    np.testing.assert_array_equal(fill_forward(values), expected)
    batched = jax.jit(fill_forward)(jnp.stack([values, -values]))
    np.testing.assert_array_equal(batched, jnp.stack([expected, -expected]))


def test_mask_counts_and_augment():
    ts = jnp.array([0.0, 0.5, 2.0])
    values = jnp.array([[1.0, nan], [nan, nan], [3.0, 4.0]])
    np.testing.assert_array_equal(
        observation_mask(values), [[True, False], [False, False], [True, True]]
    )
    np.testing.assert_array_equal(observation_counts(values), [[1, 0], [1, 0], [2, 1]])
    augmented = augment(ts, values, counts=True)
    assert augmented.shape == (3, 5)
    np.testing.assert_array_equal(augmented[:, 0], ts)  # time is observed everywhere
    np.testing.assert_array_equal(augmented[:, 1:3], [[1, 0], [1, 0], [2, 1]])
    np.testing.assert_array_equal(augmented[:, 3:], values)
    assert augment(ts, jnp.stack([values] * 4)).shape == (4, 3, 3)
    with pytest.raises(ValueError, match=r"ts must have shape \(time,\)"):
        augment(ts[:2], values)


def test_hermite_path_interpolates_and_bridges_missing_values():
    ts = jnp.array([0.0, 0.4, 1.0, 1.3, 2.0, 3.1])
    values = jnp.array([[nan, 1.0], [2.0, 0.5], [nan, nan], [1.0, nan], [3.0, 2.0], [nan, nan]])
    # A third channel observed at its first time only, a fourth never (diffrax alone gives NaN
    # coefficients for both)
    lone = jnp.concatenate([values, jnp.array([[5.0, nan]] + [[nan, nan]] * 5)], axis=1)
    t = jnp.linspace(0.0, 3.1, 17)

    @jax.jit  # one program (eager, each operation of the fits compiles on its own)
    def fit():
        coefficients = hermite_coefficients(ts, lone)
        path = cubic_path(ts, coefficients)
        # The same spline as diffrax's, given the start and end values.
        reference = dfx.CubicInterpolation(
            ts,
            dfx.backward_hermite_coefficients(
                ts,
                values,
                replace_nans_at_start=jnp.array([2.0, 1.0]),
                fill_forward_nans_at_end=True,
            ),
        )
        batched = hermite_coefficients(ts, jnp.stack([lone, lone]))
        spline, diffrax_spline = jax.vmap(path.evaluate)(t), jax.vmap(reference.evaluate)(t)
        return coefficients, jax.vmap(path.evaluate)(ts), spline, diffrax_spline, batched

    coefficients, at_knots, spline, diffrax_spline, batched = jax.tree.map(np.asarray, fit())
    assert all(c.shape == (5, 4) for c in coefficients)
    assert not any(bool(np.isnan(c).any()) for c in coefficients)
    # Through every observation; a gap is bridged by one cubic from the observation before
    # it to the one after it (so not flat); before the first observation, that observation;
    # after the last, the last (carried forward).
    observed = np.asarray(observation_mask(lone))
    np.testing.assert_allclose(at_knots[observed], np.asarray(lone)[observed], atol=1e-12)
    np.testing.assert_allclose(at_knots[0], [2.0, 1.0, 5.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(at_knots[-1], [3.0, 2.0, 5.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(spline[:, 2:], [[5.0, 0.0]] * 17, atol=1e-12)  # constant
    assert 1.0 < float(at_knots[2, 0]) < 2.0 and float(at_knots[2, 1]) != 0.5
    np.testing.assert_allclose(spline[:, :2], diffrax_spline)
    assert all(c.shape == (2, 5, 4) for c in batched)


# --- NeuralCDE ----------------------------------------------------------------------------


# Fixed Heun steps keep these tests' compiles short (adaptive solves are tested above).
FIXED = dict(solver="heun", dt0=0.125)


def build(**options):
    """`NeuralCDE(**options)` initialised in one compiled program (eager, each layer's
    initialisation compiles on its own)."""
    key = options.pop("key")
    return _build(key, tuple(sorted(options.items())))


@eqx.filter_jit
def _build(key, options):
    return NeuralCDE(**dict(options), key=key)


def small_dataset(batch=3, time=9, channels=2):
    ts = jnp.linspace(0.0, 1.0, time)
    coefficients = _small_coefficients(ts, batch, channels)
    return ts, coefficients, coefficients[0].shape[-1]


@functools.partial(jax.jit, static_argnums=(1, 2))  # one program, not one per operation
def _small_coefficients(ts, batch, channels):
    raw = jax.random.normal(jax.random.key(0), (batch, ts.shape[0], channels)).cumsum(axis=1) / 3
    values = augment(ts, drop_observations(raw, 0.3, key=jax.random.key(1)), counts=True)
    return hermite_coefficients(ts, values)


def test_neural_cde_shapes_vmap_jit():
    ts, coefficients, channels = small_dataset()
    sizes = dict(channels=channels, hidden=4, width=8, depth=1)
    model = build(**sizes, out=3, key=jax.random.key(2), **FIXED)
    one = jax.tree.map(lambda c: np.asarray(c)[0], coefficients)  # NumPy: no eager program
    # Each call one compiled program (eager, every operation around the solve is its own).
    hidden = eqx.filter_jit(lambda m, c: m.hidden_path(ts, c))(model, one)
    assert hidden.shape == (ts.shape[0], 4)
    # Without a readout (same key, so the same initial map and field) the final state, the
    # last point of the hidden path (fixed steps: the same steps, equal to rounding).
    bare = build(**sizes, out=None, key=jax.random.key(2), **FIXED)
    final = eqx.filter_jit(lambda m, c: m(ts, c))(bare, one)
    assert final.shape == (4,)
    np.testing.assert_allclose(final, hidden[-1], atol=1e-12)

    # vmap over series (cdeint's way to batch): series 0 of the batch as solved on its own.
    @eqx.filter_jit
    def logits(model, coefficients):
        return jax.vmap(model, in_axes=(None, 0))(ts, coefficients)

    batched = logits(model, coefficients)
    assert batched.shape == (3, 3)
    np.testing.assert_allclose(batched[0], model.readout(final), atol=1e-12)


def test_neural_cde_gradient_is_finite_and_nonzero():
    ts, coefficients, channels = small_dataset()
    model = build(channels=channels, hidden=4, out=2, width=8, depth=1, key=jax.random.key(3),
                  **FIXED)  # fmt: skip
    labels = jnp.array([0, 1, 1])

    @eqx.filter_jit
    @eqx.filter_grad
    def grad(model):
        logits = jax.vmap(model, in_axes=(None, 0))(ts, coefficients)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(3), labels])

    grads = jax.tree.map(np.asarray, eqx.filter(grad(model), eqx.is_array))  # NumPy checks
    assert all(bool(np.all(np.isfinite(leaf))) for leaf in jax.tree.leaves(grads))
    assert any(bool(np.any(g != 0)) for g in jax.tree.leaves(grads.field))


def test_neural_cde_field_is_bounded_and_errors_are_clear():
    field = CDEField(hidden=4, channels=3, width=8, depth=1, key=jax.random.key(0))
    out = field(0.0, 100 * jnp.ones(4))
    assert out.shape == (4, 3) and bool(jnp.all(jnp.abs(out) <= 1))  # tanh-terminated
    ts, coefficients, channels = small_dataset()
    model = NeuralCDE(channels=channels + 1, hidden=4, out=2, width=8, depth=1,
                      key=jax.random.key(0))  # fmt: skip
    assert model.max_steps is None  # cdeint's default
    with pytest.raises(ValueError, match=f"built for {channels + 1} channels"):
        model(ts, jax.tree.map(lambda c: c[0], coefficients))
    with pytest.raises(ValueError, match="hidden must be an int >= 1, got 0"):
        CDEField(hidden=0, channels=3, width=8, depth=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="out must be an int >= 1, got 0"):
        NeuralCDE(channels=2, hidden=4, out=0, width=8, depth=1, key=jax.random.key(0))
    with pytest.raises(TypeError, match="positional"):  # sizes are keywords
        NeuralCDE(2, 4, 2, 8, 1, key=jax.random.key(0))
