"""The two-layer quadratic network on which modular arithmetic is grokked (Gromov 2023,
"Grokking modular arithmetic", arXiv:2301.02679; Kumar et al. 2024, "Grokking as the
transition from lazy to rich training dynamics"), in Gromov's mean-field parameterisation,
its data set (every pair `(n, m) ∈ Z_p²` one-hot encoded, labelled `(n + m) mod p`), Gromov's
analytic solution, and the Fourier spectrum of the first layer by which trained networks are
compared with it.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .._checks import check_count, check_key

__all__ = [
    "QuadraticNetwork",
    "fourier_concentration",
    "fourier_spectrum",
    "gromov_solution",
    "modular_addition",
]


class QuadraticNetwork(eqx.Module):
    r"""`f(x) = (1/N) W₂ ((1/√D) W₁ x)²` (the square entrywise), with `W₁: N × D`,
    `W₂: p × N` and every entry drawn from `N(0, 1)` (Gromov 2023's network, in the
    mean-field scaling of a public replication of his baseline experiments: `1/√D` on the
    first layer, `1/N` on the readout; no biases).

    On one-hot pairs `x = [e_n, e_m]` (`D = 2p`) the hidden pre-activation is
    `(W₁[:, n] + W₁[:, p + m]) / √(2p)`; Gromov's analytic solution sets each neuron's two
    columns to cosines of one frequency (`gromov_solution`; how near a trained network comes
    is measured by `fourier_spectrum`).

    **Arguments:** `inputs` (`D`), `hidden` (`N`), `outputs` (`p`), `key`.
    """

    w1: Float[Array, "hidden inputs"]
    w2: Float[Array, "outputs hidden"]

    def __init__(self, inputs: int, hidden: int, outputs: int, *, key: PRNGKeyArray):
        check_count("inputs", inputs)
        check_count("hidden", hidden)
        check_count("outputs", outputs)
        check_key(key, "QuadraticNetwork")
        k1, k2 = jax.random.split(key)
        self.w1 = jax.random.normal(k1, (hidden, inputs))
        self.w2 = jax.random.normal(k2, (outputs, hidden))

    def __call__(self, x: Float[Array, " inputs"]) -> Float[Array, " outputs"]:
        hidden = self.w1 @ x / jnp.sqrt(self.w1.shape[1])
        return self.w2 @ hidden**2 / self.w1.shape[0]


def modular_addition(p: int) -> tuple[Float[Array, "p*p 2*p"], Int[Array, " p*p"]]:
    """All `p²` pairs `(n, m)`, `n` major: inputs `[e_n, e_m] ∈ {0, 1}^{2p}` and labels
    `(n + m) mod p`."""
    check_count("p", p)
    n, m = jnp.divmod(jnp.arange(p * p), p)
    eye = jnp.eye(p)
    return jnp.concatenate([eye[n], eye[m]], axis=1), (n + m) % p


def _odd_modulus(p: int) -> None:
    check_count("p", p, 3)
    if p % 2 == 0:
        raise ValueError(f"p must be odd (frequencies 1..(p-1)/2 then cover Z_p), got {p}")


def gromov_solution(p: int, hidden: int, *, key: PRNGKeyArray | None = None) -> QuadraticNetwork:
    r"""Gromov's analytic solution of modular addition as a `QuadraticNetwork` (Gromov 2023,
    arXiv:2301.02679, §3): neuron `k` has a frequency `σ_k ∈ {1, …, (p−1)/2}` and
    phases `φ_k⁽¹⁾, φ_k⁽²⁾`, and

    `W₁[k, n] = A cos(2πσ_k n/p + φ_k⁽¹⁾)`, `W₁[k, p + m] = A cos(2πσ_k m/p + φ_k⁽²⁾)`,
    `W₂[q, k] = A cos(2πσ_k q/p + φ_k⁽¹⁾ + φ_k⁽²⁾)`.

    On `x = [e_n, e_m]` the squared pre-activation holds `2 cos(θn + φ⁽¹⁾) cos(θm + φ⁽²⁾) ∋
    cos(θ(n + m) + φ⁽¹⁾ + φ⁽²⁾)`, whose product with `W₂[q, k]` averages over the phases to
    `½ cos(θ(n + m − q))`; every other term carries a phase factor `e^{i(aφ⁽¹⁾ + bφ⁽²⁾)}` with
    `(a, b) ≠ 0`, `|a|, |b| ≤ 3`, and averages to zero. Summed over the frequencies,
    `Σ_{σ=1}^{(p−1)/2} cos(2πσΔ/p) = (p δ_{Δ≡0} − 1)/2`, a comb at `q ≡ n + m`.

    Frequencies go round-robin, `σ_k = 1 + (k mod (p−1)/2)`. With `key=None` the phases of
    the neurons sharing a frequency run over the grid `φ⁽¹⁾, φ⁽²⁾ ∈ {0, 2π/3, 4π/3}`, which
    annihilates every mode `(a, b)` above exactly (each has a component not divisible by 3), so
    `hidden` must be a multiple of `9 (p − 1)/2`, and then, with the amplitude
    `A = (4(p − 1))^{1/3}` for this network's `1/√(2p)` and `1/N` factors,

    `f(x) = e_{(n + m) mod p} − 1/p` exactly: every one of the `p²` pairs is classified
    correctly, every output entry `1/p` below its one-hot target (squared error `1/p²`).

    With a `key` the phases are drawn uniformly, as in Gromov's paper; the identity then holds
    in expectation and the pairs are classified correctly once `hidden` is large enough
    (a few hundred for `p = 23`).

    **Arguments:** `p` (odd modulus), `hidden` (`N`), `key` (random phases; `None`: the grid).
    """
    _odd_modulus(p)
    check_count("hidden", hidden)
    half = (p - 1) // 2
    if key is None:
        if hidden % (9 * half):
            raise ValueError(
                f"gromov_solution with grid phases (key=None) needs hidden to be a multiple "
                f"of 9 (p - 1)/2 = {9 * half}, got hidden={hidden}; pass a key for random phases"
            )
        cell = np.arange(hidden) // half
        phases = 2 * np.pi * np.stack([cell % 3, cell // 3 % 3]) / 3
    else:
        check_key(key, "gromov_solution")
        phases = jax.random.uniform(key, (2, hidden), maxval=2 * jnp.pi)
    w1, w2 = _gromov_weights(p, jnp.asarray(phases))
    # the shapes of a QuadraticNetwork without drawing its random initialisation
    shell = jax.eval_shape(lambda: QuadraticNetwork(2 * p, hidden, p, key=jax.random.key(0)))
    return eqx.tree_at(lambda m: (m.w1, m.w2), shell, (w1, w2))


@functools.partial(jax.jit, static_argnums=0)
def _gromov_weights(p: int, phases: Float[Array, "2 hidden"]) -> tuple[Array, Array]:
    phase1, phase2 = phases
    frequency = 1 + jnp.arange(phase1.shape[0]) % ((p - 1) // 2)
    angle = 2 * jnp.pi * frequency[:, None] * jnp.arange(p)[None, :] / p
    amplitude = (4.0 * (p - 1)) ** (1 / 3)
    w1 = amplitude * jnp.concatenate(
        [jnp.cos(angle + phase1[:, None]), jnp.cos(angle + phase2[:, None])], axis=1
    )
    return w1, amplitude * jnp.cos(angle + (phase1 + phase2)[:, None]).T


def fourier_spectrum(w1: Float[ArrayLike, "hidden 2*p"], p: int) -> Float[Array, "hidden p//2+1"]:
    r"""The power of each row of `W₁` over the frequencies `σ = 0, …, ⌊p/2⌋` of `Z_p`, both
    one-hot halves together: with `U = DFT(W₁[k, :p])`, `V = DFT(W₁[k, p:])`,

    `P[k, σ] = c_σ (|U_σ|² + |V_σ|²) / p`, `c_σ = 2` for `0 < σ < p/2`, `c_σ = 1` otherwise,

    so that `Σ_σ P[k, σ] = ‖W₁[k]‖²` (Parseval). A row of `gromov_solution` puts all its power
    on its one frequency; a Gaussian row spreads it over all (Gromov 2023, Fig. 3).
    """
    check_count("p", p, 2)
    w1 = jnp.asarray(w1)
    if w1.ndim != 2 or w1.shape[1] != 2 * p:
        raise ValueError(f"fourier_spectrum needs w1 of shape (hidden, 2p={2 * p}), got {w1.shape}")
    return _spectrum(w1, p)


@functools.partial(jax.jit, static_argnums=1)
def _spectrum(w1: Array, p: int) -> Array:
    spectrum = jnp.fft.rfft(w1.reshape(w1.shape[0], 2, p), axis=-1)
    weight = np.full(p // 2 + 1, 2.0)
    weight[0] = 1.0
    weight[-1] = 1.0 if p % 2 == 0 else 2.0
    return weight * jnp.sum(jnp.abs(spectrum) ** 2, axis=1) / p


def fourier_concentration(
    power: Float[ArrayLike, "hidden frequencies"], top: int = 1
) -> tuple[Float[Array, " hidden"], Float[Array, " hidden"]]:
    r"""How concentrated each neuron's spectrum `P[k, ·]` (from `fourier_spectrum`) is: the
    inverse participation ratio `IPR_k = Σ_σ P[k, σ]² / (Σ_σ P[k, σ])²` (1 for one frequency,
    `1/F` for power spread evenly over `F`) and the fraction of the power in its `top`
    largest frequencies.
    """
    power = jnp.asarray(power)
    check_count("top", top)
    if power.ndim != 2 or top > power.shape[1]:
        raise ValueError(
            f"fourier_concentration needs power of shape (hidden, frequencies) with at least "
            f"top={top} frequencies, got {power.shape}"
        )
    return _concentration(power, top)


@functools.partial(jax.jit, static_argnums=1)
def _concentration(power: Array, top: int) -> tuple[Array, Array]:
    total = jnp.sum(power, axis=1)
    largest = jax.lax.top_k(power, top)[0]
    return jnp.sum(power**2, axis=1) / total**2, jnp.sum(largest, axis=1) / total
