"""Brownian paths for `sdeint`: a grid of increments, and a virtual path through the same grid.

Both paths are built from one key on one time grid (the save times `ts` together with the
fixed steps of size `dt0`, when given):

- the **grid** path draws the increments `ΔW_i ~ N(0, h_i)` (and, for stochastic Runge–Kutta
  solvers, the space-time Lévy areas `H_i ~ N(0, h_i/12)`) of every grid cell once, as one
  array, and a solver step looks its cell up by index. It answers queries on grid cells only,
  which is what fixed-step training needs, and costs one `jax.random.normal` per solve.
- the **virtual** path is the same Brownian motion at the grid points, filled in between them
  by independent Brownian bridges (Brownian arches when Lévy areas are used), evaluated by a
  Diffrax `VirtualBrownianTree` (Li et al. 2020; Jelinčič, Foster & Kidger 2024): it answers
  any query, as adaptive steps and continuous adjoints need, exactly in distribution.

The construction: on a cell `[t_i, t_i + h]`, with `s = t - t_i`, a Brownian motion decomposes
(Foster 2020, Thm 6.1.6) as

    W(t) = W(t_i) + (s/h) ΔW_i + 6 s (h - s) / h² · H_i + Z(t),

with `Z` independent of `(ΔW_i, H_i)`. Writing `P_X` for the piecewise polynomial on the right
(without `Z`) built from a path's own cell increments and areas, the virtual path is
`W = P_G + (V - P_V)` with `G` the grid draws and `V` a virtual Brownian tree: `V - P_V` is
exactly the independent remainder `Z`, so `W` is a Brownian motion with `W`'s increments and
Lévy areas on every grid cell equal to the grid path's. Same key, same path.
"""

import math

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["GridBrownianPath", "VirtualBrownianPath", "brownian_grid", "brownian_path"]

LevyArea = type[dfx.BrownianIncrement] | type[dfx.SpaceTimeLevyArea]

_W, _H, _TREE, _BRIDGE = 0, 1, 2, 3  # fold_in tags: increments on ts, Lévy areas, tree, bridge


def brownian_grid(ts: Array, dt0: float | None, times: np.ndarray | None = None) -> Array:
    """The grid of a solve: the times `ts`, plus the steps of size `dt0` when given.

    With `dt0`, the uniform points `ts[0] + k·dt0` are merged with `ts`; a uniform point closer
    than `dt0/1000` to a time of `ts` is dropped, so no cell is degenerate. This needs the
    times known at trace time: `times`, a host copy of `ts` (given when `ts` came from NumPy,
    which `jnp.asarray` turns into a tracer under `jit`), or `ts` itself when it is concrete.
    """
    if dt0 is None:
        return ts
    if times is None:
        if isinstance(ts, jax.core.Tracer):
            raise ValueError(
                "sdeint with fixed steps (dt0) needs `ts` known at trace time, to build the "
                "step grid; close over ts (a NumPy or concrete JAX array) instead of passing "
                "it as an argument of a jitted function"
            )
        times = np.asarray(ts)
    times = np.asarray(times, dtype=np.float64)
    t0, t1 = times[0], times[-1]
    count = int(math.ceil((t1 - t0) / dt0 - 1e-9))
    uniform = t0 + dt0 * np.arange(count)
    near = np.min(np.abs(uniform[:, None] - times[None, :]), axis=1) < dt0 * 1e-3
    grid = np.union1d(times, uniform[~near])
    return jnp.asarray(grid, dtype=ts.dtype)


def _cell(grid: Array, t0, t1) -> Array:
    """The index of the grid cell containing the midpoint of `[t0, t1]`."""
    mid = 0.5 * (t0 + t1)
    return jnp.clip(jnp.searchsorted(grid, mid, side="right") - 1, 0, grid.shape[0] - 2)


def _levy(levy_area: LevyArea, dt, w, h) -> dfx.AbstractBrownianIncrement:
    if levy_area is dfx.SpaceTimeLevyArea:
        return dfx.SpaceTimeLevyArea(dt=dt, W=w, H=h)
    return dfx.BrownianIncrement(dt=dt, W=w)


def _draw(
    key: PRNGKeyArray, ts: Array, grid: Array, shape: tuple[int, ...], dtype, levy_area: LevyArea
):
    """Increments `ΔW_i ~ N(0, h_i)` on the cells of `grid` and (if asked) Lévy areas
    `H_i ~ N(0, h_i/12)`.

    The increments over the cells of `ts` are drawn first; the grid cells inside each of them
    are a Brownian bridge conditioned on it (`ΔW_j = (h_j/h) ΔW + Z_j - (h_j/h) Σ Z`,
    `Z_j ~ N(0, h_j)`), so `W` at the times `ts` does not depend on the step size.
    """
    expand = (1,) * len(shape)
    widths = jnp.diff(grid).astype(dtype)
    size = (widths.shape[0],) + shape
    coarse_widths = jnp.diff(ts).astype(dtype).reshape((-1,) + expand)
    coarse = jnp.sqrt(coarse_widths) * jax.random.normal(
        jax.random.fold_in(key, _W), (ts.shape[0] - 1,) + shape, dtype
    )
    scale = jnp.sqrt(widths).reshape((-1,) + expand)
    if grid.shape == ts.shape:  # the grid is ts: no bridge
        increments = coarse
    else:
        cell = jnp.clip(jnp.searchsorted(ts, 0.5 * (grid[1:] + grid[:-1])) - 1, 0, ts.shape[0] - 2)
        z = scale * jax.random.normal(jax.random.fold_in(key, _BRIDGE), size, dtype)
        fraction = widths.reshape((-1,) + expand) / coarse_widths[cell]
        z_sum = jax.ops.segment_sum(z, cell, num_segments=ts.shape[0] - 1)
        increments = fraction * (coarse[cell] - z_sum[cell]) + z
    areas = None
    if levy_area is dfx.SpaceTimeLevyArea:
        draws = jax.random.normal(jax.random.fold_in(key, _H), size, dtype)
        areas = scale * draws / math.sqrt(12.0)
    return increments, areas


class _OnGrid(dfx.AbstractBrownianPath):
    """A Brownian path defined on `[grid[0], grid[-1]]`."""

    grid: eqx.AbstractVar[Float[Array, " nodes"]]

    @property
    def t0(self):
        return self.grid[0]

    @property
    def t1(self):
        return self.grid[-1]


class GridBrownianPath(_OnGrid):
    """Brownian increments drawn once on a fixed grid and looked up by cell.

    Only grid cells may be queried (`evaluate(t_i, t_{i+1})`), as a fixed-step solve on the
    grid does; `evaluate(t)` gives `W` at the grid point nearest `t`.
    """

    grid: Float[Array, " nodes"]
    increments: Array
    areas: Array | None
    levy_area: LevyArea = eqx.field(static=True)

    def __init__(
        self, key: PRNGKeyArray, ts: Array, grid: Array, shape, dtype, levy_area: LevyArea
    ):
        self.grid = grid
        self.levy_area = levy_area
        self.increments, self.areas = _draw(key, ts, grid, tuple(shape), dtype, levy_area)

    def evaluate(self, t0, t1=None, left: bool = True, use_levy: bool = False):
        del left
        t0 = jax.lax.stop_gradient(t0)
        if t1 is None:
            values = jnp.cumsum(self.increments, axis=0)
            index = jnp.argmin(jnp.abs(self.grid - t0))
            return jnp.where(index == 0, 0.0, values[jnp.maximum(index - 1, 0)])
        t1 = jax.lax.stop_gradient(t1)
        i = _cell(self.grid, t0, t1)
        w = self.increments[i]
        if not use_levy:
            return w
        h = None if self.areas is None else self.areas[i]
        return _levy(self.levy_area, t1 - t0, w, h)


class _Arches(eqx.Module):
    """The piecewise polynomial `P(t) = X_i + (s/h) ΔX_i + 6 s(h-s)/h² · H_i` on a grid, with
    its value, and its integral from the start of the grid, in closed form."""

    grid: Array
    nodes: Array  # X at the grid points
    increments: Array
    areas: Array | None
    integrals: Array  # ∫ P from grid[0] to each grid point

    def __init__(self, grid, increments, areas):
        self.grid, self.increments, self.areas = grid, increments, areas
        zero = jnp.zeros_like(increments[:1])
        self.nodes = jnp.concatenate([zero, jnp.cumsum(increments, axis=0)])
        widths = jnp.diff(grid).reshape((-1,) + (1,) * (increments.ndim - 1))
        cells = widths * (self.nodes[:-1] + 0.5 * increments)  # ∫ over each cell
        if areas is not None:
            cells = cells + widths * areas  # ∫_0^h 6 s(h-s)/h² ds = h
        self.integrals = jnp.concatenate([zero, jnp.cumsum(cells, axis=0)])

    def _local(self, t):
        i = jnp.clip(jnp.searchsorted(self.grid, t, side="right") - 1, 0, self.grid.shape[0] - 2)
        h = self.grid[i + 1] - self.grid[i]
        s = t - self.grid[i]
        return i, h, s

    def value_and_integral(self, t):
        i, h, s = self._local(t)
        x, dx = self.nodes[i], self.increments[i]
        value = x + (s / h) * dx
        integral = self.integrals[i] + s * x + s**2 / (2 * h) * dx
        if self.areas is not None:
            a = self.areas[i]
            value = value + 6 * s * (h - s) / h**2 * a
            integral = integral + 6 * a / h**2 * (h * s**2 / 2 - s**3 / 3)
        return value, integral


def _levy_of(p: _Arches, t0, t1):
    """Increment and space-time Lévy area `H = (1/h)∫W - (W(t0) + W(t1))/2` of `P` on [t0, t1]."""
    v0, i0 = p.value_and_integral(t0)
    v1, i1 = p.value_and_integral(t1)
    return v1 - v0, (i1 - i0) / (t1 - t0) - 0.5 * (v0 + v1)


class VirtualBrownianPath(dfx.AbstractBrownianPath):
    """The grid path's Brownian motion, filled in by a virtual Brownian tree: any query.

    `W = P_G + V - P_V` (see the module docstring): exact in distribution at all times, and
    equal to `GridBrownianPath` with the same key on every grid cell.
    """

    grid_part: _Arches
    tree: dfx.VirtualBrownianTree
    tree_part: _Arches
    levy_area: LevyArea = eqx.field(static=True)

    def __init__(
        self,
        key: PRNGKeyArray,
        ts: Array,
        grid: Array,
        shape,
        dtype,
        levy_area: LevyArea,
        tol: float,
    ):
        shape = tuple(shape)
        self.levy_area = levy_area
        increments, areas = _draw(key, ts, grid, shape, dtype, levy_area)
        self.grid_part = _Arches(grid, increments, areas)
        self.tree = dfx.VirtualBrownianTree(
            grid[0],
            grid[-1],
            tol,
            jax.ShapeDtypeStruct(shape, dtype),
            jax.random.fold_in(key, _TREE),
            levy_area=levy_area,
        )
        cells = jax.vmap(lambda a, b: self.tree.evaluate(a, b, use_levy=True))(grid[:-1], grid[1:])
        tree_areas = cells.H if levy_area is dfx.SpaceTimeLevyArea else None
        self.tree_part = _Arches(grid, cells.W, tree_areas)

    @property
    def t0(self):
        return self.grid_part.grid[0]

    @property
    def t1(self):
        return self.grid_part.grid[-1]

    def evaluate(self, t0, t1=None, left: bool = True, use_levy: bool = False):
        del left
        t0 = jax.lax.stop_gradient(t0)
        if t1 is None:
            v = self.tree.evaluate(t0)
            return (
                self.grid_part.value_and_integral(t0)[0]
                + v
                - self.tree_part.value_and_integral(t0)[0]
            )
        t1 = jax.lax.stop_gradient(t1)
        tree = self.tree.evaluate(t0, t1, use_levy=True)
        gw, gh = _levy_of(self.grid_part, t0, t1)
        pw, ph = _levy_of(self.tree_part, t0, t1)
        w = gw + tree.W - pw
        if not use_levy:
            return w
        h = gh + tree.H - ph if self.levy_area is dfx.SpaceTimeLevyArea else None
        return _levy(self.levy_area, t1 - t0, w, h)


class _StackedPath(_OnGrid):
    """Per-sample paths (a path whose leaves have a leading batch axis), queried together."""

    paths: dfx.AbstractBrownianPath
    grid: Float[Array, " nodes"]
    levy_area: LevyArea = eqx.field(static=True)

    def evaluate(self, t0, t1=None, left: bool = True, use_levy: bool = False):
        out = eqx.filter_vmap(lambda p: p.evaluate(t0, t1, left, use_levy))(self.paths)
        if use_levy and t1 is not None:  # one step size for the batch, not one per sample
            out = eqx.tree_at(lambda x: x.dt, out, t1 - t0)
        return out


def brownian_path(
    kind: str,
    key: PRNGKeyArray,
    ts: Array,
    grid: Array,
    shape: tuple[int, ...],
    dtype,
    levy_area: LevyArea,
    tol: float | None,
    batch: int | None = None,
) -> dfx.AbstractBrownianPath:
    """A `grid` or `virtual` path on `grid` (which contains `ts`) for one sample, or for
    `batch` samples (one key each, `jax.random.split(key, batch)`) queried together."""

    def one(k):
        if kind == "grid":
            return GridBrownianPath(k, ts, grid, shape, dtype, levy_area)
        return VirtualBrownianPath(k, ts, grid, shape, dtype, levy_area, tol)

    if batch is None:
        return one(key)
    paths = eqx.filter_vmap(one)(jax.random.split(key, batch))
    return _StackedPath(paths, grid, levy_area)
