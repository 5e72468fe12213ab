"""What the PINN experiments share: the network (an exact periodic embedding of `x`, optional
random Fourier features, a tanh MLP), the config sections, and the training loop — `fit`
between grad-norm weight updates, with causal weights and their tolerance annealing.

The loss at a step is `λ_ic L_ic + λ_res L_res`, with `L_ic` the mean squared error of
`u(0, x)` on a fixed grid of `x` and `L_res` the mean squared PDE residual at collocation
points drawn uniformly inside the loss from its key (`fit(data=...)` carries only the
coefficients `λ` and `ε`, one "sample", used whole every step). With causal weighting,
`L_res = (1/M) Σ_i w_i L_i` over `M` time chunks of the sorted points
(`jaxdyn.physics.causal_weights`). Every `update_every` steps (jaxpi's
`weighting.update_every_steps`) the loop leaves `fit`, updates `λ` from the two losses'
gradient norms on a fresh batch (`jaxdyn.physics.update_grad_norm_weights`, momentum 0.9),
raises `ε` when every causal weight exceeds `threshold` (`anneal_causal_epsilon`), and calls
`fit` again with the optimiser state carried over (the same loss function and optimiser
objects, so the compiled chunk is reused). Periodic boundary conditions need no loss: the
embedding makes `u` and all its derivatives exactly periodic.
"""

import dataclasses
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..config import at_least, choice, fraction, positive
from ..physics import (
    FourierFeatures,
    GradNormState,
    PeriodicEmbedding,
    anneal_causal_epsilon,
    causal_weights,
    chunk_losses,
    factorize_mlp,
    gradient_norms,
    pde_residual,
    update_grad_norm_weights,
)
from ..plotting import Figure
from ..train import fit


@dataclasses.dataclass
class NetworkConfig:
    width: int = at_least(64, 1)  # hidden units per layer
    depth: int = at_least(3, 1)  # hidden layers
    fourier_features: int = at_least(32, 1)  # Fourier frequencies m (embedding 2m) when used
    fourier_scale: float = positive(1.0)  # σ of B ~ N(0, σ²)
    fourier_inputs: str = choice("time", ("time", "all"))  # FF of t alone, or of [t, emb(x)]
    factorize: bool = False  # random weight factorisation of every layer (jaxpi's weight_fact)
    factorize_mean: float = 1.0  # s ~ N(mean, std²), W = diag(exp s) V
    factorize_std: float = at_least(0.1, 0.0)


@dataclasses.dataclass
class TrainConfig:
    steps: int = at_least(4000, 1)
    lr: float = positive(1e-3)  # Adam's initial learning rate
    # "decay": lr · decay_rate^(k / decay_steps) (jaxpi); "exponential" / "cosine": from lr
    # down to final_lr at the last step, whatever the number of steps
    schedule: str = choice("decay", ("decay", "exponential", "cosine"))
    decay_rate: float = fraction(0.9)
    decay_steps: int = at_least(2000, 1)
    final_lr: float = positive(1e-5)  # the "exponential" and "cosine" schedules' last value
    batch: int = at_least(1024, 1)  # collocation points per step (a multiple of causal.chunks)
    initial_points: int = at_least(256, 2)  # x grid of the initial-condition loss
    update_every: int = at_least(500, 1)  # steps between grad-norm weight updates
    momentum: float = fraction(0.9)  # of the grad-norm weights' moving average


@dataclasses.dataclass
class CausalConfig:
    chunks: int = at_least(32, 1)  # M time chunks (jaxpi: 32)
    epsilon: float = positive(1.0)  # initial tolerance ε (jaxpi: causal_tol = 1)
    anneal_factor: float = at_least(10.0, 1.0)  # ε ← factor · ε once min w > threshold
    threshold: float = fraction(0.99)  # Wang et al. 2022's δ
    maximum: float = positive(100.0)  # the largest ε (the paper's last value)


@dataclasses.dataclass
class EvalConfig:
    nt: int = at_least(101, 2)  # reference grid in t (both ends included)
    nx: int = at_least(256, 4)  # and in x (right end excluded: periodic)


VARIANTS = {  # name: (random Fourier features, causal weights)
    "plain": (False, False),
    "fourier": (True, False),
    "causal": (False, True),
    "all": (True, True),
}


class Field(eqx.Module):
    """`u(t, x) = MLP(z)`, `z = [t, cos ωx, sin ωx]` (`ω = 2π/period`), or with Fourier
    features `z = [γ(t), cos ωx, sin ωx]` (`inputs="time"`) or `γ([t, cos ωx, sin ωx])`
    (`inputs="all"`), `γ(v) = [cos Bv, sin Bv]`."""

    embed: PeriodicEmbedding
    fourier: FourierFeatures | None
    mlp: eqx.nn.MLP
    inputs: str = eqx.field(static=True)

    def __init__(self, *, period: float, net: NetworkConfig, fourier: bool, key):
        k_ff, k_mlp = jax.random.split(key)
        k_factor = jax.random.fold_in(k_mlp, 1)
        self.embed = PeriodicEmbedding(period=period)
        self.inputs = net.fourier_inputs
        size = 1 + self.embed.size
        self.fourier = None
        if fourier:
            in_size = 1 if self.inputs == "time" else size
            self.fourier = FourierFeatures(in_size, features=net.fourier_features,
                                           scale=net.fourier_scale, key=k_ff)  # fmt: skip
            size = self.fourier.size + (self.embed.size if self.inputs == "time" else 0)
        self.mlp = eqx.nn.MLP(size, "scalar", net.width, net.depth, activation=jnp.tanh,
                              key=k_mlp)  # fmt: skip
        if net.factorize:
            self.mlp = factorize_mlp(self.mlp, mean=net.factorize_mean, std=net.factorize_std,
                                     key=k_factor)  # fmt: skip

    def __call__(self, t, x):
        t = jnp.reshape(t, (1,))
        ex = self.embed(x)
        if self.fourier is None:
            z = jnp.concatenate([t, ex])
        elif self.inputs == "time":
            z = jnp.concatenate([self.fourier(t), ex])
        else:
            z = self.fourier(jnp.concatenate([t, ex]))
        return self.mlp(z)


class Problem(eqx.Module):
    """A time-dependent PDE on `[t0, t1] × [x0, x0 + period)`, periodic in `x`: its residual
    `pde(Derivatives, t, x)` of derivative `order`, and `u0(x)`."""

    pde: Callable = eqx.field(static=True)
    u0: Callable = eqx.field(static=True)
    order: int = eqx.field(static=True)
    x0: float = eqx.field(static=True)
    period: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)


def _losses(problem: Problem, t_cfg: TrainConfig, c_cfg: CausalConfig, causal: bool):
    """`(field, key, ε) -> ([L_ic, L_res], causal weights)`."""
    x_ic = problem.x0 + problem.period * jnp.arange(t_cfg.initial_points) / t_cfg.initial_points
    u_ic = problem.u0(x_ic)

    def losses(field, key, epsilon):
        k_t, k_x = jax.random.split(key)
        t = jax.random.uniform(k_t, (t_cfg.batch,), maxval=problem.t1)
        x = problem.x0 + jax.random.uniform(k_x, (t_cfg.batch,), maxval=problem.period)
        r = pde_residual(field, problem.pde, t, x, order=problem.order)
        u = jax.vmap(field, (None, 0))(0.0, x_ic)
        ic = jnp.mean((u - u_ic) ** 2)
        if causal:
            chunk = chunk_losses(r, t, chunks=c_cfg.chunks)
            w = causal_weights(chunk, epsilon)
            return jnp.stack([ic, jnp.mean(w * chunk)]), w
        return jnp.stack([ic, jnp.mean(r**2)]), jnp.ones(1)

    return losses


def relative_l2(field, t, x, reference) -> jax.Array:
    """`‖u − u_ref‖₂ / ‖u_ref‖₂` over the grid `t × x` (`reference` of shape `(nt, nx)`)."""
    u = jax.vmap(jax.vmap(field, (None, 0)), (0, None))(t, x)
    return jnp.linalg.norm(u - reference) / jnp.linalg.norm(reference)


def schedule(t_cfg: TrainConfig) -> optax.Schedule:
    """The learning rate at step `k`: jaxpi's `lr · rate^(k / decay_steps)` ("decay"), or a
    decay from `lr` to `final_lr` stretched over the run's `steps` — exponential
    (`lr · (final_lr / lr)^(k / steps)`) or cosine."""
    if t_cfg.schedule == "decay":
        return optax.exponential_decay(t_cfg.lr, t_cfg.decay_steps, t_cfg.decay_rate)
    if t_cfg.schedule == "exponential":
        return optax.exponential_decay(t_cfg.lr, t_cfg.steps, t_cfg.final_lr / t_cfg.lr)
    return optax.cosine_decay_schedule(t_cfg.lr, t_cfg.steps, alpha=t_cfg.final_lr / t_cfg.lr)


def validation_losses(field, problem: Problem, t, x) -> tuple[jax.Array, jax.Array]:
    """The mean squared PDE residual on the grid `t × x` and the mean squared initial-condition
    error on `x`: the training objective's two terms on a fixed grid, without the reference
    solution (what settings are selected on)."""
    tt, xx = (a.ravel() for a in jnp.meshgrid(t, x, indexing="ij"))
    r = pde_residual(field, problem.pde, tt, xx, order=problem.order)
    u0 = jax.vmap(field, (None, 0))(0.0, x)
    return jnp.mean(r**2), jnp.mean((u0 - problem.u0(x)) ** 2)


def train(problem: Problem, cfg, variant: str, *, key, t_grid, x_grid, reference) -> dict:
    """Train one variant; its history (steps, rel L2, λ, ε, min causal weight) and seconds."""
    fourier, causal = VARIANTS[variant]
    t_cfg, c_cfg = cfg.train, cfg.causal
    k_init, k_train = jax.random.split(key)
    field = Field(period=problem.period, net=cfg.network, fourier=fourier, key=k_init)
    losses = _losses(problem, t_cfg, c_cfg, causal)

    def loss_fn(model, batch, key):
        values, _ = losses(model, key, batch["epsilon"][0])
        return jnp.dot(batch["weights"][0], values)

    def vector(model, key, epsilon):
        return losses(model, key, epsilon)[0]

    @eqx.filter_jit
    def balance(model, key, epsilon, state):
        norms = gradient_norms(vector, model, key, epsilon)
        weights = losses(model, key, epsilon)[1]
        state = update_grad_norm_weights(state, norms, momentum=t_cfg.momentum)
        return state, weights

    error = eqx.filter_jit(lambda m: relative_l2(m, t_grid, x_grid, reference))
    optimizer = optax.adam(schedule(t_cfg))
    state, epsilon, opt_state = GradNormState.init(2), jnp.asarray(c_cfg.epsilon), None
    history = {"step": [0], "rel_l2": [float(error(field))], "lambda_ic": [], "lambda_res": [],
               "epsilon": [], "min_causal_weight": []}  # fmt: skip
    start = time.process_time(), time.perf_counter()
    segments = -(-t_cfg.steps // t_cfg.update_every)
    for s in range(segments):
        k_balance, k_fit = jax.random.split(jax.random.fold_in(k_train, s))
        state, weights = balance(field, k_balance, epsilon, state)
        if causal:
            epsilon = anneal_causal_epsilon(
                epsilon,
                weights,
                factor=c_cfg.anneal_factor,
                threshold=c_cfg.threshold,
                maximum=c_cfg.maximum,
            )
        length = min(t_cfg.update_every, t_cfg.steps - s * t_cfg.update_every)
        data = {"weights": state.weights[None], "epsilon": epsilon[None]}
        result = fit(loss_fn, field, data, optimizer, steps=length, batch_size=None,
                     key=k_fit, chunk=t_cfg.update_every, opt_state=opt_state,
                     progress=False)  # fmt: skip
        field, opt_state = result.model, result.opt_state
        history["step"].append(s * t_cfg.update_every + length)
        history["rel_l2"].append(float(error(field)))
        history["lambda_ic"].append(float(state.weights[0]))
        history["lambda_res"].append(float(state.weights[1]))
        history["epsilon"].append(float(epsilon))
        history["min_causal_weight"].append(float(jnp.min(weights)))
    cpu, wall = time.process_time() - start[0], time.perf_counter() - start[1]
    val_residual, val_ic = eqx.filter_jit(validation_losses)(field, problem, t_grid, x_grid)
    return {"field": field, "history": {k: np.asarray(v) for k, v in history.items()},
            "cpu_seconds": cpu, "wall_seconds": wall, "val_residual": float(val_residual),
            "val_ic": float(val_ic)}  # fmt: skip


def solution_figure(path, results: dict, t, x, reference, *, extent, title: str) -> None:
    """The reference field beside each variant's network on the `(t, x)` grid, saved to
    `path` (the ablation figure both PINN experiments draw)."""
    fig = Figure(figsize=(4 * (len(results) + 1), 3.2))
    axes = fig.subplots(1, len(results) + 1)
    axes[0].imshow(np.asarray(reference), origin="lower", aspect="auto", extent=extent, cmap="RdBu")
    axes[0].set(title=title, xlabel="x", ylabel="t")
    for ax, (v, r) in zip(axes[1:], results.items(), strict=True):
        u = jax.vmap(jax.vmap(r["field"], (None, 0)), (0, None))(t, x)
        ax.imshow(np.asarray(u), origin="lower", aspect="auto", extent=extent, cmap="RdBu",
                  vmin=-1, vmax=1)  # fmt: skip
        ax.set(title=f"{v}: rel L2 {float(r['history']['rel_l2'][-1]):.2g}", xlabel="x")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
