"""jaxdyn.regularize against hand-stepped solves, finite differences and closed forms."""

import functools

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.models import MLPField, NeuralODE
from jaxdyn.regularize import (
    STABILITY_SIZES,
    HeuristicsSolver,
    Regularizer,
    SolveOptions,
    error_penalty,
    local_error_penalty,
    local_stiffness_penalty,
    regularized_loss,
    solve_options,
    solve_with_heuristics,
    step_heuristics,
    stiffness_penalty,
    taylor_derivatives,
    taylor_penalty,
)
from jaxdyn.solve import odeint

RTOL = ATOL = 1e-6
T1, DT0 = 2.0, 0.5  # a first step of 0.5 is rejected: the sums must skip it
EIGENVALUES = (-1.0, -60.0)  # a stiff linear system y' = θ A y: spectral radius 60 θ


def _field(t, y, theta):
    q = jnp.array([[0.6, -0.8], [0.8, 0.6]], y.dtype)  # A = Q diag(λ) Qᵀ, symmetric
    return theta * (q @ (jnp.array(EIGENVALUES, y.dtype) * (q.T @ y)))


_TERM, _SOLVER = dfx.ODETerm(_field), dfx.Tsit5()
_CONTROLLER = dfx.PIDController(rtol=RTOL, atol=ATOL)
_LAST_STAGES = np.asarray(_SOLVER.tableau.a_lower[-1]) - np.pad(_SOLVER.tableau.a_lower[-2], (0, 1))


@jax.jit
def _hand_step(tprev, tnext, y, state, cstate, theta):
    """One attempted step as Diffrax's loop takes it, with `E` and `|λ̂|` computed here from
    the step's own outputs (`err`, the stages `k`)."""
    order = _SOLVER.error_order(_TERM)
    y1, err, dense, state1, _ = _SOLVER.step(_TERM, tprev, tnext, y, theta, state, False)
    keep, _, tnext1, _, cstate, _ = _CONTROLLER.adapt_step_size(
        tprev, tnext, y, y1, theta, err, order, cstate
    )
    scale = ATOL + RTOL * jnp.maximum(jnp.abs(y), jnp.abs(y1))
    error = jnp.sqrt(jnp.mean((err / scale) ** 2))
    k = dense["k"]
    g_gap = jnp.tensordot(jnp.asarray(_LAST_STAGES), k[:6], 1)  # y1 - g6
    eigenvalue = jnp.linalg.norm(k[6] - k[5]) / ((tnext - tprev) * jnp.linalg.norm(g_gap))
    return keep, tnext1, y1, state1, cstate, error, eigenvalue


def _hand_stepped(theta, times=None):
    """Diffrax's loop by hand (Tsit5, PID controller, its clipping to t1): the sums over
    accepted steps of `dt·E` and `dt·|λ̂|/S`, the max of `|λ̂|/S`, the step counts and the
    accepted times. With `times`, step through them instead (the steps frozen)."""
    size = STABILITY_SIZES[dfx.Tsit5]
    y = jnp.array([1.0, 0.5])
    state = _SOLVER.init(_TERM, 0.0, DT0, y, theta)
    order = _SOLVER.error_order(_TERM)
    tnext, cstate = _CONTROLLER.init(_TERM, 0.0, T1, y, DT0, theta, _SOLVER.func, order)
    tprev, sums, peak, accepted, rejected, steps = 0.0, 0.0, 0.0, 0, 0, [0.0]
    while tprev < T1:
        if times is not None:
            tnext = times[accepted + 1]
        keep, tnext1, y1, state1, cstate, error, eigenvalue = _hand_step(
            tprev, tnext, y, state, cstate, theta
        )
        if times is not None or bool(keep):
            sums = sums + (tnext - tprev) * jnp.array([error, eigenvalue / size])
            peak = jnp.maximum(peak, eigenvalue / size)
            y, state, accepted = y1, state1, accepted + 1
            steps.append(float(tnext))
            tprev, tnext = float(tnext), float(tnext1)
            if tnext > T1:
                tnext = T1
        else:
            rejected, tnext = rejected + 1, float(tnext1)
            if tnext > T1:
                tnext = tprev + 0.5 * (T1 - tprev)
    return sums, peak, accepted, rejected, steps


@pytest.fixture(scope="module")
def global_solve():
    """One float64 solve with both sums, its gradient in θ, and the loop by hand."""
    with jax.enable_x64(True):
        ts = jnp.array([0.0, T1])

        @jax.jit
        @functools.partial(jax.value_and_grad, has_aux=True)
        def solve(theta):
            sol, totals = solve_with_heuristics(
                _field, jnp.array([1.0, 0.5]), ts, args=theta, stiffness=True,
                rtol=RTOL, atol=ATOL, dt0=DT0,
            )  # fmt: skip
            return totals.error + totals.stiffness_sum, (sol, totals)

        (_, (sol, totals)), grad = solve(1.0)
        hand = _hand_stepped(jnp.float64(1.0))
        frozen = lambda th: jnp.sum(_hand_stepped(th, hand[4])[0])  # noqa: E731
        h = 1e-5
        fd = (frozen(1.0 + h) - frozen(1.0 - h)) / (2 * h)
        return jax.device_get((sol, totals, grad, hand[:4], fd, jax.grad(frozen)(1.0)))


def test_accumulated_heuristics_equal_the_hand_stepped_sums(global_solve):
    sol, totals, _, (sums, peak, accepted, rejected), *_ = global_solve
    assert rejected >= 1, "the test needs a rejected step"
    assert int(sol.stats.num_accepted_steps) == accepted
    assert int(sol.stats.num_rejected_steps) == rejected
    # The same float64 operations in another order: agreement to rounding.
    np.testing.assert_allclose(totals.error, sums[0], rtol=1e-9)
    np.testing.assert_allclose(totals.stiffness_sum, sums[1], rtol=1e-9)
    np.testing.assert_allclose(totals.stiffness_max, peak, rtol=1e-9)
    # Tsit5's eigenvalue estimate on a stiff linear problem: close to the spectral radius
    # (60), never above it (a Rayleigh-like quotient ‖Av‖/‖v‖). 5% covers the slow mode's
    # share of y₁ − g₆ on the early steps that resolve the fast transient.
    rho = 60.0 / STABILITY_SIZES[dfx.Tsit5]
    assert rho * 0.95 < totals.stiffness_max <= rho * (1 + 1e-9)
    assert sol.stats.num_fevals == 1 + 6 * int(sol.stats.num_steps)


def test_gradient_matches_finite_differences_with_frozen_steps(global_solve):
    """Diffrax differentiates with the step sizes held (its controller stops the gradient),
    so the reference is the float64 central difference of the same sums over the same
    accepted step times, stepped by hand."""
    *_, grad, _, fd, hand_grad = global_solve
    # Reverse mode through Diffrax's loop and through the loop by hand: the same derivative, up
    # to rounding that the cancellation below amplifies (measured 3e-9).
    np.testing.assert_allclose(grad, hand_grad, rtol=1e-8)
    # E is a difference of stages ~1e-6 of the state and |λ̂| a quotient of differences: the
    # frozen sums lose ~8 digits to cancellation, so the float64 central difference is good to
    # ~1e-5 (measured: 1e-6 at h=1e-5; 1e-4 at h=1e-7 from rounding, 3e-5 at h=1e-4).
    np.testing.assert_allclose(grad, fd, rtol=2e-5)


def test_step_heuristics_eigenvalue_approaches_the_spectral_radius():
    y = jnp.array([1.0, 1.0])
    step = step_heuristics(_field, 0.0, y, 0.01, args=1.0)
    # float32: the quotient of two differences of nearly equal stages, ~1e-4 relative noise.
    assert 0.95 * 60 < float(step.eigenvalue) <= 60 * (1 + 1e-3)
    assert float(step.error) > 0


def test_taylor_penalty_matches_closed_form():
    """y' = λ y: y^(K) = λ^K y, and R_K = ∫_0^T λ^{2K} |y0|² e^{2λt} dt (K = 2 and 3 by jet;
    the integrated penalty and its gradient for K = 3, which takes the same path as K = 2)."""
    with jax.enable_x64(True):
        y0, ts, order = jnp.array([1.0, -2.0]), jnp.array([0.0, 0.5, 1.0]), 3
        field = lambda t, y, lam: lam * y  # noqa: E731

        def closed(lam):
            return lam ** (2 * order) * jnp.sum(y0**2) * jnp.expm1(2 * lam) / (2 * lam)

        for k_max in (2, 3):
            derivatives = taylor_derivatives(field, 0.3, y0, order=k_max, args=-0.7)
            assert len(derivatives) == k_max
            for k, d in enumerate(derivatives, start=1):
                np.testing.assert_allclose(d, (-0.7) ** k * y0, rtol=1e-12)

        @jax.jit
        @jax.value_and_grad
        def penalty(lam):
            sol, r = taylor_penalty(field, y0, ts, order=order, args=lam, rtol=1e-10, atol=1e-10)
            return r + 0.0 * jnp.sum(sol.ys)

        value, grad = penalty(-0.7)
        # rtol=1e-10 solves: the integral and its derivative to ~1e-8.
        np.testing.assert_allclose(value, closed(-0.7), rtol=1e-7)
        np.testing.assert_allclose(grad, jax.grad(closed)(-0.7), rtol=1e-6)


def test_local_penalties():
    """One extra step at τ on the stiff linear system: the error estimate and its gradient
    against float64 central differences of the same step (y(τ) and dt held), and the
    stiffness estimate near the spectral radius."""
    with jax.enable_x64(True):
        y0, ts, key = jnp.array([1.0, 0.5]), jnp.array([0.0, T1]), jax.random.key(3)
        options = dict(rtol=1e-4, atol=1e-4)

        @jax.jit
        @functools.partial(jax.value_and_grad, has_aux=True)
        def local(theta):
            sol, p = local_error_penalty(_field, y0, ts, key=key, args=theta, **options)
            return p, sol

        (value, sol), grad = local(1.0)
        # τ as local_error_penalty draws it; y(τ) from the same solve (at rtol 1e-4 the stiff
        # mode's numerical residue is part of what the step sees: the exact y(τ) gives E ~ 1e-7).
        tau = jax.random.uniform(key, (), ts.dtype, 0.0, T1)
        y_tau = odeint(_field, y0, jnp.array([0.0, tau, T1]), args=1.0, **options).ys[1]
        dt = T1 / sol.stats.num_accepted_steps

        def step(theta):
            e = step_heuristics(_field, tau, y_tau, dt, args=theta, stiffness=False,
                                rtol=1e-4, atol=1e-4).error  # fmt: skip
            return T1 * e

        np.testing.assert_allclose(value, step(1.0), rtol=1e-9)
        h = 1e-5  # float64 central difference of one step: ~1e-7 relative (truncation, rounding)
        np.testing.assert_allclose(grad, (step(1.0 + h) - step(1.0 - h)) / (2 * h), rtol=1e-5)
        assert sol.ys.shape == (2, 2)
        _, rate = local_stiffness_penalty(_field, y0, ts, key=key, args=1.0, **options)
        assert 0.9 * 60 / 3.5068 < float(rate) <= 60 / 3.5068 * (1 + 1e-6)


def test_regularizer_trains_a_neural_ode():
    """The option of a NeuralODE: a joint batch, the penalty logged beside the data loss."""
    model = NeuralODE(MLPField(dim=2, width=8, depth=1, key=jax.random.key(0)), rtol=1e-3,
                      atol=1e-3)  # fmt: skip
    ts, y0, ys = jnp.linspace(0.0, 1.0, 3), jnp.ones((4, 2)), jnp.zeros((4, 3, 2))
    reg = Regularizer("error", weight=0.5)
    loss_fn = eqx.filter_jit(eqx.filter_value_and_grad(regularized_loss, has_aux=True))
    (loss, metrics), grads = loss_fn(model, ts, y0, ys, reg)
    np.testing.assert_allclose(loss, metrics["data_loss"] + 0.5 * metrics["penalty"], rtol=1e-6)
    sol, penalty = error_penalty(model.field, y0, ts, rtol=1e-3, atol=1e-3, batch="joint")
    np.testing.assert_allclose(metrics["penalty"], penalty, rtol=1e-5)
    assert float(penalty) > 0
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(eqx.filter(grads, eqx.is_array)))


def test_solve_options_are_odeints_with_its_defaults():
    defaults = solve_options("test", {})
    assert set(defaults) == set(SolveOptions.__annotations__)  # every option odeint has
    assert defaults["solver"] == "tsit5" and defaults["adjoint"] == "checkpoint"
    with pytest.raises(TypeError, match="unknown options \\['rtoll'\\]"):
        solve_options("test", {"rtoll": 1e-3})


def test_bad_input_is_a_clear_error():
    f, y0, ts = (lambda t, y, a: -y), jnp.ones(2), jnp.array([0.0, 1.0])
    with pytest.raises(ValueError, match="fixed steps"):
        error_penalty(f, y0, ts, dt0=0.1)
    with pytest.raises(ValueError, match="stiffness estimate needs"):
        stiffness_penalty(f, y0, ts, solver="bosh3")
    with pytest.raises(ValueError, match="reduction"):
        stiffness_penalty(f, y0, ts, reduction="mean")
    with pytest.raises(ValueError, match="adaptive solver"):
        HeuristicsSolver(dfx.Euler())
    with pytest.raises(ValueError, match="error estimate, got RK4"):  # its tableau has none
        error_penalty(f, y0, ts, solver="rk4", rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="explicit Runge–Kutta"):
        error_penalty(f, y0, ts, solver="kvaerno5", rtol=1e-6, atol=1e-6)
    # one local step that overflows has no controller to reject it: NaN, not error 0
    blow_up = step_heuristics(lambda t, y, a: jnp.exp(a * y), 0.0, y0, 1.0, args=800.0)
    assert bool(jnp.isnan(blow_up.error)) and bool(jnp.isnan(blow_up.eigenvalue))
    # a failed solve's carried state is NaN under on_failure="nan", as its states are
    failed = odeint(lambda t, y, a: y**2, y0, jnp.linspace(0.0, 2.0, 3), rtol=1e-6, atol=1e-6,
                    on_failure="nan", save_solver_state=True)  # fmt: skip
    assert all(bool(jnp.all(jnp.isnan(x))) for x in jax.tree.leaves(failed.solver_state)
               if jnp.issubdtype(x.dtype, jnp.floating))  # fmt: skip
    with pytest.raises(ValueError, match="backsolve"):
        error_penalty(f, y0, ts, adjoint="backsolve")
    with pytest.raises(ValueError, match="order"):
        taylor_penalty(f, y0, ts, order=0)
    with pytest.raises(ValueError, match="kind"):
        Regularizer("jacobian")
    with pytest.raises(ValueError, match="weight"):
        Regularizer("error", weight=-1.0)
    model = NeuralODE(f)
    with pytest.raises(ValueError, match="key="):
        Regularizer("local_error")(model, ts, y0)
    with pytest.raises(ValueError, match="shape"):
        Regularizer("error")(model, ts, jnp.ones((1, 2, 2)))
