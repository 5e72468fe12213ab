"""Koopman VAEs: generative models of time series whose latent prior dynamics are linear.

`KoopmanVAE` follows KoVAE (Naiman, Erichson, Ren, Mahoney & Azencot 2024, "Generative
Modeling of Regular and Irregular Time Series Data via Koopman VAEs", ICLR): a GRU posterior
`q(z_t | x_{≤t})`, a GRU prior `p(z̄_t | z̄_{<t})` whose samples are pushed towards linear
dynamics `z̄_{t+1} = A z̄_t` by a prediction loss, with `A` fitted in closed form by least
squares on each batch of prior samples (`koopman_operator`), and a decoder. The eigenvalues of
`A` are the model's latent modes: `arg λ / Δt` their angular frequencies, `|λ|` their growth or
decay per step. `GaussianSequentialVAE` is the GRU sequential-VAE baseline for real-valued
data (one Gaussian initial state, an autonomous GRU generator; cf. `jaxdyn.models.SequentialVAE`
for spike counts).
"""

from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Complex, Float, PRNGKeyArray, Scalar

from .._checks import check_count, check_positive
from ..data import fill_forward, observation_mask
from ..models import gaussian_kl, gaussian_sample

__all__ = [
    "GaussianSequentialVAE",
    "KoopmanLoss",
    "KoopmanVAE",
    "encoder_inputs",
    "koopman_operator",
]


class KoopmanLoss(NamedTuple):
    """The terms of a Koopman VAE's loss on a batch: `total = reconstruction + kl_weight · kl
    + prediction_weight · prediction`; `reconstruction` and `kl` are per-series sums averaged
    over the batch, `prediction` the relative residual of the prior's linear fit."""

    total: Scalar
    reconstruction: Scalar
    kl: Scalar
    prediction: Scalar


def koopman_operator(
    z: Float[Array, "*batch time latent"], *, max_radius: float | None = None
) -> Float[Array, "latent latent"]:
    """The linear map `A` that best advances the latent trajectories one step,
    `A = argmin_A Σ_{b,t} ‖z_{b,t+1} − A z_{b,t}‖²` (column vectors) over all series and steps
    of the batch, as KoVAE fits its prior's operator (Naiman et al. 2024, §4): the normal
    equations `(Z₋ᵀZ₋) Aᵀ = Z₋ᵀZ₊`, solved by LU (by the pseudo-inverse when they are
    singular, e.g. for a collapsed latent), and differentiable. (The reference code
    solves by QR or the pseudo-inverse; XLA's QR and its gradient took 2–200 ms on a batch of
    64 × 24 × 16 latents on CPU, the normal equations 0.2 ms.) Needs at least `latent`
    linearly independent states.

    `max_radius`: rescale `A` to spectral norm at most `max_radius`, `A ← A · min(1,
    max_radius / ‖A‖₂)`, which bounds every eigenvalue's modulus by `max_radius` (`ρ(A) ≤ ‖A‖₂`;
    conservative for a non-normal `A`). `max_radius=1` keeps the linear dynamics in the unit
    disc (no growing mode).
    """
    z = jnp.asarray(z)
    if z.ndim < 2 or z.shape[-2] < 2:
        raise ValueError(f"z must have shape (*batch, time >= 2, latent), got {z.shape}")
    if max_radius is not None:
        check_positive("max_radius", max_radius)
    latent = z.shape[-1]
    past = z[..., :-1, :].reshape(-1, latent)
    future = z[..., 1:, :].reshape(-1, latent)
    if past.shape[0] < latent:
        raise ValueError(
            f"z has {past.shape[0]} transitions for a {latent}-dimensional latent: the "
            "least-squares operator needs at least as many transitions as latent dimensions"
        )
    a = jnp.linalg.solve(past.T @ past, past.T @ future).T
    # A collapsed latent (a dead dimension) makes the normal equations singular: then the
    # minimum-norm least-squares solution, by the pseudo-inverse (slower, so only then).
    a = jax.lax.cond(
        jnp.all(jnp.isfinite(a)), lambda: a, lambda: (jnp.linalg.pinv(past) @ future).T
    )
    if max_radius is not None:
        norm = jnp.linalg.norm(a, ord=2)
        a = a * jnp.minimum(1.0, max_radius / jnp.maximum(norm, jnp.finfo(a.dtype).tiny))
    return a


def encoder_inputs(
    values: Float[Array, "time channels"], ts: Float[Array, " time"] | None = None
) -> Float[Array, "time features"]:
    """What an irregular-data encoder reads at each grid time: `[x̃_t, m_t, δ_t]`, with `x̃`
    the last observation so far (`jaxdyn.data.fill_forward`; 0 before a channel's first
    observation), `m` the observation mask (1 where observed, NaN marks missing), and `δ` the
    time since each channel's last observation (since `ts[0]` before the first): `3·channels`
    features. A simple stand-in for KoVAE's neural-CDE embedding of irregular data (masked
    inputs with time-gap features, as GRU-D, Che et al. 2018). `ts` defaults to `0, 1, …`."""
    values = jnp.asarray(values)
    time = values.shape[0]
    ts = jnp.arange(time, dtype=values.dtype) if ts is None else jnp.asarray(ts, values.dtype)
    mask = observation_mask(values)
    filled = jnp.nan_to_num(fill_forward(values), nan=0.0)
    index = jnp.where(mask, jnp.arange(time)[:, None], 0)
    last = jax.lax.cummax(index, axis=0)
    gaps = ts[:, None] - ts[last]
    return jnp.concatenate([filled, mask.astype(values.dtype), gaps], axis=-1)


def _check_values(values: Array, channels: int, owner: str) -> Array:
    values = jnp.asarray(values)
    if values.ndim != 3 or values.shape[-1] != channels or values.shape[1] < 2:
        raise ValueError(
            f"{owner}: values must have shape (batch, time >= 2, {channels}), got {values.shape}"
        )
    return values


def _check_length(length: int, n: int) -> None:
    check_count("length", length, 2)
    check_count("n", n)


def _scan_gru(cell: eqx.nn.GRUCell, xs: Array, *, reverse: bool = False) -> Array:
    """The GRU's states `h_t = cell(x_t, h_{t−1})` from `h_0 = 0` over `xs` `(time, in)`, in
    the cell's dtype (float32 data through a float64 model, or the reverse)."""
    xs = xs.astype(cell.weight_hh.dtype)
    h0 = jnp.zeros(cell.hidden_size, xs.dtype)

    def step(h, x):
        h = cell(x, h)
        return h, h

    return jax.lax.scan(step, h0, xs, reverse=reverse)[1]


def _gaussian_kl(mean_q, log_var_q, mean_p, log_var_p) -> Scalar:
    """`Σ KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²))` over all entries."""
    return 0.5 * jnp.sum(
        log_var_p
        - log_var_q
        + (jnp.exp(log_var_q) + (mean_q - mean_p) ** 2) / jnp.exp(log_var_p)
        - 1.0
    )


def _masked_squares(values: Array, prediction: Array) -> tuple[Array, Bool[Array, "..."]]:
    """Squared errors where `values` is observed (0 where NaN) and the mask."""
    mask = ~jnp.isnan(values)
    return jnp.where(mask, (jnp.nan_to_num(values) - prediction) ** 2, 0.0), mask


class KoopmanVAE(eqx.Module):
    """KoVAE (Naiman et al. 2024): a sequential VAE whose prior is pushed towards linear latent
    dynamics, for regular and irregular time series.

    - Posterior: a forward GRU over the series, `h_t = GRU(x_t, h_{t−1})`,
      `q(z_t | x_{≤t}) = N(μ(h_t), diag σ²(h_t))` (the paper's factorisation); with
      `bidirectional=True`, as the reference code, a forward and a backward GRU,
      `q(z_t | x_{1:T}) = N(μ([h_t, h'_t]), diag σ²([h_t, h'_t]))`. With `irregular=True` the
      GRUs read `encoder_inputs` (last observations, mask and time gaps) where the paper uses
      a neural-CDE embedding.
    - Prior: a GRU run on its own samples, `h̄_t = GRU(z̄_{t−1}, h̄_{t−1})` from `z̄_0 = h̄_0 = 0`,
      `p(z̄_t | z̄_{<t}) = N(μ̄(h̄_t), diag σ̄²(h̄_t))`; generation decodes its samples.
    - Linear latent dynamics: on each batch of prior samples, `A = koopman_operator(z̄)` (closed
      form, least squares, as the paper; its spectrum bounded by `max_radius` when given), and
      the prediction loss `L_pred = ‖Z̄₊ − Z̄₋Aᵀ‖²_F / ‖Z̄₊‖²_F`.
    - Decoder: a bidirectional GRU over `z_{1:T}` and a linear read-out, through a sigmoid
      when `bounded` (data scaled to `[0, 1]`, as the paper's).

    Loss (`loss`; the paper's objective with its weights `α = 1`, `β`, `γ`):
    `Σ_t ‖x_t − x̂_t‖² + β Σ_t KL(q(z_t | x) ‖ p(z_t | z_{<t})) + γ L_pred`, the squared error
    over observed entries only. `kl_against="posterior"` (default) is the sequential ELBO's KL:
    the prior's conditionals are evaluated along the posterior sample itself (`z_{<t} ~ q`,
    `prior_conditionals`), so the prior learns the latent dynamics. `kl_against="independent"`
    is the reference code's: each series' posterior against the per-step prior of an
    independent free-running prior sample; that prior's history is independent of the series,
    so the best it can do is each step's marginal, and nothing but `L_pred` teaches it
    dynamics (the collapse measured by `koopman_vae`: docs in the experiment).
    """

    encoder: eqx.nn.GRUCell
    encoder_backward: eqx.nn.GRUCell | None
    posterior: eqx.nn.Linear
    prior_cell: eqx.nn.GRUCell
    prior_head: eqx.nn.Linear
    decoder_forward: eqx.nn.GRUCell
    decoder_backward: eqx.nn.GRUCell
    readout: eqx.nn.Linear
    channels: int = eqx.field(static=True)
    latent: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    irregular: bool = eqx.field(static=True)
    bounded: bool = eqx.field(static=True)
    max_radius: float | None = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)

    def __init__(
        self,
        *,
        channels: int,
        latent: int = 16,
        hidden: int = 20,
        irregular: bool = False,
        bounded: bool = True,
        max_radius: float | None = None,
        bidirectional: bool = False,
        key: PRNGKeyArray,
    ):
        """**Arguments:** `channels` of the series; `latent` (the paper's `z_dim`, 16);
        `hidden`, every GRU's state (20); `irregular`: read NaN-marked missing values through
        `encoder_inputs`; `bounded`: sigmoid output (data in `[0, 1]`); `max_radius`: bound on
        the eigenvalues of the prior's operator (`koopman_operator`); `bidirectional`: the
        posterior reads the whole series (forward and backward GRUs, as the reference code)
        rather than its past; `key`."""
        check_count("channels", channels)
        check_count("latent", latent)
        check_count("hidden", hidden)
        if max_radius is not None:
            check_positive("max_radius", max_radius)
        keys = jax.random.split(key, 8)
        inputs = 3 * channels if irregular else channels
        self.encoder = eqx.nn.GRUCell(inputs, hidden, key=keys[0])
        self.encoder_backward = (
            eqx.nn.GRUCell(inputs, hidden, key=keys[7]) if bidirectional else None
        )
        directions = 2 if bidirectional else 1
        self.posterior = eqx.nn.Linear(directions * hidden, 2 * latent, key=keys[1])
        self.prior_cell = eqx.nn.GRUCell(latent, hidden, key=keys[2])
        self.prior_head = eqx.nn.Linear(hidden, 2 * latent, key=keys[3])
        self.decoder_forward = eqx.nn.GRUCell(latent, hidden, key=keys[4])
        self.decoder_backward = eqx.nn.GRUCell(latent, hidden, key=keys[5])
        self.readout = eqx.nn.Linear(2 * hidden, channels, key=keys[6])
        self.channels, self.latent, self.hidden = channels, latent, hidden
        self.irregular, self.bounded, self.max_radius = irregular, bounded, max_radius
        self.bidirectional = bidirectional

    def encode(
        self, values: Float[Array, "time channels"], ts: Float[Array, " time"] | None = None
    ) -> tuple[Float[Array, "time latent"], Float[Array, "time latent"]]:
        """The posterior's mean and log-variance at every step of one series."""
        values = _check_values(values[None], self.channels, "KoopmanVAE")[0]
        inputs = encoder_inputs(values, ts) if self.irregular else values
        hs = _scan_gru(self.encoder, inputs)
        if self.encoder_backward is not None:
            backward = _scan_gru(self.encoder_backward, inputs, reverse=True)
            hs = jnp.concatenate([hs, backward], axis=-1)
        out = jax.vmap(self.posterior)(hs)
        return out[:, : self.latent], out[:, self.latent :]

    def decode(self, z: Float[Array, "time latent"]) -> Float[Array, "time channels"]:
        """The series `x̂_{1:T}` decoded from latents `z_{1:T}`."""
        hs = jnp.concatenate(
            [_scan_gru(self.decoder_forward, z), _scan_gru(self.decoder_backward, z, reverse=True)],
            axis=-1,
        )
        out = jax.vmap(self.readout)(hs)
        return jax.nn.sigmoid(out) if self.bounded else out

    def prior(self, length: int, *, key: PRNGKeyArray) -> tuple[Float[Array, "time latent"], ...]:
        """One prior sample `z̄_{1:length}` and its per-step means and log-variances."""
        dtype = self.prior_head.weight.dtype

        def step(carry, k):
            z, h = carry
            h = self.prior_cell(z, h)
            out = self.prior_head(h)
            mean, log_var = out[: self.latent], out[self.latent :]
            z = gaussian_sample(mean, log_var, key=k)
            return (z, h), (z, mean, log_var)

        carry = (jnp.zeros(self.latent, dtype), jnp.zeros(self.hidden, dtype))
        return jax.lax.scan(step, carry, jax.random.split(key, length))[1]

    def prior_conditionals(
        self, z: Float[Array, "time latent"]
    ) -> tuple[Float[Array, "time latent"], Float[Array, "time latent"]]:
        """The prior's conditionals `p(z_t | z_{<t})` along a given latent path `z_{1:T}`
        (teacher forcing, `h̄_t = GRU(z_{t−1}, h̄_{t−1})` from `z_0 = h̄_0 = 0`): their means and
        log-variances, as `prior` computes them along its own samples."""
        z = jnp.asarray(z, self.prior_head.weight.dtype)
        inputs = jnp.concatenate([jnp.zeros_like(z[:1]), z[:-1]])
        out = jax.vmap(self.prior_head)(_scan_gru(self.prior_cell, inputs))
        return out[:, : self.latent], out[:, self.latent :]

    def sample(self, n: int, length: int, *, key: PRNGKeyArray) -> Float[Array, "n time channels"]:
        """`n` generated series of `length` steps: prior samples, decoded."""
        _check_length(length, n)
        z = jax.vmap(lambda k: self.prior(length, key=k)[0])(jax.random.split(key, n))
        return jax.vmap(self.decode)(z)

    def operator(
        self, *, key: PRNGKeyArray, num_samples: int = 256, length: int = 24
    ) -> Float[Array, "latent latent"]:
        """The Koopman operator `A` (`koopman_operator`, with `max_radius`) of `num_samples`
        prior samples of `length` steps."""
        _check_length(length, num_samples)
        z = jax.vmap(lambda k: self.prior(length, key=k)[0])(jax.random.split(key, num_samples))
        return koopman_operator(z, max_radius=self.max_radius)

    def eigenvalues(
        self, *, key: PRNGKeyArray, num_samples: int = 256, length: int = 24
    ) -> Complex[Array, " latent"]:
        """The eigenvalues of `operator(...)`: `|λ|` the growth per step, `arg λ / Δt` the
        angular frequency of each latent mode (`jnp.linalg.eigvals`)."""
        a = self.operator(key=key, num_samples=num_samples, length=length)
        return jnp.linalg.eigvals(a)

    def loss(
        self,
        values: Float[Array, "batch time channels"],
        *,
        key: PRNGKeyArray,
        ts: Float[Array, " time"] | None = None,
        kl_weight: float = 0.007,
        prediction_weight: float = 1.0,
        kl_against: Literal["posterior", "independent"] = "posterior",
    ) -> KoopmanLoss:
        """The KoVAE objective on a batch (see the class); NaN entries of `values` are missing
        and left out of the reconstruction. Defaults: the paper's `β = 0.007`; `γ = 1` for this
        relative `L_pred` (the reference code's is `MSE / ‖Z̄₋Aᵀ‖_F` at weight 0.005: for
        latents of unit scale on its batches of 64 × 24 × 16, about `3·10⁻⁵` of this one, so
        in effect off). `kl_against`: the prior's conditionals along the posterior sample (the
        ELBO) or along an independent prior sample (the reference code)."""
        if kl_against not in ("posterior", "independent"):
            raise ValueError(f"kl_against must be posterior or independent, got {kl_against!r}")
        values = _check_values(values, self.channels, "KoopmanVAE.loss")
        batch, length, _ = values.shape
        post_key, prior_key = jax.random.split(key)
        mean, log_var = jax.vmap(lambda v: self.encode(v, ts))(values)
        z = gaussian_sample(mean, log_var, key=post_key)
        squares, _ = _masked_squares(values, jax.vmap(self.decode)(z))
        keys = jax.random.split(prior_key, batch)
        z_bar, mean_p, log_var_p = jax.vmap(lambda k: self.prior(length, key=k))(keys)
        if kl_against == "posterior":
            mean_p, log_var_p = jax.vmap(self.prior_conditionals)(z)
        a = koopman_operator(z_bar, max_radius=self.max_radius)
        future = z_bar[:, 1:]
        residual = future - jnp.einsum("btj,ij->bti", z_bar[:, :-1], a)
        prediction = jnp.sum(residual**2) / jnp.sum(future**2)
        reconstruction = jnp.sum(squares) / batch
        kl = _gaussian_kl(mean, log_var, mean_p, log_var_p) / batch
        total = reconstruction + kl_weight * kl + prediction_weight * prediction
        return KoopmanLoss(total, reconstruction, kl, prediction)


class GaussianSequentialVAE(eqx.Module):
    """A GRU sequential VAE with a Gaussian likelihood, the baseline for real-valued series.

    Encoder: a forward GRU over the series (with `irregular=True`, over `encoder_inputs`); its
    last state gives `q(g | x) = N(μ, diag σ²)` over the generator's initial state
    `g ∈ ℝ^{hidden}`. Generator: an input-free GRU `h_1 = g`, `h_{t+1} = GRU(0, h_t)`, read out
    `x̂_t = W h_t + b` (through a sigmoid when `bounded`). Likelihood `N(x_t | x̂_t, diag s²)`
    with a learned noise scale `s` per channel. Loss per batch (the negative ELBO, per-series
    sums averaged): `−Σ_t log N(x_t | x̂_t, s²) + β KL(q(g | x) ‖ N(0, I))`, observed entries only.
    Generation decodes `g ~ N(0, I)` (the means `x̂`). This is `jaxdyn.models.SequentialVAE`'s
    architecture (LFADS without a controller; Sussillo et al. 2016) with a Gaussian in place of
    its Poisson likelihood, and one encoder direction (its `BidirectionalGRU` reads counts
    through `log1p`, which real-valued data would break).
    """

    encoder: eqx.nn.GRUCell
    initial: eqx.nn.Linear
    generator: eqx.nn.GRUCell
    readout: eqx.nn.Linear
    log_scale: Float[Array, " channels"]
    channels: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    irregular: bool = eqx.field(static=True)
    bounded: bool = eqx.field(static=True)

    def __init__(
        self,
        *,
        channels: int,
        hidden: int = 20,
        irregular: bool = False,
        bounded: bool = True,
        key: PRNGKeyArray,
    ):
        """**Arguments:** `channels` of the series; `hidden`, the GRUs' states (and the size of
        the initial state `g`); `irregular`, `bounded` as for `KoopmanVAE`; `key`."""
        check_count("channels", channels)
        check_count("hidden", hidden)
        ke, ki, kg, kr = jax.random.split(key, 4)
        inputs = 3 * channels if irregular else channels
        self.encoder = eqx.nn.GRUCell(inputs, hidden, key=ke)
        self.initial = eqx.nn.Linear(hidden, 2 * hidden, key=ki)
        self.generator = eqx.nn.GRUCell(1, hidden, key=kg)
        self.readout = eqx.nn.Linear(hidden, channels, key=kr)
        self.log_scale = jnp.full(channels, -2.0)  # s = 0.14 for data in [0, 1]
        self.channels, self.hidden = channels, hidden
        self.irregular, self.bounded = irregular, bounded

    def encode(
        self, values: Float[Array, "time channels"], ts: Float[Array, " time"] | None = None
    ) -> tuple[Float[Array, " hidden"], Float[Array, " hidden"]]:
        """The posterior's mean and log-variance of the generator's initial state."""
        values = _check_values(values[None], self.channels, "GaussianSequentialVAE")[0]
        inputs = encoder_inputs(values, ts) if self.irregular else values
        out = self.initial(_scan_gru(self.encoder, inputs)[-1])
        return out[: self.hidden], out[self.hidden :]

    def decode(self, g: Float[Array, " hidden"], length: int) -> Float[Array, "time channels"]:
        """The series of `length` steps generated from the initial state `g`."""

        def step(h, _):
            h = self.generator(jnp.zeros(1, h.dtype), h)
            return h, h

        hs = jnp.concatenate([g[None], jax.lax.scan(step, g, None, length=length - 1)[1]])
        out = jax.vmap(self.readout)(hs)
        return jax.nn.sigmoid(out) if self.bounded else out

    def sample(self, n: int, length: int, *, key: PRNGKeyArray) -> Float[Array, "n time channels"]:
        """`n` generated series of `length` steps, from `g ~ N(0, I)`."""
        _check_length(length, n)
        g = jax.random.normal(key, (n, self.hidden), self.readout.weight.dtype)
        return jax.vmap(lambda g_: self.decode(g_, length))(g)

    def loss(
        self,
        values: Float[Array, "batch time channels"],
        *,
        key: PRNGKeyArray,
        ts: Float[Array, " time"] | None = None,
        kl_weight: float = 1.0,
    ) -> KoopmanLoss:
        """The negative ELBO on a batch (see the class), as a `KoopmanLoss` whose
        `reconstruction` is the Gaussian negative log-likelihood and `prediction` is 0."""
        values = _check_values(values, self.channels, "GaussianSequentialVAE.loss")
        batch, length, _ = values.shape
        mean, log_var = jax.vmap(lambda v: self.encode(v, ts))(values)
        g = gaussian_sample(mean, log_var, key=key)
        squares, mask = _masked_squares(values, jax.vmap(lambda g_: self.decode(g_, length))(g))
        nll_terms = 0.5 * squares * jnp.exp(-2 * self.log_scale) + self.log_scale
        nll_terms = nll_terms + 0.5 * jnp.log(2 * jnp.pi)
        nll = jnp.sum(jnp.where(mask, nll_terms, 0.0)) / batch
        kl = gaussian_kl(mean, log_var) / batch
        zero = jnp.zeros((), nll.dtype)
        return KoopmanLoss(nll + kl_weight * kl, nll, kl, zero)
