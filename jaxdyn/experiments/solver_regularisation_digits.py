"""Cheaper neural ODEs by regularising the solver's own heuristics (issue 19 §2), task (b): a
neural-ODE classifier on `load_digits`.

The MNIST experiment of Pal, Ma, Shah & Rackauckas 2021 ("Opening the blackbox", DiffEqFlux's
`x → tanh(Wx) → ODE over [0, 1] → linear`, 362.7 → 286.8 prediction NFE at 97.35% → 97.78%
accuracy with the error-estimate regulariser), at the size of the 8×8 digits: an image is
encoded by `h₀ = tanh(W_in x)` (`model.dim`), evolved by a neural ODE `dh/dt = f_θ(h)` (an
autonomous tanh MLP, `model.width`, `model.depth`) over `[0, t1]`, and classified by a linear
readout of `h(t1)`. Loss: the mean cross-entropy of a minibatch (the batch solved jointly, as
in training the papers' models) plus the weighted penalty of that solve
(`jaxdyn.regularize.Regularizer`).

Data: `load_digits` split per class into train / validation / test (`test_fraction`,
`validation_fraction`; the split is fixed by `split_seed`, the same for every seed). The
prediction solve classifies each validation or test image on its own (one adaptive solve per
image, `evaluation.*`); its metric is the accuracy (higher is better) and its NFE the mean
over images. The protocol, the validated choice among regularisers and weights, and the
figure are `experiments._regularisation`'s.
"""

import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray
from omegaconf import DictConfig

from ..config import SolveConfig, TrainConfig, at_least, choice, fraction, positive, section
from ..data import digits
from ..models import ACTIVATIONS, MLPField, NeuralODE
from ..regularize import Regularizer
from ._registry import register
from ._regularisation import EvaluationConfig, Task, TaskConfig, check_solve, run_task
from ._splits import check_digits_split


@dataclasses.dataclass
class DigitsODEConfig:
    dim: int = at_least(20, 1)  # the ODE's state (the encoder's output)
    width: int = at_least(64, 1)
    depth: int = at_least(1, 0)
    activation: str = choice("tanh", ACTIVATIONS)
    t1: float = positive(1.0)


@dataclasses.dataclass
class SolverRegularisationDigitsConfig(TaskConfig):
    experiment: str = "solver_regularisation_digits"
    split_seed: int = 0  # the train / validation / test split, the same for every seed
    test_fraction: float = fraction(0.15)
    validation_fraction: float = fraction(0.15)
    model: DigitsODEConfig = section(DigitsODEConfig)
    solve: SolveConfig = section(SolveConfig, solver="dopri5", rtol=1e-5, atol=1e-5)
    train: TrainConfig = section(TrainConfig, steps=2000, batch_size=128, lr=3e-3,
                                 schedule="cosine", chunk=500)  # fmt: skip
    evaluation: EvaluationConfig = section(EvaluationConfig)


def _check(cfg: DictConfig) -> None:
    check_solve(cfg)
    check_digits_split(cfg)


class ODEClassifier(eqx.Module):
    """`x ↦ readout(h(t1))`, `h(0) = tanh(encoder(x))`, `dh/dt = f_θ(h)`."""

    encoder: eqx.nn.Linear
    node: NeuralODE
    readout: eqx.nn.Linear

    def features(self, x: Float[Array, " 64"]) -> Float[Array, " dim"]:
        return jnp.tanh(self.encoder(x))


def build_classifier(cfg: DictConfig, *, key: PRNGKeyArray) -> ODEClassifier:
    """The classifier of `cfg.model`, its ODE solved as `cfg.solve` says."""
    m, s = cfg.model, cfg.solve
    k1, k2, k3 = jax.random.split(key, 3)
    field = MLPField(dim=m.dim, width=m.width, depth=m.depth, activation=m.activation, key=k2)
    node = NeuralODE(field, solver=s.solver, rtol=s.rtol, atol=s.atol, dt0=s.dt0,
                     adjoint=s.adjoint, max_steps=s.max_steps, batch="joint")  # fmt: skip
    return ODEClassifier(eqx.nn.Linear(64, m.dim, key=k1), node, eqx.nn.Linear(m.dim, 10, key=k3))


def _nll(logits: Array, labels: Array) -> Array:
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))


class _Loss(eqx.Module):
    """Mean cross-entropy of a minibatch plus the weighted penalty of its joint solve."""

    ts: jax.Array
    regularizer: Regularizer | None

    def __call__(self, model: ODEClassifier, batch, key):
        images, labels = batch
        h0 = jax.vmap(model.features)(images)
        if self.regularizer is None:
            hs = model.node(self.ts, h0)
            penalty = jnp.zeros((), hs.dtype)
        else:
            solution, penalty = self.regularizer(model.node, self.ts, h0, key=key)
            hs = solution.ys
        data_loss = _nll(jax.vmap(model.readout)(hs[:, -1]), labels)
        weight = 0.0 if self.regularizer is None else self.regularizer.weight
        return data_loss + weight * penalty, {"data_loss": data_loss, "penalty": penalty}


class _Prediction(eqx.Module):
    """One adaptive solve per image: `{"metric": accuracy (NaN if a solve failed), "nfe":
    mean NFE, "steps": mean accepted steps}`."""

    ts: jax.Array
    images: jax.Array
    labels: jax.Array
    solver: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __call__(self, model: ODEClassifier, key):
        node = dataclasses.replace(model.node, solver=self.solver, rtol=self.rtol,
                                   atol=self.atol, dt0=None, max_steps=self.max_steps,
                                   adjoint="direct", on_failure="nan")  # fmt: skip
        sol = jax.vmap(lambda x: node.solve(self.ts, model.features(x)))(self.images)
        logits = jax.vmap(model.readout)(sol.ys[:, -1])
        correct = jnp.mean(jnp.argmax(logits, -1) == self.labels)
        accuracy = jnp.where(jnp.all(jnp.isfinite(logits)), correct, jnp.nan)
        return {"metric": accuracy, "nfe": jnp.mean(sol.stats.num_fevals.astype(logits.dtype)),
                "steps": jnp.mean(sol.stats.num_accepted_steps.astype(logits.dtype))}  # fmt: skip


def build_task(cfg: DictConfig) -> Task:
    """The digits task of a config: data, model, loss and evaluators."""
    e = cfg.evaluation
    split = digits(test_fraction=cfg.test_fraction, validation_fraction=cfg.validation_fraction,
                   seed=cfg.split_seed)  # fmt: skip
    ts = jnp.array([0.0, cfg.model.t1])
    evaluators = {
        name: _Prediction(ts, jnp.asarray(split[name][0]), jnp.asarray(split[name][1]),
                          e.solver, e.rtol, e.atol, e.max_steps)
        for name in ("validation", "test")
    }  # fmt: skip
    return Task(name="digits", metric="accuracy", higher_is_better=True,
                build_model=lambda key: build_classifier(cfg, key=key),
                loss=lambda regularizer: _Loss(ts, regularizer),
                data=tuple(jnp.asarray(a) for a in split["train"]),
                evaluators=evaluators)  # fmt: skip


@register("solver_regularisation_digits", SolverRegularisationDigitsConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Solver-heuristic regularisers on a neural-ODE digits classifier: NFE at equal accuracy."""
    return run_task(cfg, build_task(cfg), run_dir, resume)
