"""jaxdyn.regularize on SDEs: the error sum of an adaptive SPaRK solve against the solver's
own per-step estimates on the same Brownian path, its gradient, and `Regularizer` on a
`NeuralSDE`."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import pytest

from jaxdyn import odeint, sdeint
from jaxdyn._solvers import fevals
from jaxdyn.models import NeuralSDE
from jaxdyn.regularize import Regularizer, heuristics_solver, sde_error_penalty

RTOL = ATOL = 1e-3
T1 = 2.0


def _drift(t, y, theta):
    return theta * (y - y**3)


def _diffusion(t, y, theta):
    return jnp.full_like(y, 0.5)


def _terms(key):
    path = dfx.VirtualBrownianTree(0.0, T1, tol=T1 / 2**10, shape=(1,), key=key,
                                   levy_area=dfx.SpaceTimeLevyArea)  # fmt: skip
    matrix = lambda t, y, theta: jnp.full((1, 1), 0.5, y.dtype)  # noqa: E731  (Diffrax's form)
    return dfx.MultiTerm(dfx.ODETerm(_drift), dfx.ControlTerm(matrix, path))


def _hand_sum(theta, times, key):
    """`(Σ dt·E, y(t1))` over the given (accepted) steps, each a SPaRK step taken here on the
    path."""
    terms, solver = _terms(key), dfx.SPaRK()
    y0 = jnp.array([0.3])

    def step(carry, interval):
        y, total, state = carry
        t0, t1 = interval
        y1, err, _, state, _ = solver.step(terms, t0, t1, y, theta, state, False)
        scale = ATOL + RTOL * jnp.maximum(jnp.abs(y), jnp.abs(y1))
        return (y1, total + (t1 - t0) * jnp.sqrt(jnp.mean((err / scale) ** 2)), state), None

    state = solver.init(terms, times[0], times[1], y0, theta)
    intervals = jnp.stack([times[:-1], times[1:]], -1)
    (y, total, _), _ = jax.lax.scan(step, (y0, jnp.zeros((), y0.dtype), state), intervals)
    return total, y


# `((Σ dt·E, y(t1)), d(Σ dt·E)/dθ)` as one program; the finite differences call it too (its
# unused gradient costs less to run than a second program costs to compile).
_hand_sum_and_grad = jax.jit(jax.value_and_grad(_hand_sum, has_aux=True))


def test_sde_error_sum_is_the_solvers_own_estimates_and_differentiable():
    """The wrapper's sum equals SPaRK's per-step estimates summed over the accepted steps of
    its solve (the step times read from Diffrax; the rejected steps skipped), stepping those
    times by hand reproduces its solution, and its gradient equals the hand sum's with the
    steps frozen, which equals central differences."""
    key = jax.random.key(3)

    def solve(theta, saveat):
        return dfx.diffeqsolve(_terms(key), heuristics_solver(dfx.SPaRK(), RTOL, ATOL), 0.0,
                               T1, None, jnp.array([0.3]), args=theta, saveat=saveat,
                               stepsize_controller=dfx.PIDController(rtol=RTOL, atol=ATOL),
                               max_steps=1000)  # fmt: skip

    sol = solve(1.0, dfx.SaveAt(steps=True, solver_state=True))
    n = int(sol.stats["num_accepted_steps"])
    assert n > 10 and int(sol.stats["num_rejected_steps"]) > 0  # rejected steps are skipped
    times = jnp.concatenate([jnp.zeros(1), sol.ts[:n]])  # SaveAt(steps): the accepted ends
    (by_hand, y1), frozen = _hand_sum_and_grad(1.0, times, key)
    assert float(sol.solver_state[1].error) == pytest.approx(float(by_hand), rel=1e-10)
    assert jnp.allclose(sol.ys[n - 1], y1, rtol=1e-12, atol=1e-12)

    def wrapped(theta):
        return solve(theta, dfx.SaveAt(t1=True, solver_state=True)).solver_state[1].error

    grad = jax.grad(wrapped)(1.0)
    assert float(grad) == pytest.approx(float(frozen), rel=1e-8)
    eps = 1e-6  # the frozen-step sum is smooth in θ: central differences to ~1e-8

    def hand(theta):
        return _hand_sum_and_grad(theta, times, key)[0][0]

    fd = (hand(1.0 + eps) - hand(1.0 - eps)) / (2 * eps)
    assert float(grad) == pytest.approx(float(fd), rel=1e-6)


def test_sde_error_penalty_is_sdeints_adaptive_srk_solve():
    """`sde_error_penalty` is `sdeint`'s adaptive SRK solve with the sums (its NFE SPaRK's
    three drift evaluations a step). `Regularizer(kind="error")` training a `NeuralSDE` with it
    (joint batch) is the smoke run of `solver_regularisation_sde`."""
    key, y0, ts = jax.random.key(0), jnp.array([[0.3], [-0.5]]), jnp.linspace(0.0, T1, 5)
    sol, penalty = sde_error_penalty(_drift, _diffusion, y0, ts, args=1.0, noise="additive",
                                     rtol=RTOL, atol=ATOL, key=key, batch="vmap")  # fmt: skip
    assert bool(jnp.all(sol.succeeded)) and sol.ys.shape == (2, 5, 1)
    assert jnp.all(sol.stats.num_fevals == 3 * sol.stats.num_steps)  # SPaRK: 3 stages
    assert float(penalty) > 0


def test_sde_penalty_bad_input_is_a_clear_error():
    args = (_drift, _diffusion, jnp.array([0.3]), jnp.linspace(0.0, 1.0, 3))
    with pytest.raises(ValueError, match="solver 'euler' is not one of"):
        sde_error_penalty(*args, key=jax.random.key(0), solver="euler", rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="brownian='virtual'"):
        sde_error_penalty(*args, key=jax.random.key(0), rtol=1e-3, atol=1e-3, brownian="grid")
    sde = NeuralSDE(_drift, _diffusion, solver="srk", rtol=1e-3, atol=1e-3, brownian="virtual")
    with pytest.raises(ValueError, match="NeuralSDE.*'error'"):
        Regularizer("taylor", 1.0)(sde, args[3], args[2], key=jax.random.key(0))
    fixed = NeuralSDE(_drift, _diffusion, solver="srk", dt0=0.1, brownian="virtual")
    with pytest.raises(ValueError, match="adaptive solve: give rtol and atol"):
        Regularizer("error", 1.0)(fixed, args[3], args[2], key=jax.random.key(0))
    # the saved state (the sums) is not differentiated by the continuous adjoint: refused
    for solve in (lambda: odeint(_drift, args[2], args[3], args=1.0, adjoint="backsolve",
                                 save_solver_state=True),
                  lambda: sdeint(_drift, _diffusion, args[2], args[3], key=jax.random.key(0),
                                 args=1.0, dt0=0.1, brownian="virtual", adjoint="backsolve",
                                 save_solver_state=True)):  # fmt: skip
        with pytest.raises(ValueError, match="save_solver_state=True cannot be differentiated"):
            solve()
    # Diffrax's HalfSolver passes isinstance checks for the solver it wraps: no NFE formula
    assert fevals(dfx.HalfSolver(dfx.SPaRK()), jnp.array(3)) is None
    assert int(fevals(dfx.SPaRK(), jnp.array(3))) == 9


def test_sde_task_scores_a_failed_path_as_nan():
    """A prediction path that fails (here: max_steps too small) makes the SDE task's W₁ NaN,
    which the experiment records as a failure, instead of raising inside the evaluation (a
    finite W₁ is the SDE task's smoke run's headline)."""
    from jaxdyn.experiments.solver_regularisation_sde import _Prediction

    ts = jnp.linspace(0.0, 1.0, 3)
    ys = jnp.stack([jnp.linspace(y, y, 3)[:, None] for y in (0.3, -0.3, 1.0)])
    sde = NeuralSDE(lambda t, y, args: y - y**3, _diffusion, solver="srk", rtol=1e-3, atol=1e-3,
                    brownian="virtual")  # fmt: skip
    predict = _Prediction(ts, ys, jnp.array([1, 2]), jax.random.key(0), 1e-3, 1e-3, 2)
    out = predict(sde, jax.random.key(1))  # two steps cannot reach t = 1 at 1e-3
    assert bool(jnp.isnan(out["metric"])) and float(out["nfe"]) > 0
