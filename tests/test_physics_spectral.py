"""The pseudo-spectral ETDRK4 solver (`jaxdyn.physics`) against its order of convergence, closed
forms (Cole–Hopf Burgers, the KdV soliton, Taylor–Green decay), exponax on the same problems,
and finite differences of its gradients (float64, tests/conftest.py)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.data import burgers_gaussian
from jaxdyn.physics import (
    ETDRK4,
    Convection,
    PeriodicGrid,
    burgers,
    korteweg_de_vries,
    kuramoto_sivashinsky,
    navier_stokes_vorticity,
)

KS_GRID = PeriodicGrid(length=32 * math.pi, n=128)  # Kassam & Trefethen 2005's KS example


def _ks_u0(grid: PeriodicGrid) -> jax.Array:
    x = grid.points
    return jnp.cos(x / 16) * (1 + jnp.sin(x / 16))


def _ks_at(t1: float, dt: float) -> np.ndarray:
    solver = kuramoto_sivashinsky(grid=KS_GRID, dt0=dt)
    return np.asarray(jax.jit(lambda u: solver.rollout(u, round(t1 / dt)))(_ks_u0(KS_GRID)))


def _exponax_fraction(n: int) -> float:
    """exponax's `dealiasing_fraction` that keeps the modes `PeriodicGrid.dealias_mask` keeps
    (`|m| < n/3`): exponax keeps `|m| <= fraction · n/2 − 1`."""
    return math.ceil(n / 3) / (n / 2)


def test_kuramoto_sivashinsky_converges_at_fourth_order():
    # t = 10 from Kassam & Trefethen's initial condition, errors against dt = 1/2048. The
    # coarser steps are pre-asymptotic (local slopes 3.0, 2.8, 3.4 from dt = 1/4 to 1/32, the
    # same in exponax's ETDRK4: the two agree to 1e-14 at every dt, test below); from 1/32 to
    # 1/256 the errors fall from ~6e-9 to ~2e-12, far above the reference's error (~1e-15).
    reference = _ks_at(10.0, 1 / 2048)
    dts = np.array([1 / 32, 1 / 64, 1 / 128, 1 / 256])
    errors = np.array(
        [np.linalg.norm(_ks_at(10.0, dt) - reference) / np.linalg.norm(reference) for dt in dts]
    )
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    # A third-order scheme would give 3, a fifth-order one 5: 4 ± 0.4 tells them apart.
    assert 3.6 <= slope <= 4.4, (slope, errors)
    assert errors[-1] < 1e-10, errors


def test_burgers_matches_cole_hopf():
    # PDE-FIND's Burgers data (Rudy et al. 2017): ν = 0.1, u0 = exp(−(x + 2)²) on [−8, 8); the
    # exact solution on the real line is below 2e-9 at the ends for t ≤ 2, so the periodic
    # domain changes it by less than the tolerance.
    grid = PeriodicGrid(length=16.0, n=256)
    x = grid.points - 8.0
    solver = burgers(grid=grid, dt0=0.02, nu=0.1)
    us = jax.jit(lambda u: solver.rollout(u, 100, save_every=25))(jnp.exp(-((x + 2) ** 2)))
    exact = burgers_gaussian(x, 0.5 * np.arange(5), nu=0.1, centre=-2.0)
    error = jnp.max(jnp.abs(us - exact)) / jnp.max(jnp.abs(exact))
    # Issue 18's target: 1e-6 relative (exponax: 4.4e-7); measured 2.7e-8 at t = 2.
    assert error <= 1e-6, error


def test_kuramoto_sivashinsky_agrees_with_exponax():
    import exponax  # the test extra's reference (heavy: it loads matplotlib), here only

    dt, steps = 0.25, 40
    theirs = exponax.stepper.KuramotoSivashinskyConservative(
        1, KS_GRID.length, KS_GRID.n, dt, order=4, num_circle_points=64,
        dealiasing_fraction=_exponax_fraction(KS_GRID.n),
    )  # fmt: skip
    u0 = _ks_u0(KS_GRID)
    expected = jax.jit(exponax.repeat(theirs, steps))(u0[None])[0]
    ours = _ks_at(steps * dt, dt)
    # The same scheme, symbol, dealiasing and contour (exponax's 64 points on the full circle
    # are our 32 on the upper half): equal to rounding over 40 steps.
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12 * np.max(np.abs(expected)))


def test_navier_stokes_agrees_with_exponax_and_taylor_green():
    import exponax  # the test extra's reference (heavy: it loads matplotlib), here only

    grid = PeriodicGrid(length=2 * math.pi, n=32, ndim=2)
    x, y = grid.points
    w0 = jnp.sin(x) * jnp.cos(2 * y) + 0.5 * jnp.cos(3 * x + y) + 0.3 * jnp.sin(x - 2 * y)
    taylor_green = 2 * jnp.sin(x) * jnp.sin(y)  # ψ = sin x sin y: u·∇ω = 0, ω = ω0 e^{−2νt}
    nu, dt, steps = 0.01, 0.01, 100
    solver = navier_stokes_vorticity(grid=grid, dt0=dt, nu=nu)
    ours = jax.jit(jax.vmap(lambda w: solver.rollout(w, steps)))(jnp.stack([w0, taylor_green]))
    theirs = exponax.stepper.NavierStokesVorticity(
        2, grid.length, grid.n, dt, diffusivity=nu, order=4, num_circle_points=64,
        dealiasing_fraction=_exponax_fraction(grid.n),
    )  # fmt: skip
    # exponax's stream function solves Δψ = ω with (u, v) = (ψ_y, −ψ_x), which is the velocity
    # of −ω: its solution from −ω0 is minus ours from ω0. Equal to rounding.
    expected = -jax.jit(exponax.repeat(theirs, steps))(-w0[None])[0]
    np.testing.assert_allclose(ours[0], expected, rtol=0, atol=1e-12)
    # The linear part is exact and the nonlinear term of this steady Euler flow vanishes.
    decayed = taylor_green * math.exp(-2 * nu * dt * steps)
    np.testing.assert_allclose(ours[1], decayed, rtol=0, atol=1e-13)


def test_korteweg_de_vries_soliton():
    # u = (c/2) sech²(√c (x − ct − x0)/2), c = 4, on [−20, 20): the tails are below 1e-16 at
    # the ends; the complex symbol i k³ takes the full-circle contour. Measured 1.8e-8 at t = 2.
    grid = PeriodicGrid(length=40.0, n=256)
    x = grid.points - 20.0

    def soliton(t):
        return 2.0 / jnp.cosh(x - 4.0 * t + 4.0) ** 2

    solver = korteweg_de_vries(grid=grid, dt0=1e-3)
    u = jax.jit(lambda u: solver.rollout(u, 2000))(soliton(0.0))
    assert jnp.max(jnp.abs(u - soliton(2.0))) / 2.0 < 1e-7


def test_gradients_match_finite_differences():
    """`jax.grad` through a rollout with respect to the initial condition, the nonlinear term's
    coefficient and the viscosity inside the linear symbol (the solver built in the function)."""
    grid = PeriodicGrid(length=2 * math.pi, n=32)
    x = grid.points
    u0 = jnp.sin(x) + 0.5 * jnp.cos(2 * x)
    weights = jnp.cos(3 * x) + x / 10

    def loss(u0, coefficient, nu):
        solver = burgers(grid=grid, dt0=0.05, nu=nu)
        solver = eqx.tree_at(lambda s: s.nonlinear, solver, Convection(coefficient))
        return jnp.sum(weights * solver.rollout(u0, 20) ** 2)

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    forward = jax.jit(loss)
    _, (g_u0, g_c, g_nu) = value_and_grad(u0, 1.0, 0.1)
    direction = jnp.sin(2 * x + 1.0)
    # Central differences in float64 with steps of 1e-5 of each argument's scale (ν = 0.1 gets
    # 1e-6): truncation ~ (step/scale)² ~ 1e-10 relative, rounding ~ 1e-16/1e-5 ~ 1e-11.
    h = 1e-5
    fd_u0 = forward(u0 + h * direction, 1.0, 0.1) - forward(u0 - h * direction, 1.0, 0.1)
    fd_c = forward(u0, 1.0 + h, 0.1) - forward(u0, 1.0 - h, 0.1)
    fd_nu = forward(u0, 1.0, 0.1 + 0.1 * h) - forward(u0, 1.0, 0.1 - 0.1 * h)
    np.testing.assert_allclose(jnp.vdot(g_u0, direction), fd_u0 / (2 * h), rtol=1e-8)
    np.testing.assert_allclose(g_c, fd_c / (2 * h), rtol=1e-8)
    np.testing.assert_allclose(g_nu, fd_nu / (0.2 * h), rtol=1e-8)


def test_vmap_over_initial_conditions_equals_a_loop():
    grid = PeriodicGrid(length=32 * math.pi, n=64)
    solver = kuramoto_sivashinsky(grid=grid, dt0=0.25)
    u0s = 0.1 * jax.random.normal(jax.random.key(0), (3, 64))
    rollout = jax.jit(lambda u: solver.rollout(u, 20, save_every=5))
    batched = jax.jit(jax.vmap(lambda u: solver.rollout(u, 20, save_every=5)))(u0s)
    assert batched.shape == (3, 5, 64)
    looped = np.stack([rollout(u) for u in u0s])
    np.testing.assert_allclose(batched, looped, rtol=0, atol=1e-13)  # the same arithmetic
    np.testing.assert_allclose(batched[:, 0], u0s)  # u0 itself is saved first
    one_step = jax.jit(lambda u: (solver.step(u), solver.rollout(u, 1)))(u0s[0])
    np.testing.assert_allclose(*one_step, rtol=0, atol=1e-15)  # step is rollout's step


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="n must be even"):
        PeriodicGrid(length=1.0, n=33)
    with pytest.raises(ValueError, match="n must be an int >= 4"):
        PeriodicGrid(length=1.0, n=2)
    with pytest.raises(ValueError, match="length must be a positive number"):
        PeriodicGrid(length=0.0, n=16)
    with pytest.raises(ValueError, match="ndim must be 1 or 2"):
        PeriodicGrid(length=1.0, n=16, ndim=3)
    grid = PeriodicGrid(length=1.0, n=16)
    for dt in (0.0, -0.1):
        with pytest.raises(ValueError, match="dt0 must be a positive number"):
            burgers(grid=grid, dt0=dt)
    solver = burgers(grid=grid, dt0=0.1)
    with pytest.raises(ValueError, match=r"u0 must be one field of the grid's shape \(16,\)"):
        solver.rollout(jnp.zeros(17), 3)
    with pytest.raises(ValueError, match=r"u must be one field .* got shape \(2, 16\)"):
        solver.step(jnp.zeros((2, 16)))
    with pytest.raises(ValueError, match="save_every=2 must divide num_steps=3"):
        solver.rollout(jnp.zeros(16), 3, save_every=2)
    with pytest.raises(ValueError, match="num_steps must be an int >= 1"):
        solver.rollout(jnp.zeros(16), 0)
    with pytest.raises(ValueError, match=r"linear_symbol must have .* \(9,\), got shape \(8,\)"):
        ETDRK4(jnp.zeros(8), Convection(), grid=grid, dt0=0.1)
    with pytest.raises(ValueError, match=r"nonlinear\(u_hat, grid\) must return .* \(9,\)"):
        ETDRK4(lambda k: -(k**2), lambda v, grid: v[:4], grid=grid, dt0=0.1)
    with pytest.raises(ValueError, match="needs a 2-D grid"):
        navier_stokes_vorticity(grid=grid, dt0=0.1)
    with pytest.raises(ValueError, match="drag must be a non-negative number"):
        navier_stokes_vorticity(grid=PeriodicGrid(length=1.0, n=8, ndim=2), dt0=0.1, drag=-1.0)
    with pytest.raises(TypeError, match="kuramoto_sivashinsky needs grid=PeriodicGrid"):
        kuramoto_sivashinsky(grid=(16,), dt0=0.1)
    with pytest.raises(TypeError, match="grid must be a PeriodicGrid"):
        ETDRK4(jnp.zeros(9), Convection(), grid=(16,), dt0=0.1)
    with pytest.raises(TypeError, match="nonlinear must be callable"):
        ETDRK4(jnp.zeros(9), 1.0, grid=grid, dt0=0.1)
    with pytest.raises(TypeError, match="u must be a real floating array, got dtype int"):
        solver.step(jnp.zeros(16, int))
    with pytest.raises(ValueError, match=r"axis must be in \[0, 1\), got axis=1"):
        grid.derivative(jnp.zeros(9, complex), axis=1)
