"""Closures for coarse pseudo-spectral solvers (`jaxdyn.physics`): the sharp filter is a
projection, the subgrid term against its closed form (zero for a band-limited field, the
difference-frequency term of two modes otherwise), and the gradient of a coarse rollout with
respect to a closure's parameters against finite differences (float64, tests/conftest.py)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxdyn.physics import (
    ETDRK4,
    ClosedNonlinear,
    ConvClosure,
    Convection,
    PeriodicGrid,
    SmagorinskyClosure,
    coarse_grain,
    lowpass,
    refine,
    resolved_modes,
    subgrid_term,
)

LENGTH = 2 * math.pi * 4  # k = m / 4
FINE = PeriodicGrid(length=LENGTH, n=64)  # resolves |m| < 64/3
COARSE = PeriodicGrid(length=LENGTH, n=16)  # resolves |m| < 16/3: m <= 5


def _modes(grid: PeriodicGrid, coefficients: dict[int, float]) -> jax.Array:
    k0 = 2 * math.pi / grid.length
    x = grid.points
    return sum(c * jnp.cos(m * k0 * x + 0.3 * m) for m, c in coefficients.items())


def test_filters_are_projections_and_refine_inverts_coarse_grain():
    u = jax.random.normal(jax.random.key(0), (3, FINE.n))
    p = lowpass(u, FINE, 6)
    np.testing.assert_allclose(lowpass(p, FINE, 6), p, atol=1e-13)  # P P = P
    v = jax.random.normal(jax.random.key(1), (FINE.n,))
    np.testing.assert_allclose(jnp.dot(lowpass(v, FINE, 6), u[0]), jnp.dot(v, p[0]), rtol=1e-12)
    # F̄ keeps exactly the coarse band (|m| < 16/3): refine(F̄ u) is the low-pass on the fine grid
    assert resolved_modes(COARSE) == 6
    u_bar = coarse_grain(u, FINE, COARSE)
    np.testing.assert_allclose(refine(u_bar, COARSE, FINE), p, atol=1e-13)
    np.testing.assert_allclose(coarse_grain(refine(u_bar, COARSE, FINE), FINE, COARSE), u_bar,
                               atol=1e-13)  # fmt: skip
    # a field with modes 2 and 9: F̄ keeps mode 2, sampled on the coarse points
    field = _modes(FINE, {2: 1.0, 9: 0.5})
    np.testing.assert_allclose(coarse_grain(field, FINE, COARSE), _modes(COARSE, {2: 1.0}),
                               atol=1e-13)  # fmt: skip


def test_subgrid_term_matches_its_closed_form():
    # u = cos(2 k0 x + φ2) + cos(3 k0 x + φ3): every product mode (1, 4, 5, 6) that the coarse
    # band keeps is computed from resolved modes alike on both grids, so τ = 0
    band_limited = _modes(FINE, {2: 1.0, 3: 0.7})
    tau = subgrid_term(band_limited, Convection(), FINE, COARSE)
    np.testing.assert_allclose(tau, 0.0, atol=1e-12)
    # u = a cos(θ_a) + b cos(θ_b) with mode 2 resolved and mode 9 not: −½(u²)_x holds
    # −½ a b ∂ₓ cos(θ_b − θ_a) at mode 7 (outside too) — choose 2 and 7: difference mode 5
    a, b = 1.0, 0.5
    u = _modes(FINE, {2: a, 7: b})
    k0 = 2 * math.pi / LENGTH
    x = COARSE.points
    # τ = F̄[−½ ∂ₓ (a b cos((7−2) k0 x + 0.3 (7−2)))] = ½ a b 5 k0 sin(5 k0 x + 1.5)
    expected = 0.5 * a * b * 5 * k0 * jnp.sin(5 * k0 * x + 1.5)
    np.testing.assert_allclose(subgrid_term(u, Convection(), FINE, COARSE), expected, atol=1e-12)


def test_rollout_gradient_matches_finite_differences():
    # a conv closure and a Smagorinsky one together (one compiled program): 3 coarse steps
    conv = ConvClosure(width=3, depth=2, kernel_size=3, key=jax.random.key(0))
    # the last layer starts at zero (C = 0): give it weights so every parameter matters
    weight = 0.3 * jax.random.normal(jax.random.key(1), conv.layers[-1].weight.shape)
    conv = eqx.tree_at(lambda c: c.layers[-1].weight, conv, weight)
    closures = (conv, SmagorinskyClosure(0.5))
    params, static = eqx.partition(closures, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    u0 = _modes(COARSE, {1: 1.0, 3: 0.4})

    def loss(theta):
        conv, smagorinsky = eqx.combine(unravel(theta), static)
        nonlinear = ClosedNonlinear(ClosedNonlinear(Convection(), conv), smagorinsky)
        solver = ETDRK4(lambda k: k**2 - k**4, nonlinear, grid=COARSE, dt0=0.1)
        return jnp.sum(solver.rollout(u0, 3) ** 2)

    @jax.jit
    def compare(theta, direction, eps):
        grad = jax.grad(loss)(theta) @ direction
        fd = (loss(theta + eps * direction) - loss(theta - eps * direction)) / (2 * eps)
        return grad, fd

    directions = jax.random.normal(jax.random.key(2), (2, flat.size))
    directions = directions.at[1].set(jnp.zeros(flat.size).at[-1].set(1.0))  # c alone
    for direction in directions:
        grad, fd = compare(flat, direction, 1e-6)
        assert abs(grad) > 1e-3
        np.testing.assert_allclose(grad, fd, rtol=1e-6)


def test_closures_conserve_the_mean_and_commute_with_shifts():
    fresh = ConvClosure(width=3, depth=2, kernel_size=3, key=jax.random.key(0))
    conv = eqx.tree_at(lambda c: c.layers[-1].weight, fresh,
                       jnp.ones_like(fresh.layers[-1].weight))  # fmt: skip
    u = _modes(COARSE, {1: 1.0, 2: 0.5})

    @jax.jit
    def apply(models, u):  # every closure on u and on u shifted by 3 points (one program)
        fields = jnp.stack([u, jnp.roll(u, 3)])
        return [jax.vmap(lambda v, m=m: COARSE.irfft(m(COARSE.rfft(v), COARSE)))(fields)
                for m in models]  # fmt: skip

    smagorinsky = SmagorinskyClosure(0.2)
    (zero, _), (c, shifted), (s, s_shifted) = apply((fresh, conv, smagorinsky), u)
    np.testing.assert_allclose(zero, 0.0)  # a fresh closure is C = 0
    for out, out_shifted in ((c, shifted), (s, s_shifted)):
        assert abs(float(jnp.mean(out))) < 1e-14 and float(jnp.max(jnp.abs(out))) > 1e-3
        np.testing.assert_allclose(out_shifted, jnp.roll(out, 3), atol=1e-13)
    # Smagorinsky dissipates: ∫ u C dx = −c Δ² ∫ |u_x|³ dx
    u_x = COARSE.irfft(COARSE.derivative(COARSE.rfft(u)))
    width = LENGTH / COARSE.n
    np.testing.assert_allclose(jnp.mean(u * s), -0.2 * width**2 * jnp.mean(jnp.abs(u_x) ** 3),
                               rtol=1e-12)  # fmt: skip
