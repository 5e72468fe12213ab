"""A GRU sequential VAE for spike trains (LFADS-like; Sussillo et al. 2016, Pandarinath et al.
2018), and the pieces it shares with `LangevinFlow`: a bidirectional GRU encoder, Gaussian
KL divergences and samples, and the Poisson log-likelihood of binned spike counts."""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from ._arguments import check_sizes, check_spikes

__all__ = [
    "BidirectionalGRU",
    "LatentOutput",
    "SequentialVAE",
    "gaussian_kl",
    "gaussian_sample",
    "poisson_log_likelihood",
]


class LatentOutput(NamedTuple):
    """What a sequential VAE returns for one trial: `log_rates` `(time, neurons)` (log of the
    expected count per bin), `latents` `(time, latent)` (the trajectory the rates are read
    from) and `kl` (the KL terms of this sample, a scalar)."""

    log_rates: Float[Array, "time neurons"]
    latents: Float[Array, "time latent"]
    kl: Scalar


def gaussian_kl(
    mean: Float[Array, "*shape"], log_var: Float[Array, "*shape"], prior_scale: float = 1.0
) -> Scalar:
    """`KL(N(mean, diag e^{log_var}) ‖ N(0, prior_scale² I))`, summed over all entries:
    `Σ ½ (σ²/s² + μ²/s² − 1 − log(σ²/s²))`."""
    ratio = jnp.exp(log_var) / prior_scale**2
    return 0.5 * jnp.sum(ratio + mean**2 / prior_scale**2 - 1.0 - jnp.log(ratio))


def gaussian_sample(
    mean: Float[Array, "*shape"], log_var: Float[Array, "*shape"], *, key: PRNGKeyArray
) -> Float[Array, "*shape"]:
    """One reparameterised sample `mean + e^{log_var / 2} ε`, `ε ~ N(0, I)` from `key`, of the
    Gaussian whose `gaussian_kl` the ELBO charges (Kingma & Welling 2014)."""
    return mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape, mean.dtype)


def poisson_log_likelihood(
    log_rates: Float[Array, "*shape"], counts: Float[Array, "*shape"], *, reduce: bool = True
) -> Scalar | Float[Array, "*shape"]:
    """`Σ [y log λ − λ − log y!]` of counts `y` under Poisson means `λ = exp(log_rates)`;
    with `reduce=False`, the terms per entry (not summed)."""
    terms = counts * log_rates - jnp.exp(log_rates) - jax.lax.lgamma(counts + 1.0)
    return jnp.sum(terms) if reduce else terms


class BidirectionalGRU(eqx.Module):
    """Two GRUs (`eqx.nn.GRUCell`) over a sequence, one forwards and one backwards in time.

    For inputs `s_1, …, s_T`: `f_t = GRU_f(s_t, f_{t−1})`, `b_t = GRU_b(s_t, b_{t+1})`, both
    from zero. `__call__` returns the per-step features `[f_t, b_t]` `(time, 2·hidden)` and the
    summary `[f_T, b_1]` `(2·hidden,)` (each direction after reading the whole sequence).
    Inputs are transformed by `log1p` (spike counts are small non-negative integers).
    """

    forward_cell: eqx.nn.GRUCell
    backward_cell: eqx.nn.GRUCell
    hidden: int = eqx.field(static=True)

    def __init__(self, *, inputs: int, hidden: int, key: PRNGKeyArray):
        """**Arguments:** `inputs`, the sequence's features; `hidden`, each GRU's state size."""
        check_sizes(inputs=inputs, hidden=hidden)
        kf, kb = jax.random.split(key)
        self.forward_cell = eqx.nn.GRUCell(inputs, hidden, key=kf)
        self.backward_cell = eqx.nn.GRUCell(inputs, hidden, key=kb)
        self.hidden = hidden

    def __call__(
        self, inputs: Float[Array, "time inputs"]
    ) -> tuple[Float[Array, "time features"], Float[Array, " features"]]:
        x = jnp.log1p(jnp.asarray(inputs, self.forward_cell.weight_ih.dtype))
        h0 = jnp.zeros(self.hidden, x.dtype)

        def step(carry, xs):  # both directions in one scan: half the sequential steps
            f, b = carry
            x_f, x_b = xs
            f, b = self.forward_cell(x_f, f), self.backward_cell(x_b, b)
            return (f, b), (f, b)

        _, (forward, backward) = jax.lax.scan(step, (h0, h0), (x, x[::-1]))
        backward = backward[::-1]
        features = jnp.concatenate([forward, backward], axis=1)
        return features, jnp.concatenate([forward[-1], backward[0]])


class SequentialVAE(eqx.Module):
    """The GRU sequential VAE baseline (LFADS without a controller).

    Encoder: a bidirectional GRU over the held-in spikes gives `q(g₀ | s) = N(μ, diag σ²)`
    (a linear map of its summary `[f_T, b_1]`). Generator: an input-free GRU,
    `h_0 = g₀`, `h_t = GRU(0, h_{t−1})`; factors `z_t = W_z h_t` (the latents, of size
    `latent`); log-rates
    `log λ_t = W_r z_t + b` for all neurons (held-in and held-out). Loss per trial (the
    negative ELBO): `−Σ_{t,n} log Poisson(s_{tn} | λ_{tn}) + β KL(q(g₀) ‖ N(0, I))`.

    No controller and no inferred inputs (LFADS's full model infers them): the generator is
    autonomous given `g₀`, which suits autonomous data such as the Lorenz system and keeps
    the baseline small. Reference: Sussillo, Jozefowicz, Abbott & Pandarinath (2016),
    "LFADS — Latent Factor Analysis via Dynamical Systems"; Pandarinath et al. (2018),
    Nature Methods 15.

    Calling it with one trial's held-in spikes `(time, in_neurons)` and `key=` returns a
    `LatentOutput` (one posterior sample); batches: `jax.vmap` over spikes and keys.
    """

    encoder: BidirectionalGRU
    initial: eqx.nn.Linear
    generator: eqx.nn.GRUCell
    factors: eqx.nn.Linear
    readout: eqx.nn.Linear
    in_neurons: int = eqx.field(static=True)
    out_neurons: int = eqx.field(static=True)

    def __init__(
        self,
        *,
        in_neurons: int,
        out_neurons: int,
        encoder_hidden: int = 64,
        generator_hidden: int = 64,
        latent: int = 8,
        key: PRNGKeyArray,
    ):
        """**Arguments:** `in_neurons` (encoder input), `out_neurons` (all neurons whose
        rates are predicted), `encoder_hidden` (GRU state per direction), `generator_hidden`
        (the generator GRU's state), `latent` (the factors), `key`."""
        check_sizes(in_neurons=in_neurons, out_neurons=out_neurons, encoder_hidden=encoder_hidden,
                    generator_hidden=generator_hidden, latent=latent)  # fmt: skip
        ke, ki, kg, kf, kr = jax.random.split(key, 5)
        self.encoder = BidirectionalGRU(inputs=in_neurons, hidden=encoder_hidden, key=ke)
        self.initial = eqx.nn.Linear(2 * encoder_hidden, 2 * generator_hidden, key=ki)
        self.generator = eqx.nn.GRUCell(1, generator_hidden, key=kg)
        self.factors = eqx.nn.Linear(generator_hidden, latent, use_bias=False, key=kf)
        self.readout = eqx.nn.Linear(latent, out_neurons, key=kr)
        self.in_neurons, self.out_neurons = in_neurons, out_neurons

    def __call__(
        self, spikes: Float[Array, "time in_neurons"], *, key: PRNGKeyArray
    ) -> LatentOutput:
        spikes = check_spikes(spikes, self.in_neurons, "SequentialVAE")
        _, summary = self.encoder(spikes)
        mean, log_var = jnp.split(self.initial(summary), 2)
        g0 = gaussian_sample(mean, log_var, key=key)
        zero = jnp.zeros((spikes.shape[0] - 1, 1), g0.dtype)

        def step(h, x):
            h = self.generator(x, h)
            return h, h

        hs = jnp.concatenate([g0[None], jax.lax.scan(step, g0, zero)[1]])
        latents = jax.vmap(self.factors)(hs)
        log_rates = jax.vmap(self.readout)(latents)
        return LatentOutput(log_rates, latents, gaussian_kl(mean, log_var))
