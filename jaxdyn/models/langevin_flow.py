"""LangevinFlow: a sequential VAE whose latent state follows underdamped Langevin dynamics in
a learned potential of locally coupled oscillators (Song et al. 2025, "Langevin Flows for
Modeling Neural Latent Dynamics")."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from .._checks import check_on_failure
from ..solve import OnFailure, sdeint
from ._arguments import check_sizes, check_spikes
from .seq_vae import BidirectionalGRU, LatentOutput, gaussian_kl, gaussian_sample

__all__ = [
    "CoupledOscillatorPotential",
    "LangevinDynamics",
    "LangevinFlow",
    "TransformerDecoder",
]

#: What `LangevinFlow`'s decoder reads per bin: `"state"`, `[x_t, v_t, e_t]` (position,
#: velocity and the encoder's features, as the reference implementation), or `"position"`.
DECODER_READS = ("state", "position")


class CoupledOscillatorPotential(eqx.Module):
    """Anharmonic oscillators on a ring, each coupled to its two neighbours:

        U(x) = Σ_i [k_i x_i²/2 + a_i log cosh x_i] + Σ_i c_i (x_i − x_{i+1})²/2,   x_{N+1} = x_1,

    with stiffness `k > 0` and coupling `c > 0` (stored as logarithms) and a signed
    anharmonicity `a`: `a_i > 0` stiffens unit `i` near 0, `−k_i < a_i < 0` softens it, and
    `a_i < −k_i` turns it into a double well (bistable unit).

    Why this form: it is the "network of locally coupled oscillators" of LangevinFlow in a
    small closed form. Every term is explicit, so the structure is exact rather than learned:
    the Hessian is tridiagonal-plus-corners, ∂²U/∂x_i∂x_j = 0 unless `i` and `j` are
    neighbours on the ring (the tests check it). The quadratic part makes U confining for
    every parameter value, and the curvature is bounded, `k_i − |a_i| ≤ ∂²U/∂x_i² − c_i −
    c_{i−1} ≤ k_i + |a_i|`, whatever the amplitude. That bound matters for the explicit
    Euler–Maruyama step on the bin grid: a quartic term `a x⁴/4` (tried first) raises the
    local frequency without bound as the amplitude grows, and with inferred inputs kicking
    the state the explicit step blew up (|y| ~ 1e22 within 30 bins at initialisation). A
    small MLP per unit would need a curvature bound of its own. With 3N parameters the
    potential cannot memorise data: the trajectory's detail comes from the inferred inputs
    and the transformer decoder.
    """

    log_stiffness: Float[Array, " units"]
    anharmonicity: Float[Array, " units"]
    log_coupling: Float[Array, " units"]

    def __init__(
        self,
        *,
        units: int,
        frequency_range: tuple[float, float] = (0.3, 2.0),
        coupling: float = 0.5,
        key: PRNGKeyArray,
    ):
        """**Arguments:** `units` (N); the angular frequencies `√k_i` start log-uniform in
        `frequency_range` and `a_i` uniform in `[−k_i/2, k_i/2]`; `coupling` (`c_i` at the
        start, times a random factor in [0.5, 2]); `key`."""
        check_sizes(units=units)
        low, high = frequency_range
        if not 0 < low <= high:
            raise ValueError(f"frequency_range must satisfy 0 < low <= high, got {(low, high)}")
        if not coupling > 0:
            raise ValueError(f"coupling must be > 0, got {coupling}")
        kw, ka, kc = jax.random.split(key, 3)
        log_omega = jax.random.uniform(kw, (units,), minval=np.log(low), maxval=np.log(high))
        self.log_stiffness = 2.0 * log_omega
        self.anharmonicity = jnp.exp(self.log_stiffness) * jax.random.uniform(
            ka, (units,), minval=-0.5, maxval=0.5
        )
        spread = jax.random.uniform(kc, (units,), minval=np.log(0.5), maxval=np.log(2.0))
        self.log_coupling = np.log(coupling) + spread

    @property
    def units(self) -> int:
        return self.log_stiffness.shape[0]

    def __call__(self, x: Float[Array, " units"]) -> Scalar:
        k, c, a = jnp.exp(self.log_stiffness), jnp.exp(self.log_coupling), self.anharmonicity
        # log cosh x = |x| + log1p(e^{-2|x|}) - log 2, without overflow
        log_cosh = jnp.abs(x) + jnp.log1p(jnp.exp(-2.0 * jnp.abs(x))) - np.log(2.0)
        stretch = x - jnp.roll(x, -1)  # x_i − x_{i+1}, around the ring
        return jnp.sum(0.5 * k * x**2 + a * log_cosh) + 0.5 * jnp.sum(c * stretch**2)

    def gradient(self, x: Float[Array, " units"]) -> Float[Array, " units"]:
        """`∇U(x)`, by `jax.grad`."""
        return jax.grad(self)(x)


class LangevinDynamics(eqx.Module):
    """Underdamped Langevin dynamics of the state `y = (x, v)`, `x, v ∈ R^N`:

        dx = v dt,    dv = (−∇U(x) − γ v + B u(t)) dt + σ dW,

    with `U` a `CoupledOscillatorPotential`, damping `γ > 0` and noise scale `σ > 0` (scalars,
    stored as logarithms), and `u(t)` an optional input, piecewise constant on bins: `args =
    (t0, dt, u)` with `u` of shape `(bins, inputs)` means `u(t) = u[⌊(t − t0)/dt⌋]` (clipped
    to the table), mapped to forces by `B` `(N, inputs)`. With unit mass the energy `E = |v|²/2
    + U(x)` obeys `dE = (−γ|v|² + v·Bu) dt + σ v·dW + Nσ²/2 dt` (Itô): conserved for
    `γ = σ = u = 0`, dissipated for `γ > 0`, `σ = u = 0`.

    `drift` and `diffusion` are `sdeint`'s fields for one state `(2N,)`; the noise is additive
    and enters the velocities only (`diffusion` is the `(2N, N)` matrix `[0; σ I]`).
    """

    potential: CoupledOscillatorPotential
    input_map: Float[Array, "units inputs"]
    log_damping: Float[Array, ""]
    log_noise: Float[Array, ""]

    def __init__(
        self,
        potential: CoupledOscillatorPotential,
        *,
        inputs: int,
        damping: float = 0.5,
        noise: float = 0.1,
        key: PRNGKeyArray,
    ):
        """**Arguments:** `potential`; `inputs` (the size of `u`); initial `damping` (γ) and
        `noise` (σ), both > 0; `key` (for `B`, entries `N(0, 1/inputs)`)."""
        check_sizes(inputs=inputs)
        if not (damping > 0 and noise > 0):
            raise ValueError(f"damping and noise must be > 0, got {damping}, {noise}")
        dtype = potential.log_stiffness.dtype
        self.potential = potential
        shape = (potential.units, inputs)
        self.input_map = jax.random.normal(key, shape, dtype) / np.sqrt(inputs)
        self.log_damping = jnp.asarray(np.log(damping), dtype)
        self.log_noise = jnp.asarray(np.log(noise), dtype)

    @property
    def units(self) -> int:
        return self.potential.units

    @property
    def damping(self) -> Scalar:
        return jnp.exp(self.log_damping)

    @property
    def noise(self) -> Scalar:
        return jnp.exp(self.log_noise)

    def energy(self, y: Float[Array, " state"]) -> Scalar:
        """`E = |v|²/2 + U(x)`."""
        x, v = jnp.split(y, 2)
        return 0.5 * jnp.sum(v**2) + self.potential(x)

    def force(self, t, args) -> Float[Array, " units"]:
        """`B u(t)` for `args = (t0, dt, u)` (zero for `args=None`)."""
        if args is None:
            return jnp.zeros(self.units, self.input_map.dtype)
        t0, dt, u = args
        # The step starts at bin boundaries; the margin absorbs rounding of t (1e-3 of a bin).
        index = jnp.floor((t - t0) / dt + 1e-3).astype(jnp.int32)
        return self.input_map @ u[jnp.clip(index, 0, u.shape[0] - 1)]

    def drift(self, t, y: Float[Array, " state"], args) -> Float[Array, " state"]:
        x, v = jnp.split(y, 2)
        dv = -self.potential.gradient(x) - self.damping * v + self.force(t, args)
        return jnp.concatenate([v, dv])

    def diffusion(self, t, y: Float[Array, " state"], args) -> Float[Array, "state units"]:
        n = self.units
        return jnp.concatenate([jnp.zeros((n, n), y.dtype), self.noise * jnp.eye(n, dtype=y.dtype)])

    def simulate(
        self,
        y0: Float[Array, " state"],
        ts: Float[np.ndarray, " time"],
        *,
        key: PRNGKeyArray,
        inputs: Float[Array, "bins inputs"] | None = None,
        substeps: int = 1,
        on_failure: OnFailure = "raise",
    ) -> Float[Array, "time state"]:
        """Euler–Maruyama (`sdeint`, grid Brownian path) on the uniform grid `ts` (NumPy, so
        the grid is known under `jit`), `substeps` steps per interval; `inputs[k]` acts on
        `[ts[k], ts[k+1])`. Returns the states at `ts`. A path that leaves the finite numbers
        follows `on_failure` (as for `sdeint`: `"nan"` makes it NaN)."""
        ts = np.asarray(ts)
        if ts.ndim != 1 or ts.size < 2:
            raise ValueError(f"simulate needs at least two times ts, got shape {ts.shape}")
        dt = float(ts[1] - ts[0])
        check_sizes(substeps=substeps)
        if y0.shape != (2 * self.units,):
            raise ValueError(f"simulate needs y0 of shape ({2 * self.units},), got {y0.shape}")
        args = None
        if inputs is not None:
            if inputs.ndim != 2 or inputs.shape[1] != self.input_map.shape[1]:
                raise ValueError(
                    f"inputs must have shape (bins, {self.input_map.shape[1]}), got {inputs.shape}"
                )
            args = (ts[0], dt, inputs)
        sol = sdeint(
            self.drift, self.diffusion, y0, ts, key=key, args=args, noise="additive",
            solver="euler", dt0=dt / substeps, max_steps=substeps * (ts.size - 1) + 1,
            on_failure=on_failure,
        )  # fmt: skip
        return sol.ys


class TransformerDecoder(eqx.Module):
    """One pre-norm transformer layer over time, then a linear readout per step:

        h = W_in z_t + b,   h ← h + MHA(LN(h)),   h ← h + MLP(LN(h)),
        out_t = W_out LN(h_t) + b_out.

    Attention runs over the whole trial (acausal), without positional encodings, so the
    output is equivariant to permuting time steps and everything time-specific comes from the
    latent trajectory. The final layer norm bounds `|out_t|` by `‖W_out‖ √width + |b_out|`,
    which keeps Poisson rates finite whatever the latent does.
    """

    embed: eqx.nn.Linear
    attention: eqx.nn.MultiheadAttention
    norm_attention: eqx.nn.LayerNorm
    mlp: eqx.nn.MLP
    norm_mlp: eqx.nn.LayerNorm
    norm_out: eqx.nn.LayerNorm
    readout: eqx.nn.Linear

    def __init__(self, *, latent: int, out: int, width: int = 32, heads: int = 2,
                 key: PRNGKeyArray):  # fmt: skip
        """**Arguments:** `latent`, the input per step; `out`, the output per step; `width`,
        the model width (`2·width` in the MLP); `heads`, of the attention (dividing `width`)."""
        check_sizes(latent=latent, out=out, width=width, heads=heads)
        if width % heads:
            raise ValueError(
                f"TransformerDecoder needs width divisible by heads, got {width}, {heads}"
            )
        ke, ka, km, kr = jax.random.split(key, 4)
        self.embed = eqx.nn.Linear(latent, width, key=ke)
        self.attention = eqx.nn.MultiheadAttention(heads, width, key=ka)
        self.norm_attention = eqx.nn.LayerNorm(width)
        self.mlp = eqx.nn.MLP(width, width, 2 * width, 1, activation=jax.nn.gelu, key=km)
        self.norm_mlp = eqx.nn.LayerNorm(width)
        self.norm_out = eqx.nn.LayerNorm(width)
        self.readout = eqx.nn.Linear(width, out, key=kr)

    def __call__(self, latents: Float[Array, "time latent"]) -> Float[Array, "time out"]:
        each = lambda f, h: jax.vmap(f)(h)  # noqa: E731
        h = each(self.embed, latents)
        n = each(self.norm_attention, h)
        h = h + self.attention(n, n, n)
        h = h + each(self.mlp, each(self.norm_mlp, h))
        return each(self.readout, each(self.norm_out, h))


class LangevinFlow(eqx.Module):
    """A sequential VAE with a latent underdamped Langevin SDE (Song et al. 2025).

    For one trial with held-in spikes `s` `(T, in_neurons)` in bins of `dt` (latent time):

    - encoder: a bidirectional GRU over `s` gives per-bin features `e_t` and a summary;
      `q(x₀, v₀ | s) = N(μ₀, diag σ₀²)` from the summary, and the inferred inputs
      `q(u_t | s) = N(μ_t, diag σ_t²)` from `e_t`, `t = 0, …, T−2` (`u_t` acts on
      `[t dt, (t+1) dt)`), independent over time;
    - dynamics: `LangevinDynamics` from a sample of `(x₀, v₀)` driven by a sample of `u`,
      integrated by Euler–Maruyama (`sdeint`, grid Brownian path) with `substeps` steps per
      bin; the trajectory `x_t` at the bins is the latent;
    - decoder: `TransformerDecoder` to the log-rates (expected counts per bin) of all
      `out_neurons` neurons, held-in and held-out, reading per bin either the state and the
      encoder's features `[x_t, v_t, e_t]` (`decoder_reads="state"`, the reference
      implementation's choice: its decoder reads the position, velocity and encoder state)
      or the positions `x_t` alone (`decoder_reads="position"`).

    Inputs have a Gaussian posterior and a KL to the prior `N(0, input_prior_scale² I)` (not
    a deterministic penalty); `(x₀, v₀)` has the prior `N(0, I)`. The returned `kl` is
    `KL_0 + Σ_t KL_t` for this trial; the caller adds the Poisson likelihood and a warm-up.
    The Brownian force `σ dW` is sampled from the prior (no posterior over it, as in the
    paper's model), so a smaller σ always fits the data better; σ is still learned.

    A latent path that leaves the finite numbers follows `on_failure` (`"raise"`, or `"nan"`:
    that sample's rates are NaN, for the caller to count; see `sdeint`).

    Calling it with one trial's spikes and `key=` returns a `LatentOutput` (one posterior
    sample; `latents` are the positions `x`); batches: `jax.vmap` over spikes and keys.
    """

    encoder: BidirectionalGRU
    initial: eqx.nn.Linear
    controller: eqx.nn.Linear
    dynamics: LangevinDynamics
    decoder: TransformerDecoder
    in_neurons: int = eqx.field(static=True)
    out_neurons: int = eqx.field(static=True)
    decoder_reads: str = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    substeps: int = eqx.field(static=True)
    input_prior_scale: float = eqx.field(static=True)
    on_failure: OnFailure = eqx.field(static=True)

    def __init__(
        self,
        *,
        in_neurons: int,
        out_neurons: int,
        units: int = 16,
        inputs: int = 4,
        encoder_hidden: int = 64,
        decoder_width: int = 32,
        heads: int = 2,
        decoder_reads: str = "position",
        dt: float = 0.1,
        substeps: int = 1,
        input_prior_scale: float = 1.0,
        frequency_range: tuple[float, float] = (0.3, 2.0),
        damping: float = 0.5,
        noise: float = 0.1,
        on_failure: OnFailure = "raise",
        key: PRNGKeyArray,
    ):
        """**Arguments:** `in_neurons` (encoder input), `out_neurons` (predicted);
        `units` (N oscillators), `inputs` (size of u); `encoder_hidden` (GRU state per
        direction); `decoder_width`, `heads`; `decoder_reads` (`"position"`, the default:
        `x`; `"state"`: `[x, v, e]`, the reference implementation's); `dt` (latent time per
        bin: only frequency × dt matters),
        `substeps` (Euler steps per bin); `input_prior_scale` (s); the potential's
        `frequency_range`, the initial `damping` and `noise`; `on_failure`, for the latent
        solve; `key`."""
        check_sizes(in_neurons=in_neurons, out_neurons=out_neurons, units=units, inputs=inputs,
                    encoder_hidden=encoder_hidden, substeps=substeps)  # fmt: skip
        check_on_failure(on_failure)
        if decoder_reads not in DECODER_READS:
            raise ValueError(
                f"LangevinFlow needs decoder_reads in {DECODER_READS}, got {decoder_reads!r}"
            )
        for name, value in (("dt", dt), ("input_prior_scale", input_prior_scale)):
            if not value > 0:
                raise ValueError(f"LangevinFlow needs {name} > 0, got {value!r}")
        ke, ki, kc, kp, kd, ko = jax.random.split(key, 6)
        self.encoder = BidirectionalGRU(inputs=in_neurons, hidden=encoder_hidden, key=ke)
        self.initial = eqx.nn.Linear(2 * encoder_hidden, 4 * units, key=ki)
        self.controller = eqx.nn.Linear(2 * encoder_hidden, 2 * inputs, key=kc)
        potential = CoupledOscillatorPotential(units=units, frequency_range=frequency_range,
                                               key=kp)  # fmt: skip
        self.dynamics = LangevinDynamics(potential, inputs=inputs, damping=damping, noise=noise,
                                         key=kd)  # fmt: skip
        read = units if decoder_reads == "position" else 2 * units + 2 * encoder_hidden
        self.decoder = TransformerDecoder(latent=read, out=out_neurons, width=decoder_width,
                                          heads=heads, key=ko)  # fmt: skip
        self.in_neurons, self.out_neurons = in_neurons, out_neurons
        self.decoder_reads = decoder_reads
        self.dt, self.substeps = float(dt), substeps
        self.input_prior_scale = float(input_prior_scale)
        self.on_failure = on_failure

    def __call__(
        self, spikes: Float[Array, "time in_neurons"], *, key: PRNGKeyArray
    ) -> LatentOutput:
        spikes = check_spikes(spikes, self.in_neurons, "LangevinFlow")
        k0, ku, kw = jax.random.split(key, 3)
        features, summary = self.encoder(spikes)
        mean0, log_var0 = jnp.split(self.initial(summary), 2)
        y0 = gaussian_sample(mean0, log_var0, key=k0)
        mean_u, log_var_u = jnp.split(jax.vmap(self.controller)(features[:-1]), 2, axis=1)
        u = gaussian_sample(mean_u, log_var_u, key=ku)
        ts = self.dt * np.arange(spikes.shape[0])
        ys = self.dynamics.simulate(y0, ts, key=kw, inputs=u, substeps=self.substeps,
                                    on_failure=self.on_failure)  # fmt: skip
        x = ys[:, : self.dynamics.units]
        kl = gaussian_kl(mean0, log_var0) + gaussian_kl(mean_u, log_var_u, self.input_prior_scale)
        read = x if self.decoder_reads == "position" else jnp.concatenate([ys, features], 1)
        return LatentOutput(self.decoder(read), x, kl)
