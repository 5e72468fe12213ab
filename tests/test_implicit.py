import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_difference

from jaxdyn.implicit import (
    InnerProblem,
    LinearSolve,
    Neumann,
    Truncated,
    argmin,
    fixed_point,
    hypergradient,
    neumann_solve,
    root,
    steady_state,
)

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(40, 6)))
Y = X @ jnp.asarray(RNG.normal(size=6)) + 0.3 * jnp.asarray(RNG.normal(size=40))
XV = jnp.asarray(RNG.normal(size=(25, 6)))
YV = XV @ jnp.asarray(RNG.normal(size=6))


# --- root ------------------------------------------------------------------------------------


def value_and_jacobian(f, x):
    """`f(x)` and `∂f/∂x` (rows: outputs) from one forward solve: reverse mode, since the
    implicit solvers' custom VJPs have no forward mode. One compiled program (eagerly, the
    vmapped pullback dispatches ~25 small ones)."""

    @jax.jit
    def run(x):
        y, pullback = jax.vjp(f, x)
        (rows,) = jax.vmap(pullback)(jnp.eye(y.size, dtype=y.dtype).reshape(-1, *y.shape))
        return y, rows.reshape(y.shape + jnp.shape(x))

    return run(x)


def cubic(x, theta):
    return x**3 + theta * x - 1.0  # root x*: dx*/dθ = -x* / (3x*² + θ)


@pytest.mark.parametrize("solver, kw", [
    ("newton", {}), ("broyden", {}), ("bisection", dict(bracket=(0.0, 2.0))),
])  # fmt: skip
def test_root_gradient_matches_closed_form(solver, kw):
    solve = lambda th: root(cubic, jnp.array(0.5), th, solver=solver, tol=1e-11, **kw)[0]  # noqa: E731
    x, grad = jax.jit(jax.value_and_grad(solve))(2.0)  # one forward solve, one program
    assert abs(float(cubic(x, 2.0))) < 1e-9
    # Forward tolerance 1e-11: the implicit gradient is exact to ~1e-9.
    assert float(grad) == pytest.approx(float(-x / (3 * x**2 + 2.0)), rel=1e-8)


def test_root_jacobian_of_linear_system_and_closure():
    A = jnp.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 4.0]])
    J = jax.jit(jax.jacobian(lambda b: root(lambda x, b: A @ x - b, jnp.zeros(3), b)[0]))(
        jnp.ones(3)
    )
    np.testing.assert_allclose(J, jnp.linalg.inv(A), atol=1e-10)

    def through_closure(s):  # `s` is captured by F, not passed as theta
        return root(lambda x, b: s * (A @ x) - b, jnp.zeros(3), jnp.ones(3))[0].sum()

    exact = jax.grad(lambda s: jnp.linalg.solve(s * A, jnp.ones(3)).sum())(2.0)
    assert float(jax.jit(jax.grad(through_closure))(2.0)) == pytest.approx(float(exact), rel=1e-9)


def test_root_pytree_and_vmap():
    def F(x, theta):
        return {"a": x["a"] - theta["c"] * jnp.tanh(x["b"]), "b": x["b"] - 0.5 * x["a"]}

    x0 = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
    thetas = {"c": jnp.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])}
    xs, info = jax.vmap(lambda th: root(F, x0, th))(thetas)
    assert xs["a"].shape == (3, 2) and info.converged.shape == (3,)
    assert bool(jnp.all(info.converged))
    f = lambda c: root(F, x0, {"c": jnp.full(2, c)})[0]["a"][0]  # noqa: E731
    value_and_grad = jax.jit(jax.value_and_grad(f))  # one compile: the gradient and the FD values
    value = lambda c: value_and_grad(c)[0]  # noqa: E731
    assert float(value_and_grad(0.3)[1]) == pytest.approx(central_difference(value, 0.3), rel=1e-6)


def test_root_failure_policies():
    kw = dict(solver="broyden", max_steps=2, tol=1e-12)
    message = "root: solver='broyden' did not converge.*raise max_steps"
    with pytest.raises(RuntimeError, match=message):
        jax.block_until_ready(root(cubic, jnp.array(0.5), 2.0, **kw)[0])
    x, info = root(cubic, jnp.array(0.5), 2.0, on_failure="return", **kw)
    assert not bool(info.converged) and int(info.iterations) == 2 and bool(jnp.isfinite(x))
    f = lambda th: root(cubic, jnp.array(0.5), th, on_failure="nan", **kw)[0]  # noqa: E731
    assert bool(jnp.isnan(f(2.0))) and bool(jnp.isnan(jax.grad(f)(2.0)))  # never a silent grad


def test_failed_linear_solve_is_reported():
    A = jnp.array([[0.0, 1.0], [-1.0, 0.0]])  # a rotation: not symmetric positive-definite

    def solve(b, linear_solver):
        return root(lambda x, b: A @ x - b, jnp.zeros(2), b, linear_solver=linear_solver)[0]

    jacobian = jax.jit(jax.jacobian(solve), static_argnums=1)  # one program per linear solver
    np.testing.assert_allclose(jacobian(jnp.ones(2), "gmres"), jnp.linalg.inv(A))
    with pytest.raises(RuntimeError, match="cg needs a symmetric positive-definite"):
        jax.block_until_ready(jacobian(jnp.ones(2), "cg"))


@pytest.mark.parametrize("call, match", [
    (lambda: root(cubic, jnp.array(0.5), 2.0, solver="secant"), "unknown solver='secant'"),
    (lambda: root(cubic, jnp.array(0.5), 2.0, solver="bisection"), "needs bracket"),
    (lambda: root(lambda x, t: jnp.ones(3), jnp.zeros(2), 1.0), r"must return the structure"),
    (lambda: root(lambda x, t: x @ jnp.ones(5), jnp.zeros(2), 1.0), "F could not be evaluated"),
    (lambda: root(cubic, jnp.array(0.5), 2.0, on_failure="warn"), "unknown on_failure"),
    (lambda: root(cubic, jnp.array(0.5), 2.0, linear_solver="qr"), "unknown linear_solver='qr'"),
])  # fmt: skip
def test_root_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- fixed point ------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["iteration", "anderson"])
def test_linear_fixed_point_closed_form(solver):
    A = jnp.array([[0.5, 0.1], [0.2, 0.3]])
    b = jnp.array([1.0, 2.0])
    solve = lambda th: fixed_point(lambda x, t: A @ x + b * t, jnp.zeros(2), th,  # noqa: E731
                                   solver=solver, tol=1e-12)[0]  # fmt: skip
    exact = jnp.linalg.solve(jnp.eye(2) - A, b)  # x* = (I - A)⁻¹ b θ
    x, jacobian = value_and_jacobian(solve, 1.5)
    np.testing.assert_allclose(x, 1.5 * exact, atol=1e-10)
    np.testing.assert_allclose(jacobian, exact, atol=1e-10)


def test_fixed_point_of_expansion_fails_clearly():
    with pytest.raises(RuntimeError, match="check that T is a contraction"):
        jax.block_until_ready(
            fixed_point(lambda x, t: 2.0 * x + t, jnp.ones(2), 1.0, solver="iteration")[0]
        )


# --- argmin -----------------------------------------------------------------------------------


def ridge(w, lam):
    return 0.5 * jnp.mean((X @ w - Y) ** 2) + 0.5 * lam * jnp.sum(w**2)


def ridge_exact(lam):
    n = X.shape[0]
    return jnp.linalg.solve(X.T @ X / n + lam * jnp.eye(6), X.T @ Y / n)


@pytest.mark.parametrize("solver, tol", [("lbfgs", 1e-10), ("gradient_descent", 1e-8)])
def test_argmin_ridge_solution_and_jacobian(solver, tol):
    solve = lambda lam: argmin(ridge, jnp.zeros(6), lam, solver=solver, tol=tol,  # noqa: E731
                               max_steps=20_000)[0]  # fmt: skip
    w, jacobian = value_and_jacobian(solve, 0.3)
    np.testing.assert_allclose(w, ridge_exact(0.3), atol=1e-7)
    # the Jacobian error follows the forward tolerance
    np.testing.assert_allclose(jacobian, jax.jacobian(ridge_exact)(0.3), atol=1e-6)


def test_lasso_gradient_matches_finite_differences():
    step = 1.0 / float(jnp.linalg.eigvalsh(X.T @ X / X.shape[0]).max())

    def solve(lam):
        w, _ = argmin(lambda w, t: 0.5 * jnp.mean((X @ w - Y) ** 2), jnp.zeros(6), None,
                      solver="prox_gradient", prox="lasso", hyperparams=lam, step_size=step,
                      tol=1e-11, max_steps=50_000, linear_solver="gmres")  # fmt: skip
        return w

    # One compile serves the Jacobian and the three forward solves (its values).
    solve_and_jacobian = jax.jit(lambda lam: value_and_jacobian(solve, lam))
    w, jacobian = solve_and_jacobian(0.5)
    assert 0 < int(jnp.sum(w == 0)) < 6  # some coordinates are exactly zero
    forward = lambda lam: solve_and_jacobian(lam)[0]  # noqa: E731
    np.testing.assert_allclose(
        jacobian, (forward(0.5 + 1e-6) - forward(0.5 - 1e-6)) / 2e-6, atol=1e-6
    )


def test_simplex_projection_jacobian_closed_form():
    c = jnp.array([0.5, 0.3, -0.2, 0.1])

    def solve(c):
        return argmin(lambda w, c: 0.5 * jnp.sum((w - c) ** 2), jnp.ones(4) / 4, c,
                      solver="projected_gradient", projection="simplex", step_size=1.0,
                      tol=1e-12, linear_solver="gmres")[0]  # fmt: skip

    w, jacobian = value_and_jacobian(solve, c)
    np.testing.assert_allclose(w, [8 / 15, 1 / 3, 0.0, 2 / 15], atol=1e-10)
    active = jnp.array([1.0, 1.0, 0.0, 1.0])
    exact = jnp.diag(active) - jnp.outer(active, active) / 3  # projection onto the face
    np.testing.assert_allclose(jacobian, exact, atol=1e-9)


@pytest.mark.parametrize("kwargs, match", [
    (dict(solver="prox_gradient"), "needs prox="),
    (dict(solver="projected_gradient"), "needs projection="),
    (dict(solver="lbfgs", prox="lasso"), "is unconstrained"),
    (dict(solver="lbfgs", step_size=0.1), "lbfgs uses its own line search"),
    (dict(solver="prox_gradient", prox="lasso2", hyperparams=1.0), "unknown prox='lasso2'"),
    (dict(solver="projected_gradient", projection="cube"), "unknown projection='cube'"),
    (dict(solver="newton"), "unknown solver='newton'"),
])  # fmt: skip
def test_argmin_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        argmin(ridge, jnp.zeros(6), 0.1, **kwargs)


def test_argmin_needs_scalar_objective():
    with pytest.raises(ValueError, match="must return a scalar"):
        argmin(lambda w, t: w, jnp.zeros(3), 0.1)


# --- hypergradients -----------------------------------------------------------------------------


def inner_ridge(w, loglam):
    return 0.5 * jnp.mean((X @ w - Y) ** 2) + 0.5 * jnp.sum(jnp.exp(loglam) * w**2)


def validation(w, loglam):
    return 0.5 * jnp.mean((XV @ w - YV) ** 2)


def exact_hypergradient(loglam):
    return jax.grad(lambda t: validation(ridge_exact_vec(t), t))(loglam)


def ridge_exact_vec(loglam):
    n = X.shape[0]
    return jnp.linalg.solve(X.T @ X / n + jnp.diag(jnp.exp(loglam) * jnp.ones(6)), X.T @ Y / n)


def problem(max_steps):
    smooth = float(jnp.linalg.eigvalsh(X.T @ X / X.shape[0]).max()) + 1.0
    return InnerProblem(inner_ridge, jnp.zeros(6), step_size=1 / smooth, max_steps=max_steps,
                        tol=1e-8)  # fmt: skip


@pytest.mark.parametrize("mode, forward", [
    ("implicit", "gradient_descent"), ("implicit", "lbfgs"), ("unrolled", "gradient_descent"),
])  # fmt: skip
def test_hypergradient_matches_closed_form(mode, forward):
    theta = jnp.log(jnp.full(6, 0.1)) + jnp.linspace(-1, 1, 6)  # one λ per feature
    inner = dataclasses.replace(problem(2000), solver=forward)
    # One program (eagerly, each inner solve and linear solve compiles on its own).
    run = jax.jit(lambda theta: hypergradient(validation, inner, theta, mode=mode))
    (value, grad), info = run(theta)
    assert bool(info.converged)
    # Inner problem solved to |∇f| ≤ 1e-8 in float64: relative error well below 1e-6.
    np.testing.assert_allclose(grad, exact_hypergradient(theta), rtol=1e-6, atol=1e-12)
    assert float(value) == pytest.approx(float(validation(ridge_exact_vec(theta), theta)))


def test_truncated_and_neumann_approximate_from_both_sides():
    theta = jnp.log(0.1)
    exact = float(exact_hypergradient(theta))
    inner = problem(2000)

    @functools.cache  # each mode is one program, solved once (Neumann(500) is asked twice)
    def err(mode):
        run = jax.jit(lambda theta: hypergradient(validation, inner, theta, mode=mode))
        (_, grad), _ = run(theta)
        return abs(float(grad) - exact)

    assert err(Truncated(2000)) < 1e-8  # truncating nothing is unrolling
    assert err("truncated(1)") > err("truncated(20)") > 1e-8
    assert err(Neumann(2)) > err("neumann(50)") > err(Neumann(500))
    assert err(Neumann(500)) < 1e-6 * abs(exact)


def test_implicit_hypergradient_refuses_unconverged_inner_problem():
    with pytest.raises(RuntimeError, match="inner problem did not converge"):
        jax.block_until_ready(hypergradient(validation, problem(5), jnp.log(0.1))[0])
    # The pitfall this guards against: 5 steps give a far-off implicit gradient.
    (_, grad), info = hypergradient(validation, problem(5), jnp.log(0.1), on_failure="return")
    assert not bool(info.converged)
    assert abs(float(grad) - float(exact_hypergradient(jnp.log(0.1)))) > 1e-3


def test_neumann_solve_inverts_a_contraction():
    A = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    b = jnp.array([1.0, -1.0])
    v = neumann_solve(lambda x: A @ x, b, k=200, alpha=0.4)
    np.testing.assert_allclose(v, jnp.linalg.solve(A, b), atol=1e-10)


def test_bad_mode():
    with pytest.raises(ValueError, match="unknown mode='truncated'"):
        hypergradient(validation, problem(5), 0.0, mode="truncated")


# --- steady states -----------------------------------------------------------------------------


def relaxing(t, y, theta):
    A = jnp.array([[2.0, 0.5, 0.0], [0.3, 1.5, 0.2], [0.0, 0.4, 1.0]])
    return -A @ y + jnp.tanh(theta["W"] @ y) + theta["b"]


THETA = {"W": 0.3 * jnp.eye(3), "b": jnp.array([1.0, -0.5, 0.2])}


def test_steady_state_agrees_with_root():
    def summed(solve):  # one forward solve gives the solution and the gradient
        def loss(theta):
            y, info = solve(theta)
            return y.sum(), (y, info)

        return jax.grad(loss, has_aux=True)(THETA)

    g_ss, (y, info) = summed(lambda th: steady_state(relaxing, jnp.zeros(3), th))
    assert bool(info.converged) and int(info.iterations) > 0
    g_root, (y_root, _) = summed(
        lambda th: root(lambda y, t: relaxing(0.0, y, t), jnp.zeros(3), th, tol=1e-12)
    )
    np.testing.assert_allclose(y, y_root, atol=1e-7)  # the event fires at |f| < 1e-8 (+ rtol)
    for a, b in zip(jax.tree.leaves(g_ss), jax.tree.leaves(g_root), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("tol", [None, 1e-3, 1e-5])
def test_steady_state_in_float32_at_loose_and_default_tolerances(tol):
    """With the event at the steps' own tolerance Tsit5 hovered at its stability limit with a
    residual of ~6x tol and never stopped (1e-5: 6e-5, 4096 steps); the default in float32 is
    100 eps, since 1e-8 is below float32's rounding of the residual."""
    A = jnp.array([[3.0, 1.0], [1.0, 2.0]], jnp.float32)
    theta = jnp.array([1.0, -0.5], jnp.float32)
    field = lambda t, y, th: th - A @ y - jnp.tanh(y)  # noqa: E731
    y, info = steady_state(field, jnp.zeros(2, jnp.float32), theta, rtol=tol, atol=tol)
    bound = 1.2e-5 if tol is None else tol  # 100 eps(float32)
    assert y.dtype == jnp.float32 and bool(info.converged) and int(info.iterations) < 100
    # the event tests the RMS norm against atol + rtol |y|_rms; info.error is the 2-norm (n=2)
    assert float(info.error) < 2**0.5 * bound * (1 + float(jnp.sqrt(jnp.mean(y**2))))


def test_steady_state_names_a_bad_tolerance():
    with pytest.raises(ValueError, match=r"atol must be a positive number, got -1e-06"):
        steady_state(relaxing, jnp.zeros(3), THETA, atol=-1e-6)


def test_steady_state_of_an_oscillator_fails_clearly():
    def rotation(t, y, theta):
        return jnp.array([y[1], -y[0]])  # circles forever: no rest

    with pytest.raises(RuntimeError, match="steady_state: no equilibrium reached"):
        jax.block_until_ready(steady_state(rotation, jnp.array([1.0, 0.0]), None, max_steps=300)[0])
    _, info = steady_state(rotation, jnp.array([1.0, 0.0]), None, t_max=5.0, on_failure="return")
    assert not bool(info.converged)


def test_tiny_cotangents_still_solve():
    """Krylov solves are normalised: a cotangent of 1e-30 gives the same direction."""
    A = jnp.array([[3.0, 1.0], [0.5, 2.0]])
    solve = lambda b: root(lambda x, b: A @ x - b, jnp.zeros(2), b)[0]  # noqa: E731
    _, vjp = jax.vjp(solve, jnp.ones(2))
    (small,) = vjp(jnp.array([1e-30, 2e-30]))
    np.testing.assert_allclose(small * 1e30, jnp.linalg.solve(A.T, jnp.array([1.0, 2.0])))


def test_inner_problem_bad_input():
    with pytest.raises(ValueError, match="unknown solver='newton'"):
        InnerProblem(inner_ridge, jnp.zeros(6), step_size=0.1, max_steps=10, solver="newton")
    with pytest.raises(ValueError, match="max_steps must be an int >= 1"):
        InnerProblem(inner_ridge, jnp.zeros(6), step_size=0.1, max_steps=0)


def test_linear_solve_settings_and_bad_input():
    """A name means the default settings; bad settings are named before anything runs."""
    from jaxdyn.implicit._linear import as_linear_solve

    assert as_linear_solve("cg") == LinearSolve("cg", tol=1e-10, max_steps=None, check=1e-3)
    custom = LinearSolve("lu", check=None)
    assert as_linear_solve(custom) is custom
    for bad, message in [(dict(tol=0.0), "tol=0.0"), (dict(max_steps=0), "max_steps=0"),
                         (dict(check=-1.0), "check=-1.0")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            LinearSolve(**bad)
    with pytest.raises(TypeError, match="linear_solver=3"):
        root(lambda x, t: x - t, jnp.zeros(2), jnp.ones(2), linear_solver=3)


def test_hypergradient_checks_its_linear_solve():
    """One CG step cannot solve the 6x6 Hessian system: reported, not a silent gradient."""
    one_step = LinearSolve("cg", max_steps=1)
    call = lambda **kw: hypergradient(validation, problem(2000), jnp.log(0.1),  # noqa: E731
                                      linear_solver=one_step, **kw)[0][1]  # fmt: skip
    with pytest.raises(RuntimeError, match="hypergradient: the implicit-function linear system"
                       ) as failure:  # fmt: skip
        jax.block_until_ready(call())
    assert "linear_solver=LinearSolve(..., max_steps=...)" in str(failure.value)  # the remedy
    assert bool(jnp.isnan(call(on_failure="nan")))
