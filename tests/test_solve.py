import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest
import scipy.linalg
from helpers import central_difference, compiled, decay, linear_system, oscillator

from jaxdyn import RESULTS, odeint
from jaxdyn._solvers import ADJOINTS, RK4, SOLVERS, fevals, resolve_solver
from jaxdyn.solve._common import check_options

# --- convergence order against closed forms ---------------------------------------------


def logistic(t, y, args):
    return y * (1 - y)


def logistic_exact(t, y0=0.1):
    return 1 / (1 + (1 / y0 - 1) * np.exp(-t))


def implicit(cls):
    # Fixed steps need the Newton iteration's own tolerances (well below the truncation error).
    return cls(root_finder=dfx.VeryChord(rtol=1e-10, atol=1e-10, norm=optx.max_norm))


# (solver, expected order, step counts in the asymptotic regime). Every solver name runs the
# same jaxdyn path (`resolve_solver`, then Diffrax); whose order Diffrax's own suite checks.
# Here: RK4, jaxdyn's own tableau (explicit, fixed steps only), on the nonlinear logistic
# equation (a linear problem lets some tableaus superconverge), and one implicit solver (fixed
# steps with the Newton iteration's own tolerances, a branch of `stepsize_controller`) on
# linear decay (its chord iteration diverges on the logistic at h = 0.25). The name -> class
# table is checked entry by entry in test_solver_and_adjoint_names_map_to_their_classes.
EXPLICIT_ORDERS = [("rk4", 4, (16, 32))]
IMPLICIT_ORDERS = [("kvaerno5", dfx.Kvaerno5, 5, (8, 16))]


def observed_order(solver, field, y0, exact, counts, t1=2.0):
    # dt0 traced, with a step budget that fits both counts: one program for both step sizes.
    kw = dict(y0=y0, ts=[0.0, t1], solver=solver, max_steps=max(counts) + 1)
    errors = [
        float(jnp.abs(compiled(odeint, field, dt0=jnp.asarray(t1 / n), **kw).ys[-1, 0] - exact))
        for n in counts
    ]
    return np.log2(errors[0] / errors[1])


@pytest.mark.parametrize("solver, order, counts", EXPLICIT_ORDERS)
def test_explicit_solver_order(solver, order, counts):
    slope = observed_order(solver, logistic, jnp.array([0.1]), logistic_exact(2.0), counts)
    # Halving h divides the error by ~2^order; 0.5 allows for pre-asymptotic constants
    # (RK4 measures within 0.05 of its order or above).
    assert order - 0.5 <= slope <= order + 1.0


def test_rk4_is_the_classical_tableau_with_four_evaluations_a_step():
    # On dy/dt = λy a step of classical RK4 multiplies y by R(λh) = 1 + z + z²/2 + z³/6 + z⁴/24
    # (z = λh), the Taylor polynomial of exp(z) to fourth order, so n steps give R(λ/n)^n.
    for n in (3, 8):  # dt0 traced: one program for both step sizes
        kw = dict(y0=jnp.ones(1), ts=[0.0, 1.0], solver="rk4", max_steps=9)
        sol = compiled(odeint, decay, dt0=jnp.asarray(1.0 / n), **kw)
        z = -1.0 / n
        exact_method = (1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24) ** n
        # float64 rounding over at most 8 steps.
        np.testing.assert_allclose(float(sol.ys[-1, 0]), exact_method, rtol=1e-13)
        assert int(sol.stats.num_fevals) == 4 * n  # not first-same-as-last: 4 stages a step
    with pytest.raises(ValueError, match="RK4 has no error estimate"):
        odeint(decay, jnp.ones(1), jnp.array([0.0, 1.0]), solver="rk4", rtol=1e-6)


@pytest.mark.parametrize("name, cls, order, counts", IMPLICIT_ORDERS)
def test_implicit_solver_order(name, cls, order, counts):
    slope = observed_order(implicit(cls), decay, jnp.array([1.0]), np.exp(-2.0), counts)
    assert order - 0.5 <= slope <= order + 1.0


# Adaptive steps: one explicit solver here (the default), one implicit in the next test (its
# Newton iteration takes the step-size tolerances); the other names are the same jaxdyn path.
@pytest.mark.parametrize("solver", ["tsit5"])
def test_adaptive_harmonic_oscillator_pytree_state(solver):
    ts = jnp.linspace(0.0, 2 * np.pi, 7)
    sol = compiled(
        odeint,
        oscillator,
        y0=(jnp.array(1.0), jnp.array(0.0)),
        ts=ts,
        solver=solver,
        rtol=1e-8,
        atol=1e-8,
        max_steps=100_000,
    )
    x, v = sol.ys
    # Global error of a tolerance-1e-8 solve over one period: well under 1e-5.
    np.testing.assert_allclose(x, np.cos(ts), atol=1e-5)
    np.testing.assert_allclose(v, -np.sin(ts), atol=1e-5)
    assert bool(sol.succeeded)


def _linear(t, y, args):
    return args @ y


@pytest.mark.parametrize("solver", ["kvaerno5"])
def test_linear_system_matches_expm(solver):
    M, y0 = linear_system()
    ts = jnp.linspace(0.0, 3.0, 5)
    kw = dict(y0=y0, ts=ts, args=M, solver=solver, rtol=1e-10, atol=1e-10)
    sol = compiled(odeint, _linear, **kw)
    # SciPy: eager jax.scipy.linalg.expm compiles its many operations one by one.
    exact = np.stack([scipy.linalg.expm(np.asarray(M) * t) @ np.asarray(y0) for t in ts])
    np.testing.assert_allclose(sol.ys, exact, atol=1e-7)  # tol 1e-10, accumulated over 3 s


# --- batching -----------------------------------------------------------------------------


def test_batch_modes_agree_with_loop():
    M, _ = linear_system(1)
    y0 = np.random.default_rng(0).normal(size=(4, 3))  # NumPy: slicing it compiles nothing
    ts = np.linspace(0.0, 1.0, 4)
    field = lambda t, y, args: M @ y  # noqa: E731
    kw = dict(rtol=1e-9, atol=1e-9)
    loop = np.stack([compiled(odeint, field, y0=y, ts=ts, **kw).ys for y in y0])
    vm = compiled(odeint, field, y0=y0, ts=ts, batch="vmap", **kw)
    joint = compiled(odeint, field, y0=y0, ts=ts, batch="joint", **kw)
    assert vm.ys.shape == joint.ys.shape == (4, 4, 3)
    np.testing.assert_allclose(vm.ys, loop, rtol=0, atol=1e-12)  # same steps per sample
    np.testing.assert_allclose(joint.ys, loop, atol=1e-7)  # other steps, same tolerance
    assert vm.stats.num_steps.shape == (4,) and joint.stats.num_steps.shape == ()


def _negative(t, y, args):
    return jax.tree.map(jnp.negative, y)


def test_any_pytree_state():
    # One state with leaves of every rank the property test drew (0, 1, 2; sizes 1 to 3) and
    # nesting: one program, where 8 drawn dictionaries compiled 8 (the same jaxdyn path:
    # `check_y0` and `check_field` walk any pytree; Diffrax solves it).
    # NumPy in and out: eager jnp.ones and indexing would compile a program per shape.
    shapes = {"a": (), "b": (3,), "c": (2, 1), "d": {"e": (1,), "f": (3, 2)}}
    y0 = jax.tree.map(np.ones, shapes, is_leaf=lambda x: isinstance(x, tuple))
    sol = compiled(odeint, _negative, y0=y0, ts=[0.0, 0.5, 1.0], rtol=1e-8, atol=1e-8)
    ys = jax.tree.map(np.asarray, sol.ys)
    for s, y in zip(jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(x, tuple)),
                    jax.tree.leaves(ys), strict=True):  # fmt: skip
        assert y.shape == (3, *s)
        np.testing.assert_allclose(y[-1], np.exp(-1.0) * np.ones(s), rtol=1e-6)


# --- statistics -----------------------------------------------------------------------------


def test_solver_and_adjoint_names_map_to_their_classes():
    """jaxdyn's name tables and its evaluation count per solver (`fevals`, from the tableau),
    entry by entry, without a solve: every name runs the same jaxdyn path, so the solves below
    and the order tests above use representatives."""
    assert SOLVERS == {
        "euler": dfx.Euler, "heun": dfx.Heun, "midpoint": dfx.Midpoint, "ralston": dfx.Ralston,
        "rk4": RK4, "bosh3": dfx.Bosh3, "tsit5": dfx.Tsit5, "dopri5": dfx.Dopri5,
        "dopri8": dfx.Dopri8, "kvaerno3": dfx.Kvaerno3, "kvaerno5": dfx.Kvaerno5,
    }  # fmt: skip
    assert ADJOINTS == {"checkpoint": dfx.RecursiveCheckpointAdjoint,
                        "backsolve": dfx.BacksolveAdjoint, "direct": dfx.DirectAdjoint}  # fmt: skip
    # Evaluations in n = 5 steps: Euler one a step; explicit RK s stages a step, or 1 + (s - 1)
    # a step when first-same-as-last; implicit solvers unknown (Newton iterations vary).
    n = 5
    expected = {"euler": n, "heun": 2 * n, "midpoint": 2 * n, "ralston": 2 * n, "rk4": 4 * n,
                "bosh3": 1 + 3 * n, "tsit5": 1 + 6 * n, "dopri5": 1 + 6 * n,
                "dopri8": 1 + 13 * n, "kvaerno3": None, "kvaerno5": None}  # fmt: skip
    assert {name: fevals(resolve_solver(name), n) for name in SOLVERS} == expected
    for name, cls in ADJOINTS.items():
        assert type(check_options(name, "raise", None)) is cls


# Counted against the field's real evaluations: Euler's branch of `fevals`, an RK tableau
# with first-same-as-last on fixed steps (without it: RK4's test above), and adaptive steps
# with a given and an automatic first step (the documented bound on rejected steps).
@pytest.mark.parametrize(
    "solver, steps",
    [
        ("euler", "fixed"),
        ("dopri8", "fixed"),
        ("bosh3", "adaptive"),
        ("tsit5", "adaptive-auto-dt0"),
    ],  # fmt: skip
)
def test_num_fevals_counts_evaluations(solver, steps):
    count = np.zeros((), int)

    def counted(t, y, args):
        jax.debug.callback(lambda: count.__iadd__(1), ordered=True)
        return -20.0 * y + jnp.sin(10 * t)  # fast enough that some steps are rejected

    kw = {
        "fixed": dict(dt0=0.01),
        "adaptive": dict(dt0=0.5, rtol=1e-6, atol=1e-6),
        "adaptive-auto-dt0": dict(rtol=1e-6, atol=1e-6),
    }[steps]
    sol = odeint(counted, jnp.ones(2), jnp.array([0.0, 1.0]), solver=solver, **kw)
    jax.block_until_ready(sol.ys)
    jax.effects_barrier()
    stats = jax.tree.map(int, sol.stats)
    assert stats.num_steps == stats.num_accepted_steps + stats.num_rejected_steps
    if steps == "fixed":
        assert stats.num_fevals == int(count)
    else:  # documented: re-evaluations after rejected first steps are not counted
        assert stats.num_fevals <= int(count) <= stats.num_fevals + stats.num_rejected_steps


# --- gradients through every adjoint ---------------------------------------------------------


# The default adjoint and the continuous one (jaxdyn's branch: closure conversion); `direct` is
# only a name here (checked in test_solver_and_adjoint_names_map_to_their_classes).
@pytest.mark.parametrize("adjoint", ["checkpoint", "backsolve"])
def test_gradient_matches_closed_form_and_finite_differences(adjoint):
    y0 = jnp.array([1.0, 2.0])

    def loss(k):
        sol = odeint(
            decay, y0, jnp.array([0.0, 1.5]), args=k, adjoint=adjoint, rtol=1e-10, atol=1e-10
        )
        return jnp.sum(sol.ys[-1] ** 2)

    k = 0.7
    value_and_grad = jax.jit(jax.value_and_grad(loss))  # one program: gradient and both values
    grad = float(value_and_grad(jnp.asarray(k))[1])
    exact = float(-2 * 1.5 * np.exp(-2 * 1.5 * k) * np.sum(np.asarray(y0) ** 2))
    # Solves at tolerance 1e-10: the gradient matches to ~1e-7 relative.
    assert grad == pytest.approx(exact, rel=1e-6)
    fd = central_difference(lambda x: value_and_grad(jnp.asarray(x))[0], k)
    assert grad == pytest.approx(fd, rel=1e-6)


# Parameters the field closes over: the continuous adjoint differentiates only explicit inputs,
# so odeint closure-converts the field (jaxdyn's branch); the discrete adjoints differentiate
# closures as JAX does (the checkpointed one: the models' and trainers' tests).
@pytest.mark.parametrize("adjoint", ["backsolve"])
def test_gradient_wrt_module_parameters(adjoint):
    field = eqx.nn.MLP(2, 2, 8, 1, activation=jnp.tanh, key=jax.random.key(0))

    def loss(field):
        sol = odeint(
            lambda t, y, args: field(y),
            jnp.array([0.5, -0.3]),
            jnp.array([0.0, 1.0]),
            adjoint=adjoint,
            rtol=1e-10,
            atol=1e-10,
        )
        return jnp.sum(sol.ys[-1] ** 2)

    value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(loss))  # one program for all three
    grads = value_and_grad(field)[1]
    w = np.asarray(field.layers[0].weight)  # shifted in NumPy: no eager programs
    h = 1e-6
    bump = np.zeros_like(w)
    bump[1, 0] = h
    perturbed = lambda d: eqx.tree_at(lambda f: f.layers[0].weight, field, w + d)  # noqa: E731
    fd = (value_and_grad(perturbed(bump))[0] - value_and_grad(perturbed(-bump))[0]) / (2 * h)
    assert float(grads.layers[0].weight[1, 0]) == pytest.approx(float(fd), rel=1e-5, abs=1e-9)


# --- failure policies ----------------------------------------------------------------------


def blowup(t, y, args):
    return y**2  # y(t) = 1 / (1 - t) from y0 = 1: infinite at t = 1


def test_fixed_steps_never_run_out_by_default():
    # 10,000 fixed steps, more than the adaptive default of 4096: max_steps=None counts them.
    ts = np.array([0.0, 1.0])
    sol = odeint(decay, jnp.ones(1), ts, solver="euler", dt0=1e-4)
    assert bool(sol.succeeded) and int(sol.stats.num_steps) == 10_000
    np.testing.assert_allclose(sol.ys[-1, 0], (1 - 1e-4) ** 10_000, rtol=1e-10)  # round-off
    # Times traced under jit: the count is unknown at trace time, so the default is 4096.
    final = jax.jit(lambda ts: odeint(decay, jnp.ones(1), ts, solver="euler", dt0=1e-4,
                                      on_failure="return").result)  # fmt: skip
    assert final(jnp.asarray(ts)) == RESULTS.max_steps_reached


def test_raise_names_max_steps():
    with pytest.raises(RuntimeError, match="max_steps=50"):
        jax.block_until_ready(odeint(blowup, jnp.ones(1), jnp.array([0.0, 2.0]), max_steps=50).ys)


def test_raise_names_nan_state():
    nan_field = lambda t, y, args: y * jnp.nan  # noqa: E731
    with pytest.raises(RuntimeError, match="NaN or Inf in the state"):
        jax.block_until_ready(odeint(nan_field, jnp.ones(1), jnp.array([0.0, 1.0]), dt0=0.1).ys)


def test_return_leaves_result_for_caller():
    sol = compiled(odeint, blowup, y0=jnp.ones(1), ts=[0.0, 2.0], max_steps=50,
                   on_failure="return")  # fmt: skip
    assert sol.result == RESULTS.max_steps_reached
    assert not bool(sol.succeeded)


def test_nan_policy_marks_only_failed_samples():
    y0 = jnp.array([[1.0], [0.1]])  # the first blows up at t = 1, the second at t = 10
    sol = compiled(odeint, blowup, y0=y0, ts=[0.0, 2.0], max_steps=200, on_failure="nan",
                   batch="vmap")  # fmt: skip
    assert bool(jnp.all(jnp.isnan(sol.ys[0])))
    np.testing.assert_allclose(sol.ys[1, -1], 0.1 / (1 - 0.2), rtol=1e-5)
    assert list(np.asarray(sol.succeeded)) == [False, True]


def test_raise_under_jit_and_vmap():
    f = jax.jit(lambda y0: odeint(blowup, y0, jnp.array([0.0, 2.0]), max_steps=50, batch="vmap").ys)
    with pytest.raises(RuntimeError, match="max_steps"):
        jax.block_until_ready(f(jnp.array([[1.0], [0.1]])))


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(solver="rk45"), ValueError, "unknown solver='rk45'"),
        (dict(adjoint="adjoint"), ValueError, "unknown adjoint"),
        (dict(on_failure="ignore"), ValueError, "unknown on_failure"),
        (dict(batch="pmap"), ValueError, "unknown batch"),
        (
            dict(ts=jnp.array([0.0, 1.0, 0.5])),
            ValueError,
            r"ts must be strictly increasing; ts\[1\]",
        ),
        (dict(ts=jnp.array([0.0])), ValueError, "at least 2 times"),
        (dict(ts=jnp.array([0, 1])), TypeError, "ts must be floating point"),
        (dict(y0=jnp.array([1, 2])), TypeError, "y0 must be floating point"),
        (dict(y0=jnp.ones(3)), ValueError, "field could not be evaluated at y0 with shapes"),
        (dict(solver="euler"), ValueError, "no error estimate"),
        (dict(solver="kvaerno5", dt0=0.1), ValueError, "needs rtol/atol"),
        (dict(dt0=-0.1), ValueError, "dt0 must be a positive number"),
        (dict(max_steps=0), ValueError, "max_steps must be an int >= 1"),
        (dict(rtol=-1.0), ValueError, "rtol must be a positive number"),
        (
            dict(batch="vmap", y0=(jnp.ones((2, 2)), jnp.ones((3, 2)))),
            ValueError,
            "leading batch axis",
        ),
    ],
)
def test_bad_input_is_named(kwargs, error, match):
    W = jnp.eye(2)
    args = dict(y0=jnp.ones(2), ts=jnp.array([0.0, 1.0]))
    args.update(kwargs)
    field = (
        (lambda t, y, a: jax.tree.map(lambda x: -x, y))
        if isinstance(args["y0"], tuple)
        else (lambda t, y, a: W @ y)
    )
    with pytest.raises(error, match=match):
        odeint(field, args.pop("y0"), args.pop("ts"), **args)


def test_field_output_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"got \(3,\) for y0 of shapes \(2,\)"):
        odeint(lambda t, y, args: jnp.ones(3), jnp.ones(2), jnp.array([0.0, 1.0]))


def test_args_may_hold_non_arrays():
    args = {"rate": 2.0, "name": "decay", "transform": jnp.negative}
    sol = odeint(lambda t, y, a: a["transform"](a["rate"] * y), jnp.ones(2),
                 jnp.array([0.0, 1.0]), args=args, rtol=jnp.float32(1e-8), atol=1e-8)  # fmt: skip
    np.testing.assert_allclose(sol.ys[-1], np.exp(-2.0) * np.ones(2), rtol=1e-6)
