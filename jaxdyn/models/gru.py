"""GRU-Δt: a recurrent baseline for irregular time series (Kidger et al. 2020, §4)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._arguments import check_sizes

__all__ = ["GRUDeltaT"]


class GRUDeltaT(eqx.Module):
    """A GRU over the observed steps of a series, with the time gap appended to each input.

        h_0 = 0,    h_k = GRU([x(t_{i_k}), t_{i_k} - t_{i_{k-1}}], h_{k-1}),    output = ℓ(h_K),

    where `t_{i_1} < … < t_{i_K}` are the times at which anything was observed (the gap of
    the first observation is 0). This is the GRU-Δt baseline of Kidger, Morrill, Foster &
    Lyons (2020), "Neural Controlled Differential Equations for Irregular Time Series", also
    used by Oh, Lim & Kim (2024). Steps with no observed channel are skipped (the hidden state
    is carried over unchanged, so the recurrence is the GRU on the observed subsequence); a
    channel missing at an observed step takes its last observed value (0 before its first).

    Calling it with the grid `ts` and the `values` of one series, shape `(time, channels)`
    with NaN for missing, returns the readout `(out,)` (the final hidden state when
    `out=None`). Batches: `jax.vmap` over `values` (`in_axes=(None, 0)`).
    """

    cell: eqx.nn.GRUCell
    readout: eqx.nn.Linear | None
    channels: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)

    def __init__(self, *, channels: int, hidden: int, out: int | None, key: PRNGKeyArray):
        """**Arguments:** `channels`, of the observations (the gap is appended to them);
        `hidden`, the GRU state size; `out`, the readout size (`None`: no readout); `key`."""
        check_sizes(channels=channels, hidden=hidden, **({} if out is None else {"out": out}))
        k_cell, k_readout = jax.random.split(key)
        self.channels, self.hidden = channels, hidden
        self.cell = eqx.nn.GRUCell(channels + 1, hidden, key=k_cell)
        self.readout = None if out is None else eqx.nn.Linear(hidden, out, key=k_readout)

    def hidden_states(
        self, ts: Float[Array, " time"], values: Float[Array, "time channels"]
    ) -> Float[Array, "time hidden"]:
        """The hidden state after each grid time (unchanged across unobserved times)."""
        ts, values = jnp.asarray(ts), jnp.asarray(values)
        if values.ndim != 2 or values.shape[1] != self.channels:
            raise ValueError(
                f"GRUDeltaT needs values of shape (time, {self.channels}) for one series, "
                f"got {values.shape}; for a batch, jax.vmap over values"
            )
        if ts.shape != values.shape[:1]:
            raise ValueError(f"ts must have shape ({values.shape[0]},), got {ts.shape}")
        dtype = self.cell.weight_ih.dtype
        mask = ~jnp.isnan(values)

        def step(carry, inputs):
            h, last_value, last_time, seen = carry
            t, x, m = inputs
            observed = jnp.any(m)
            x = jnp.where(m, x, last_value)  # fill forward a channel missing at this step
            gap = jnp.where(seen, t - last_time, 0.0)
            h_new = self.cell(jnp.concatenate([x, gap[None]]).astype(dtype), h)
            h = jnp.where(observed, h_new, h)
            carry = (
                h,
                x,
                jnp.where(observed, t, last_time),
                seen | observed,
            )
            return carry, h

        init = (
            jnp.zeros(self.hidden, dtype),
            jnp.zeros(self.channels, values.dtype),
            jnp.zeros((), ts.dtype),
            jnp.asarray(False),
        )
        _, hs = jax.lax.scan(step, init, (ts, values, mask))
        return hs

    def __call__(
        self, ts: Float[Array, " time"], values: Float[Array, "time channels"]
    ) -> Float[Array, " out"]:
        h_final = self.hidden_states(ts, values)[-1]
        return h_final if self.readout is None else self.readout(h_final)
