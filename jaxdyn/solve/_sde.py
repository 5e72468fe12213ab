"""Integrate stochastic differential equations: a thin, typed layer over Diffrax.

`sdeint` solves

    dy = f(t, y, args) dt + g(t, y, args) dW(t),    y(ts[0]) = y0,

in the Itô or the Stratonovich sense, for one Brownian path given by a key (or a batch of
paths, one key each), and returns `y` at the times `ts` with solver statistics and a result
code, like `odeint`.
"""

from collections.abc import Callable
from typing import Any, Literal

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import check_choice, check_key, check_positive, choice_error
from .._solvers import fixed_step_count, resolve_max_steps, stepsize_controller
from .._trees import shapes
from ._brownian import LevyArea, brownian_grid, brownian_path
from ._common import (
    Batch,
    JointField,
    OnFailure,
    Solution,
    check_options,
    check_times,
    closure_convert,
    integrate,
    trace_field,
)

__all__ = ["NOISES", "SDE_SOLVERS", "convert_drift", "sdeint"]

Noise = Literal["diagonal", "general", "scalar", "additive"]
Calculus = Literal["ito", "stratonovich"]
NOISES = ("diagonal", "general", "scalar", "additive")
CALCULI = ("ito", "stratonovich")
BROWNIAN = ("grid", "virtual")
_LEVY_AREAS = (dfx.BrownianIncrement, dfx.SpaceTimeLevyArea)  # cheapest first

#: Solver names and the calculus each converges to natively ("both": either, chosen by
#: `calculus`). Another calculus is reached by converting the drift (`convert_drift`).
SDE_SOLVERS: dict[str, str] = {
    "euler": "ito",  # Euler–Maruyama
    "heun": "stratonovich",
    "milstein": "both",  # Itô or Stratonovich Milstein; commutative noise
    "srk": "stratonovich",  # ShARK (additive noise) / GeneralShARK / SPaRK (adaptive)
    "reversible_heun": "stratonovich",  # Kidger et al. 2021; algebraically reversible
}


def _structure(noise: str, y0: Array, g: jax.ShapeDtypeStruct) -> str:
    """How the diffusion multiplies dW: `diagonal`, `scalar` (one Brownian motion) or
    `general` (a matrix), checked against the diffusion's output shape."""
    dim = y0.shape
    if noise in ("diagonal", "scalar"):
        expected = f"{dim} (the shape of y0)"
        ok = g.shape == dim
    elif noise == "general":
        expected = f"{dim + ('m',)} (state × noise channels)"
        ok = g.ndim == 2 and g.shape[0] == dim[0]
    else:  # additive: diagonal or general, by shape
        expected = f"{dim} (diagonal) or {dim + ('m',)} (general)"
        ok = g.shape == dim or (g.ndim == 2 and g.shape[0] == dim[0])
    if not ok:
        raise ValueError(
            f"sdeint with noise={noise!r} needs diffusion(t, y, args) of shape {expected}; "
            f"got {g.shape}"
        )
    if noise == "additive":
        return "diagonal" if g.shape == dim else "general"
    return noise


class _NoiseTerm(dfx.ControlTerm):
    """`g(t, y) dW` for a diagonal, scalar or general diffusion; works on a batch too."""

    structure: str = eqx.field(static=True)

    def __init__(self, vector_field: Callable, control: dfx.AbstractPath, structure: str):
        super().__init__(vector_field, control)
        self.structure = structure

    def prod(self, vf, control):
        if self.structure == "diagonal":
            return vf * control
        if self.structure == "scalar":
            return vf * control[..., None]
        return jnp.einsum("...ij,...j->...i", vf, control)


def _correction(diffusion: Callable, structure: str, t, y, args) -> Array:
    """`c(t, y) = ½ Σ_j (∂g_j/∂y) g_j`, the Itô–Stratonovich drift difference (columns `g_j`)."""
    g = diffusion(t, y, args)
    if structure == "diagonal":  # c_i = ½ g_i ∂g_i/∂y_i
        jac = jax.jacfwd(lambda y_: diffusion(t, y_, args))(y)
        return 0.5 * g * jnp.diagonal(jac)
    if structure == "scalar":
        return 0.5 * jax.jvp(lambda y_: diffusion(t, y_, args), (y,), (g,))[1]

    def column(j):
        g_j = lambda y_: diffusion(t, y_, args)[:, j]  # noqa: E731
        return jax.jvp(g_j, (y,), (g[:, j],))[1]

    return 0.5 * jnp.sum(jax.vmap(column)(jnp.arange(g.shape[1])), axis=0)


class _ConvertedDrift(eqx.Module):
    """`f + sign · c`: a module rather than a closure, so that equal conversions compare
    equal and a second un-jitted `sdeint` call reuses Diffrax's compiled solve."""

    drift: Callable
    diffusion: Callable
    structure: str = eqx.field(static=True)
    sign: float = eqx.field(static=True)

    def __call__(self, t, y, args):
        correction = _correction(self.diffusion, self.structure, t, y, args)
        return self.drift(t, y, args) + self.sign * correction


def convert_drift(
    drift: Callable,
    diffusion: Callable,
    *,
    noise: Noise,
    to: Calculus,
    y0: Float[ArrayLike, " dim"] | None = None,
) -> Callable:
    """The drift of the same process written in the other calculus.

    `dy = f dt + g dW` (Itô) is `dy = (f - c) dt + g ∘ dW` (Stratonovich), with
    `c_i = ½ Σ_{j,k} g_kj ∂g_ij/∂y_k`. `to="stratonovich"` returns `f - c` for an Itô drift `f`;
    `to="ito"` returns `f + c` for a Stratonovich drift. Additive noise needs no conversion.
    `y0` (one state) fixes the diffusion's shape when `noise="additive"`.
    """
    if noise not in NOISES:
        raise choice_error("noise", noise, NOISES)
    if to not in CALCULI:
        raise choice_error("to", to, CALCULI)
    if noise == "additive":
        return drift
    return _ConvertedDrift(drift, diffusion, noise, 1.0 if to == "ito" else -1.0)


def _solver(name, structure: str, additive: bool, calculus: str, adaptive: bool):
    """A Diffrax solver for a name, and the calculus it converges to."""
    if isinstance(name, dfx.AbstractSolver):
        # a wrapper (e.g. jaxdyn.regularize.HeuristicsSolver) converges as the solver it wraps
        inner = getattr(name, "solver", None)
        if isinstance(inner, dfx.AbstractSolver):
            return name, _solver(inner, structure, additive, calculus, adaptive)[1]
        if isinstance(name, dfx.AbstractItoSolver):
            return name, "ito"
        if isinstance(name, dfx.AbstractStratonovichSolver):
            return name, "stratonovich"
        return name, calculus  # e.g. additive-noise SRKs: both calculi agree
    if name not in SDE_SOLVERS:
        raise choice_error("solver", name, SDE_SOLVERS)
    if name == "euler":
        return dfx.Euler(), "ito"
    if name == "heun":
        return dfx.Heun(), "stratonovich"
    if name == "reversible_heun":
        return dfx.ReversibleHeun(), "stratonovich"
    if name == "milstein":
        if structure == "general" and not additive:
            raise ValueError(
                "solver='milstein' needs commutative noise (noise='diagonal', 'scalar' or "
                "'additive'); for noise='general' use 'euler', 'heun' or 'srk'"
            )
        if calculus == "ito":
            return dfx.ItoMilstein(), "ito"
        return dfx.StratonovichMilstein(), "stratonovich"
    # srk
    if adaptive:
        return dfx.SPaRK(), "stratonovich"
    if additive:
        return dfx.ShARK(), calculus
    return dfx.GeneralShARK(), "stratonovich"


def _check_state(y0: Any, batch: Batch) -> Array:
    if not isinstance(y0, jax.Array | float | int) and not hasattr(y0, "__array__"):
        raise TypeError(
            f"sdeint needs y0 to be one array of shape (dim,) or (batch, dim); got a "
            f"{type(y0).__name__} with shapes {shapes(y0)}"
        )
    y0 = jnp.asarray(y0)
    if not jnp.issubdtype(y0.dtype, jnp.floating):
        raise TypeError(f"y0 must be floating point, got dtype {y0.dtype}")
    want = 2 if batch is not None else 1
    if y0.ndim != want:
        layout = "(batch, dim)" if batch is not None else "(dim,)"
        raise ValueError(f"sdeint with batch={batch!r} needs y0 of shape {layout}, got {y0.shape}")
    return y0


def _trace(name: str, fn: Callable, t0, y0, args) -> jax.ShapeDtypeStruct:
    out = trace_field(name, fn, t0, y0, args)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"{name}(t, y, args) must return one array, got {shapes(out)}")
    return out


def _check_choices(noise, calculus, brownian, brownian_tol, dt0, rtol, atol) -> bool:
    """Check the SDE-specific options; return whether the steps are adaptive."""
    check_choice("noise", noise, NOISES)
    check_choice("calculus", calculus, CALCULI)
    check_choice("brownian", brownian, BROWNIAN)
    if brownian_tol is not None:
        check_positive("brownian_tol", brownian_tol)
    adaptive = rtol is not None or atol is not None
    if dt0 is None and not adaptive:
        raise ValueError(
            "sdeint needs dt0 (fixed steps) or rtol/atol (adaptive steps, brownian='virtual')"
        )
    if adaptive and brownian == "grid":
        raise ValueError(
            "brownian='grid' answers fixed steps only: give dt0 without rtol/atol, or use "
            "brownian='virtual' for adaptive steps"
        )
    return adaptive


def _steps(solver, ts, times, dt0, rtol, atol, max_steps, *, adaptive: bool, backsolve: bool):
    """The grid of the Brownian path, the step-size controller, the first step and the step
    budget: adaptive; constant steps of `dt0` (backsolve); or stepping to the grid."""
    grid = brownian_grid(ts, None if adaptive else dt0, times)
    if adaptive:
        controller = stepsize_controller(solver, rtol, atol, dt0)
        return grid, controller, dt0, resolve_max_steps(max_steps)
    if backsolve:  # the backward solve takes steps of -dt0, so the forward one does too
        steps = fixed_step_count(times, dt0)
        return grid, dfx.ConstantStepSize(), dt0, resolve_max_steps(max_steps, steps)
    # StepTo takes its steps from the grid: no dt0, exactly one step per cell
    return grid, dfx.StepTo(ts=grid), None, resolve_max_steps(max_steps, grid.shape[0] - 1)


def _levy_area(solver: dfx.AbstractSolver) -> LevyArea:
    """The cheapest Lévy area the paths provide that the solver accepts."""
    minimal = getattr(solver, "minimal_levy_area", dfx.BrownianIncrement)
    levy = next((a for a in _LEVY_AREAS if issubclass(a, minimal)), None)
    if levy is None:
        raise ValueError(
            f"solver {type(solver).__name__} needs {minimal.__name__}, which sdeint's Brownian "
            "paths do not provide (they give increments and space-time Lévy areas)"
        )
    return levy


def _replicate(y0: ArrayLike, n_samples: int, batch: Batch) -> tuple[Array, Batch]:
    """`n_samples` copies of one state `y0`, batched as `batch` (`vmap` by default)."""
    if not (isinstance(n_samples, int) and n_samples > 0):
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    y0 = _check_state(y0, None)
    return jnp.broadcast_to(y0, (n_samples,) + y0.shape), batch or "vmap"


def _diffusion_shape(drift, diffusion, t0, sample: Array, args: Any) -> jax.ShapeDtypeStruct:
    """The shape of `diffusion(t0, sample, args)`, after checking that the drift has the
    state's shape (both traced, not run)."""
    g_shape = _trace("diffusion", diffusion, t0, sample, args)
    f_shape = _trace("drift", drift, t0, sample, args)
    if f_shape.shape != sample.shape:
        raise ValueError(
            f"drift(t, y, args) must have the shape of y0 {sample.shape}, got {f_shape.shape}"
        )
    return g_shape


def sdeint(
    drift: Callable[[Any, Array, Any], Array],
    diffusion: Callable[[Any, Array, Any], Array],
    y0: Float[ArrayLike, "*batch dim"],
    ts: Float[ArrayLike, " time"],
    *,
    key: PRNGKeyArray,
    args: Any = None,
    noise: Noise = "diagonal",
    calculus: Calculus = "ito",
    solver: str | dfx.AbstractSolver = "euler",
    dt0: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    brownian: Literal["grid", "virtual"] = "grid",
    brownian_tol: float | None = None,
    adjoint: str | dfx.AbstractAdjoint = "checkpoint",
    max_steps: int | None = None,
    on_failure: OnFailure = "raise",
    batch: Batch = None,
    n_samples: int | None = None,
    save_solver_state: bool = False,
) -> Solution:
    """Solve `dy = drift(t, y, args) dt + diffusion(t, y, args) dW`, `y(ts[0]) = y0`.

    **Arguments:**

    - `drift`, `diffusion`: callables `(t, y, args)` for one sample with state `y` of shape
      `(dim,)`. The diffusion returns, by `noise`: `diagonal` — shape `(dim,)`, one Brownian
      motion per component, `dy_i = … + g_i dW_i`; `scalar` — shape `(dim,)`, one Brownian
      motion for all, `dy = … + g dW`; `general` — shape `(dim, m)`, `m` Brownian motions;
      `additive` — `(dim,)` or `(dim, m)`, not depending on `y` (Itô = Stratonovich; allows
      `srk`'s ShARK).
    - `y0`: `(dim,)`, or `(batch, dim)` with `batch`.
    - `ts`: strictly increasing save times `(time,)`; the solve runs from `ts[0]` to `ts[-1]`.
    - `key`: one PRNG key; sample `b` of a batch uses `jax.random.split(key, batch)[b]`.
    - `calculus`: `ito` or `stratonovich`. A solver converging to the other calculus is used
      on the converted drift (`convert_drift`).
    - `solver`: `euler` (Euler–Maruyama, strong order 0.5), `heun`, `milstein` (strong order
      1 for commutative noise), `srk` (stochastic Runge–Kutta: ShARK for additive noise,
      GeneralShARK otherwise, SPaRK when adaptive; Foster et al. 2023), `reversible_heun`
      (Kidger et al. 2021), or a Diffrax solver.
    - `dt0`: fixed steps of (at most) `dt0` on a grid that contains `ts`. `rtol`/`atol`
      instead select adaptive steps (`brownian="virtual"` only).
    - `brownian`: `grid` — the increments of every step drawn at once and looked up by index
      (fast; fixed steps); `virtual` — the same path at the grid points, filled in by a
      virtual Brownian tree (any step; continuous adjoints). The same key gives the same path
      in both. `brownian_tol`: the tree's resolution (default `dt0/2`, or `(t1-t0)/2¹⁰`).
    - `adjoint`: `checkpoint` (backpropagate through the solver), `backsolve` (continuous
      adjoint; pair with `reversible_heun` for exact gradients), `direct`, or a Diffrax adjoint.
    - `max_steps`: the step budget; `None`: the number of steps of the fixed-step grid, or
      4096 for adaptive steps. `on_failure`: as in `odeint`.
    - `batch`: `None`, `"vmap"` (each sample solved separately) or `"joint"` (the batch as one
      state, one step sequence; same paths as `vmap`; Milstein solves as `vmap`, since it
      differentiates the diffusion in the state).
    - `n_samples`: solve `n_samples` paths from one `y0` of shape `(dim,)` (batched as `batch`,
      `vmap` by default).
    - `save_solver_state`: also return the solver's final state as `Solution.solver_state`
      (as in `odeint`; e.g. `jaxdyn.regularize.HeuristicsSolver`'s sums). Not with
      `adjoint="backsolve"`.

    **Returns:** a `Solution` with `ys` of shape `(time, dim)` or `(batch, time, dim)`.
    """
    adaptive = _check_choices(noise, calculus, brownian, brownian_tol, dt0, rtol, atol)
    adjoint_ = check_options(adjoint, on_failure, dt0, batch, save_solver_state)
    check_key(key, "sdeint")
    if n_samples is not None:
        y0, batch = _replicate(y0, n_samples, batch)
    y0 = _check_state(y0, batch)
    times, ts = check_times(ts)

    sample = y0[0] if batch is not None else y0
    g_shape = _diffusion_shape(drift, diffusion, ts[0], sample, args)
    structure = _structure(noise, sample, g_shape)
    additive = noise == "additive"
    solver_, native = _solver(solver, structure, additive, calculus, adaptive)
    if native != calculus and not additive:
        drift = convert_drift(drift, diffusion, noise=noise, to=native)
    milstein = isinstance(solver_, dfx.ItoMilstein | dfx.StratonovichMilstein)
    state_dtype = y0.dtype
    if milstein and jax.config.jax_enable_x64 and y0.dtype != jnp.float64:
        # Diffrax 0.7's Milstein builds an identity matrix in the default dtype (float64
        # under x64) and cannot store the promoted step in a narrower state: solve in
        # float64 and return the state's dtype.
        y0 = y0.astype(jnp.float64)
    if batch == "joint" and milstein:
        # Milstein differentiates the diffusion in the state: on the joint (batch, dim) state
        # that Jacobian is batch² in size. Solving each sample on its own uses the very same
        # per-sample Brownian paths (both layouts split `key` into `batch` keys).
        batch = "vmap"

    backsolve = isinstance(adjoint_, dfx.BacksolveAdjoint)
    if backsolve and brownian == "grid":
        raise ValueError(
            "adjoint='backsolve' solves backwards in time on its own steps, which the grid "
            "path cannot answer: use brownian='virtual' (or adjoint='checkpoint')"
        )
    grid, controller, dt0, max_steps = _steps(
        solver_, ts, times, dt0, rtol, atol, max_steps, adaptive=adaptive, backsolve=backsolve
    )
    tol = brownian_tol
    if tol is None:
        tol = 0.5 * dt0 if dt0 is not None else (ts[-1] - ts[0]) / 2**10
    noise_shape = {"diagonal": sample.shape, "scalar": (), "general": g_shape.shape[1:]}[structure]
    levy = _levy_area(solver_)

    joint = batch == "joint"
    f, g = (JointField(drift), JointField(diffusion)) if joint else (drift, diffusion)
    if backsolve:
        f, g = closure_convert((f, g), ts[0], y0 if joint else sample, args)

    def solve(y0_, path):
        terms = dfx.MultiTerm(dfx.ODETerm(f), _NoiseTerm(g, path, structure))
        return integrate(terms, solver_, ts, dt0, y0_, args=args, controller=controller,
                         adjoint=adjoint_, max_steps=max_steps, on_failure=on_failure,
                         caller="sdeint", save_solver_state=save_solver_state)  # fmt: skip

    path_args = (ts, grid, noise_shape, y0.dtype, levy, tol)
    if batch == "vmap":
        keys = jax.random.split(key, y0.shape[0])
        paths = eqx.filter_vmap(lambda k: brownian_path(brownian, k, *path_args))(keys)
        ys, stats, result, state = eqx.filter_vmap(solve)(y0, paths)
    elif batch == "joint":
        path = brownian_path(brownian, key, *path_args, batch=y0.shape[0])
        ys, stats, result, state = solve(y0, path)
        ys = jnp.moveaxis(ys, 0, 1)
    else:
        ys, stats, result, state = solve(y0, brownian_path(brownian, key, *path_args))
    return Solution(ts=ts, ys=ys.astype(state_dtype), stats=stats, result=result,
                    solver_state=state)  # fmt: skip
