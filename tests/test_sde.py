"""sdeint: convergence orders against exact solutions, calculus conversion, Brownian paths
(grid and virtual, same key same path), gradients, batching and errors."""

import functools

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_difference, compiled

from jaxdyn.models import MLPField, NeuralSDE
from jaxdyn.solve import GridBrownianPath, VirtualBrownianPath, convert_drift, sdeint
from jaxdyn.solve._brownian import brownian_grid
from jaxdyn.solve._sde import SDE_SOLVERS, _levy_area, _solver

KEY = jax.random.key(0)
MU, SIGMA = 0.5, 0.8


# Geometric Brownian motion with a second component Z = W (dZ = 1·dW, solved exactly by every
# scheme), so the exact solution can be written with the path's own W(T).
def gbm_drift(t, y, args):
    return jnp.stack([MU * y[0], 0.0 * y[1]])


def gbm_diffusion(t, y, args):
    return jnp.stack([SIGMA * y[0], jnp.ones_like(y[1])])


Y0 = jnp.array([1.0, 0.0])


def gbm_exact(w, calculus="ito"):
    rate = MU - 0.5 * SIGMA**2 if calculus == "ito" else MU
    return np.exp(rate + SIGMA * np.asarray(w))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def solve_per_dt(drift, diffusion, ts, dts, options, y0, key):
    """`ys` of one `sdeint` solve per step size in `dts`, all in one program (a quarter
    cheaper to build than one program per step size); `options`: sdeint's keywords as a
    tuple of pairs."""
    return [
        sdeint(drift, diffusion, y0, np.asarray(ts), key=key, dt0=dt, **dict(options)).ys
        for dt in dts
    ]


def strong_errors(solver, dts, calculus="ito", n=400):
    """E|X(1) - exact(W(1))| for each step size (reduced in NumPy: no eager programs)."""
    # Forward solves only: the direct adjoint traces less than the checkpointed loop; the
    # joint batch (the same per-sample paths as vmap; Milstein solves as vmap) traces no
    # batched loop.
    options = (("noise", "scalar"), ("solver", solver), ("calculus", calculus),
               ("n_samples", n), ("batch", "joint"), ("adjoint", "direct"))  # fmt: skip
    ys = solve_per_dt(gbm_drift, gbm_diffusion, (0.0, 1.0), tuple(dts), options, Y0, KEY)
    return [
        float(np.mean(np.abs(y[:, -1, 0] - gbm_exact(y[:, -1, 1], calculus))))
        for y in map(np.asarray, ys)
    ]


def slope(dts, errors):
    return np.polyfit(np.log(dts), np.log(errors), 1)[0]


# One strong-order test: Milstein's order 1 is the most sensitive to an error in the grid
# path's increments across step sizes. The solvers' own orders are Diffrax's; jaxdyn's choice
# of solver per name and calculus is checked entry by entry in
# test_solver_names_map_to_diffrax_solvers, Euler–Maruyama's recursion in the weak-order test,
# and each native/converted calculus against the exact solution in
# test_stratonovich_gbm_by_every_solver.
@pytest.mark.parametrize("solver, order, calculus", [("milstein", 1.0, "ito")])
def test_strong_order_on_gbm(solver, order, calculus):
    dts = [2.0**-k for k in range(3, 8)]
    errors = strong_errors(solver, dts, calculus)
    assert abs(slope(dts, errors) - order) < 0.15, errors


def test_solver_names_map_to_diffrax_solvers():
    """jaxdyn's solver per name, noise structure, calculus and step control, and the calculus
    it converges to (a drift is converted when that differs from `calculus`): every branch of
    `_solver`, without a solve."""
    cases = [  # (name, structure, additive, calculus, adaptive) -> (class, native calculus)
        (("euler", "diagonal", False, "stratonovich", False), (dfx.Euler, "ito")),
        (("heun", "diagonal", False, "ito", False), (dfx.Heun, "stratonovich")),
        (("reversible_heun", "scalar", False, "ito", False), (dfx.ReversibleHeun, "stratonovich")),
        (("milstein", "diagonal", False, "ito", False), (dfx.ItoMilstein, "ito")),
        (("milstein", "scalar", False, "stratonovich", False),
         (dfx.StratonovichMilstein, "stratonovich")),
        (("milstein", "general", True, "ito", False), (dfx.ItoMilstein, "ito")),
        (("srk", "general", False, "ito", True), (dfx.SPaRK, "stratonovich")),
        (("srk", "diagonal", True, "ito", False), (dfx.ShARK, "ito")),
        (("srk", "general", True, "stratonovich", False), (dfx.ShARK, "stratonovich")),
        (("srk", "scalar", False, "ito", False), (dfx.GeneralShARK, "stratonovich")),
        ((dfx.ItoMilstein(), "diagonal", False, "stratonovich", False), (dfx.ItoMilstein, "ito")),
        ((dfx.Heun(), "diagonal", False, "ito", False), (dfx.Heun, "stratonovich")),
        # Neither an Itô nor a Stratonovich solver (an ODE solver on additive noise): as asked.
        ((dfx.Tsit5(), "diagonal", True, "ito", False), (dfx.Tsit5, "ito")),
    ]  # fmt: skip
    for given, (cls, native) in cases:
        solver, calculus = _solver(*given)
        assert type(solver) is cls and calculus == native, (given, solver, calculus)
    assert set(SDE_SOLVERS) == {"euler", "heun", "milstein", "srk", "reversible_heun"}
    # The Lévy area each solver is given: increments only, or space-time areas for the SRKs.
    assert _levy_area(dfx.Euler()) is dfx.BrownianIncrement
    assert _levy_area(dfx.ShARK()) is dfx.SpaceTimeLevyArea
    assert _levy_area(dfx.GeneralShARK()) is dfx.SpaceTimeLevyArea


def _half(t, y, args):
    return 0.5 * jnp.ones_like(y)


def _ok(t, y, a):
    return -y


def _gbm_and_ou_drift(t, y, args):
    return jnp.stack([MU * y[0], -y[1]])


def _gbm_and_ou_diffusion(t, y, args):
    return jnp.stack([0.5 * y[0], 0.5 * jnp.ones_like(y[1])])


def test_weak_order_euler_on_gbm_and_ou():
    """Euler–Maruyama's mean follows its discrete recursion exactly; the bias vs the exact
    mean falls like dt (weak order 1). GBM (dX = μX dt + ½X dW) and OU (dY = -Y dt + ½ dW)
    are the two components of one diagonal-noise state: independent Brownian motions, each
    component's Euler recursion the one of its own equation; all step sizes in one program."""
    n = 20000
    dts = (0.5, 0.25, 0.125)
    options = (("n_samples", n), ("batch", "joint"), ("adjoint", "direct"))
    solves = solve_per_dt(_gbm_and_ou_drift, _gbm_and_ou_diffusion, (0.0, 1.0), dts, options,
                          jnp.ones(2), KEY)  # fmt: skip
    gbm_bias, ou_bias = [], []
    for dt, ys in zip(dts, solves, strict=True):
        steps = round(1 / dt)
        gbm, ou = np.asarray(ys[:, -1]).T
        assert abs(gbm.mean() - (1 + MU * dt) ** steps) < 4 * gbm.std() / n**0.5
        gbm_bias.append(np.exp(MU) - gbm.mean())
        mean, var = (1 - dt) ** steps, 0.25 * dt * sum((1 - dt) ** (2 * k) for k in range(steps))
        assert abs(ou.mean() - mean) < 4 * (var / n) ** 0.5
        assert abs(ou.var() - var) < 4 * var * (2 / n) ** 0.5
        ou_bias.append(np.exp(-1.0) - ou.mean())
    assert abs(slope(dts, gbm_bias) - 1.0) < 0.25, gbm_bias
    assert abs(slope(dts, ou_bias) - 1.0) < 0.25, ou_bias


# Ornstein–Uhlenbeck dY = -Y dt + ½ dW (additive noise) from Y0 = 1, saved at OU_TS, 50 paths,
# steps of at most OU_DT0 on a grid finer than OU_TS (the grid path bridges inside its cells).
# The same four solves (euler/srk × grid/virtual) serve the next two tests.
OU_TS, OU_DT0 = np.linspace(0.0, 1.0, 4), 0.1  # steps of 0.1 as the SRK test has always used


def ou_solve(solver, brownian):
    return compiled(sdeint, _ok, _half, y0=jnp.ones(1), ts=OU_TS, key=KEY, noise="additive",
                    solver=solver, brownian=brownian, dt0=OU_DT0, n_samples=50, batch="joint",
                    adjoint="direct").ys  # fmt: skip


# Every fixed-step solver asks the path for the increments over its steps [t, t + dt0]; what
# differs is whether it also asks for the space-time Lévy area (srk) or not (the others).
# sdeint builds both paths from the same arguments whatever the solver; the Lévy areas of the
# two paths agree on grid cells in test_virtual_path_statistics (`diff`), without a solve.
@pytest.mark.parametrize("solver", ["euler"])
def test_same_key_same_path_grid_and_virtual(solver):
    grid, virtual = ou_solve(solver, "grid"), ou_solve(solver, "virtual")
    np.testing.assert_allclose(grid, virtual, rtol=1e-10, atol=1e-10)


def test_srk_on_additive_noise_is_accurate():
    """ShARK (additive noise, uses Lévy areas) on Ornstein–Uhlenbeck: error far below
    Euler–Maruyama's. The reference solves the same `VirtualBrownianPath` (sample `i` uses
    key `split(key, n)[i]`, on sdeint's grid) with 256 steps directly in Diffrax; the two
    sdeint solves use the grid path, the same path on sdeint's steps (the test above), and
    compile no Brownian tree."""
    ts, n = jnp.asarray(OU_TS), 50
    grid = brownian_grid(ts, OU_DT0)

    def reference(key):
        path = VirtualBrownianPath(key, ts, grid, (1,), jnp.float64, dfx.SpaceTimeLevyArea, 2**-9)
        drift = dfx.ODETerm(_ok)
        terms = dfx.MultiTerm(drift, dfx.ControlTerm(lambda t, y, a: 0.5 * jnp.eye(1), path))
        return dfx.diffeqsolve(terms, dfx.ShARK(), 0.0, 1.0, 2**-8, jnp.ones(1)).ys[-1, 0]

    exact = np.asarray(jax.jit(jax.vmap(reference))(jax.random.split(KEY, n)))
    err_srk = np.mean(np.abs(np.asarray(ou_solve("srk", "grid"))[:, -1, 0] - exact))
    err_euler = np.mean(np.abs(np.asarray(ou_solve("euler", "grid"))[:, -1, 0] - exact))
    assert err_srk < 0.1 * err_euler, (err_srk, err_euler)


# jaxdyn's two branches: a native Stratonovich solver (no conversion) and an Itô solver on the
# converted drift. Which solver is native to which calculus (reversible_heun, srk, milstein):
# test_solver_names_map_to_diffrax_solvers; reversible Heun also solves the backsolve test.
@pytest.mark.parametrize("solver", ["heun", "euler"])
def test_stratonovich_gbm_by_every_solver(solver):
    """A native Stratonovich solver and Euler–Maruyama on the converted drift both converge to
    the Stratonovich solution X0 exp(μT + σW_T) (Euler–Maruyama at strong order 0.5)."""
    bound = 0.1 if solver == "euler" else 0.01
    assert strong_errors(solver, [2.0**-8], "stratonovich", n=200)[0] < bound


@pytest.mark.parametrize("noise", ["diagonal", "scalar", "general"])
def test_convert_drift_matches_closed_form(noise):
    """For g(y) = σ y (diagonal/scalar) the Itô→Stratonovich drift is f - σ²y/2 (diagonal),
    f - ½σ² y·1 (scalar: c = ½ J_g g); general is checked on two independent columns."""
    y = jnp.array([0.7, -1.3])
    f = lambda t, y, a: jnp.zeros_like(y)  # noqa: E731
    if noise == "general":
        g = lambda t, y, a: jnp.stack([SIGMA * y, 2.0 * y], axis=-1)  # noqa: E731
        expected = -0.5 * (SIGMA**2 + 4.0) * y
    else:
        g = lambda t, y, a: SIGMA * y  # noqa: E731
        expected = -0.5 * SIGMA**2 * y
    strat = convert_drift(f, g, noise=noise, to="stratonovich")
    back = convert_drift(strat, g, noise=noise, to="ito")
    # Both drifts in one program (eagerly, each Jacobian-vector product would compile its own)
    strat_y, back_y = jax.jit(lambda y: (strat(0.0, y, None), back(0.0, y, None)))(y)
    np.testing.assert_allclose(strat_y, expected, rtol=1e-12)
    np.testing.assert_allclose(back_y, 0.0, atol=1e-12)


def test_path_at_save_times_does_not_depend_on_dt0():
    ts = np.linspace(0.0, 1.0, 5)
    options = (("noise", "scalar"), ("adjoint", "direct"))  # forward solves only
    solves = solve_per_dt(gbm_drift, gbm_diffusion, tuple(ts), (0.25, 0.1, 0.01), options, Y0, KEY)
    paths = [np.asarray(ys)[:, 1] for ys in solves]
    np.testing.assert_allclose(paths[0], paths[1], atol=1e-12)
    np.testing.assert_allclose(paths[0], paths[2], atol=1e-12)


def test_vmap_and_joint_batches_agree_and_samples_differ():
    y0 = np.outer([1.0, 2.0, 3.0], Y0)  # NumPy: no eager programs
    kw = dict(noise="scalar", dt0=0.1, adjoint="direct")  # forward solves only
    ts = np.linspace(0.0, 1.0, 3)

    @jax.jit  # the three solves in one program
    def solves(y0, key):
        a = sdeint(gbm_drift, gbm_diffusion, y0, ts, batch="vmap", key=key, **kw).ys
        b = sdeint(gbm_drift, gbm_diffusion, y0, ts, batch="joint", key=key, **kw).ys
        one = sdeint(gbm_drift, gbm_diffusion, y0[1], ts, key=jax.random.split(key, 3)[1], **kw)
        return a, b, one.ys

    a, b, one = map(np.asarray, solves(y0, KEY))
    assert a.shape == b.shape == (3, 3, 2)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    assert len(set(a[:, -1, 1].round(8))) == 3  # one path per sample
    np.testing.assert_allclose(one, a[1], rtol=1e-12)


def test_joint_milstein_solves_per_sample_on_the_same_paths():
    # Milstein's state derivative of the diffusion would be batch² on the joint state.
    y0 = np.outer([1.0, 2.0, 3.0], Y0)
    kw = dict(noise="diagonal", solver="milstein", dt0=0.1, adjoint="direct")
    ts = np.linspace(0.0, 1.0, 3)
    a, b = jax.jit(  # both solves in one program
        lambda y0, key: [
            sdeint(gbm_drift, gbm_diffusion, y0, ts, batch=batch, key=key, **kw).ys
            for batch in ("vmap", "joint")
        ]
    )(y0, KEY)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_float32_state_under_x64_with_milstein():
    # Diffrax's Milstein promotes its step to float64 under x64; sdeint keeps y0's dtype.
    ys = compiled(sdeint, gbm_drift, gbm_diffusion, y0=np.ones(2, np.float32), ts=[0.0, 0.5, 1.0],
                  key=KEY, noise="diagonal", solver="milstein", dt0=0.1).ys  # fmt: skip
    assert ys.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(ys)))


def test_repeated_calls_build_equal_fields():
    # Fields sdeint builds compare equal across calls, so Diffrax's jit cache is reused
    # (a fresh closure per call would recompile every un-jitted call).
    from jaxdyn.solve._common import JointField

    assert JointField(gbm_drift) == JointField(gbm_drift)
    for noise in ("diagonal", "scalar"):
        a = convert_drift(gbm_drift, gbm_diffusion, noise=noise, to="stratonovich")
        b = convert_drift(gbm_drift, gbm_diffusion, noise=noise, to="stratonovich")
        assert a == b and hash(a) == hash(b)


def test_virtual_path_statistics():
    """Increments of the virtual path over sub-intervals inside and across grid cells have
    variance equal to their length and are independent; Lévy areas have variance h/12; the
    path agrees with the grid path on grid cells."""
    ts = jnp.array([0.0, 0.3, 1.0])
    grid = jnp.array([0.0, 0.1, 0.2, 0.3, 0.65, 1.0])
    n = 3000

    def draws(key):
        v = VirtualBrownianPath(key, ts, grid, (), jnp.float64, dfx.SpaceTimeLevyArea, 0.01)
        g = GridBrownianPath(key, ts, grid, (), jnp.float64, dfx.SpaceTimeLevyArea)
        # One evaluation, vmapped over the intervals: one tree walk in the program, not four.
        # Inside a cell, across cells, disjoint from `across`, and the grid cell [0.3, 0.65].
        starts, ends = jnp.array([0.12, 0.25, 0.5, 0.3]), jnp.array([0.17, 0.5, 0.9, 0.65])
        inc = jax.vmap(lambda s, t: v.evaluate(s, t, use_levy=True))(starts, ends)
        grid_cell = g.evaluate(0.3, 0.65, use_levy=True)
        diff = jnp.stack([inc.W[3] - grid_cell.W, inc.H[3] - grid_cell.H])
        return inc.W[0], inc.H[0], inc.W[1], inc.H[1], inc.W[2], diff, inc.H[3]

    # One program (keys split inside); the statistics in NumPy (eager jnp would compile one
    # program per reduction).
    sample = jax.jit(lambda key: jax.vmap(draws)(jax.random.split(key, n)))
    w1, h1, w2, h2, w3, diff, hc = map(np.asarray, sample(KEY))
    for sample, var in [(w1, 0.05), (h1, 0.05 / 12), (w2, 0.25), (h2, 0.25 / 12), (w3, 0.4)]:
        assert abs(np.var(sample) / var - 1) < 4 * (2 / n) ** 0.5
    assert abs(np.corrcoef(w2, w3)[0, 1]) < 4 / n**0.5
    np.testing.assert_allclose(diff, 0.0, atol=1e-12)
    assert abs(np.var(hc) / (0.35 / 12) - 1) < 4 * (2 / n) ** 0.5


# The discrete adjoint on the grid path; the virtual path's gradient: the backsolve test below
# (`direct` is only an adjoint name, checked in test_solve).
@pytest.mark.parametrize("adjoint, brownian", [("checkpoint", "grid")])
def test_gradient_matches_finite_differences(adjoint, brownian):
    ts = jnp.linspace(0.0, 1.0, 3)

    def loss(theta):
        sol = sdeint(
            lambda t, y, a: -a * y,
            lambda t, y, a: 0.3 * jnp.sin(y) + a * 0.1,
            jnp.array([1.0, -0.5]),
            ts,
            key=KEY,
            args=theta,
            dt0=0.02,
            solver="milstein",
            adjoint=adjoint,
            brownian=brownian,
        )
        return jnp.sum(sol.ys**2)

    value_and_grad = jax.jit(jax.value_and_grad(loss))  # one program: gradient and both values
    grad = float(value_and_grad(0.7)[1])
    fd = central_difference(lambda x: value_and_grad(x)[0], 0.7)
    assert grad == pytest.approx(fd, rel=1e-6)


def test_backsolve_gradient_matches_finite_differences():
    """The continuous adjoint with reversible Heun (Kidger et al. 2021) on the virtual path:
    its gradient against central differences of its own forward solve (float64), both from
    one program (a checkpointed gradient for comparison would compile a second)."""
    ts = jnp.array([0.0, 1.0])

    def loss(theta):
        sol = sdeint(
            lambda t, y, a: -a * y,
            lambda t, y, a: 0.5 * (1 + 0.1 * y**2),
            jnp.array([1.0, 0.5]),
            ts,
            key=KEY,
            args=theta,
            dt0=0.01,
            solver="reversible_heun",
            calculus="stratonovich",
            adjoint="backsolve",
            brownian="virtual",
        )
        return jnp.sum(sol.ys[-1])

    value_and_grad = jax.jit(jax.value_and_grad(loss))  # one program: gradient and both values
    grad = float(value_and_grad(1.0)[1])
    fd = central_difference(lambda x: value_and_grad(x)[0], 1.0)
    assert grad == pytest.approx(fd, rel=1e-3)


def test_adaptive_virtual_solve_converges_to_exact_stratonovich_gbm():
    def solve(rtol):  # tolerances traced: one program for both
        y1 = compiled(
            sdeint,
            gbm_drift,
            gbm_diffusion,
            y0=Y0,
            ts=[0.0, 1.0],
            key=KEY,
            noise="scalar",
            calculus="stratonovich",
            solver="heun",
            rtol=jnp.asarray(rtol),
            atol=jnp.asarray(rtol),
            brownian="virtual",
            n_samples=50,
            adjoint="direct",  # forward solves only: traces less than the checkpointed loop
        ).ys[:, -1]
        y1 = np.asarray(y1)  # reduced in NumPy: no eager programs
        return float(np.max(np.abs(y1[:, 0] - gbm_exact(y1[:, 1], "stratonovich"))))

    loose, tight = solve(1e-2), solve(1e-4)
    assert tight < loose / 20 and tight < 5e-3, (loose, tight)


def test_neural_sde_shapes_jit_and_gradients():
    @eqx.filter_jit  # one program for the initialisation, not one per layer shape
    def build(key):
        k1, k2 = jax.random.split(key)
        return NeuralSDE(
            MLPField(dim=3, width=8, depth=1, key=k1),
            MLPField(dim=3, width=8, depth=1, key=k2),
            dt0=0.1,
        )

    model = build(KEY)
    ts = jnp.linspace(0.0, 1.0, 4)
    y0 = jnp.ones((5, 3))
    assert eqx.filter_jit(lambda y: model(ts, y, key=KEY))(y0[0]).shape == (4, 3)

    @eqx.filter_jit
    @eqx.filter_grad(has_aux=True)
    def grad(m):
        ys = m(ts, y0, key=KEY)
        return jnp.mean(ys[:, -1] ** 2), ys

    grad_model, ys = grad(model)  # the batched solve, run inside the gradient's program
    assert ys.shape == (5, 4, 3)
    grads = [np.asarray(g) for g in jax.tree.leaves(eqx.filter(grad_model, eqx.is_array))]
    assert all(np.all(np.isfinite(g)) for g in grads)  # NumPy: no eager program per leaf shape
    assert any(np.max(np.abs(g)) > 0 for g in grads)


def test_general_noise_shapes():
    sol = compiled(
        sdeint,
        _ok,
        lambda t, y, a: jnp.ones((2, 3)) * 0.1,
        y0=jnp.ones(2),
        ts=jnp.linspace(0, 1, 3),
        key=KEY,
        dt0=0.1,
        noise="general",
    )
    assert sol.ys.shape == (3, 2) and bool(sol.succeeded)


def _cube(t, y, args):
    return y**3


def _identity(t, y, args):
    return y


def test_failure_is_named():
    with pytest.raises(Exception, match="sdeint: NaN or Inf"):
        compiled(sdeint, _cube, _identity, y0=np.full(1, 10.0), ts=[0.0, 1.0], key=KEY,
                 dt0=0.1).ys.block_until_ready()  # fmt: skip


def test_fixed_steps_never_run_out_by_default():
    # 5000 grid steps, more than the adaptive default of 4096: max_steps=None is the grid's.
    sol = compiled(sdeint, _ok, _ok, y0=jnp.ones(1), ts=[0.0, 1.0], key=KEY, dt0=2e-4)
    assert bool(sol.succeeded) and int(sol.stats.num_steps) == 5000


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(noise="weird"), ValueError, "unknown noise='weird'"),
        (dict(calculus="levy"), ValueError, "unknown calculus"),
        (dict(brownian="tree"), ValueError, "unknown brownian"),
        (dict(solver="rk4"), ValueError, "unknown solver='rk4'"),
        (dict(dt0=None), ValueError, "needs dt0"),
        (dict(dt0=None, rtol=1e-3, atol=1e-3), ValueError, "brownian='grid' answers fixed"),
        (dict(adjoint="backsolve"), ValueError, "use brownian='virtual'"),
        (dict(key=0), TypeError, "key=jax.random.key"),
        (dict(y0=(jnp.ones(2), jnp.ones(2))), TypeError, "one array"),
        (dict(y0=jnp.ones((2, 2))), ValueError, r"shape \(dim,\)"),
        (dict(diffusion=lambda t, y, a: jnp.ones(3)), ValueError, "noise='diagonal' needs"),
        (
            dict(noise="general", solver="milstein", diffusion=lambda t, y, a: jnp.ones((2, 2))),
            ValueError,
            "commutative noise",
        ),
        (dict(n_samples=0), ValueError, "n_samples"),
        (dict(dt0=-0.1), ValueError, "dt0 must be a positive number"),
    ],
)
def test_bad_input_is_named(kwargs, error, match):
    call = dict(drift=_ok, diffusion=_ok, y0=jnp.ones(2), ts=jnp.array([0.0, 1.0]), key=KEY)
    call["dt0"] = 0.1
    call.update(kwargs)
    with pytest.raises(error, match=match):
        sdeint(**call)
