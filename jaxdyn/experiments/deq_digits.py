"""A deep-equilibrium classifier on scikit-learn's 8×8 digits (Bai, Kolter & Koltun 2019).

Encoder `Linear(64, h)`, an equilibrium layer `z* = tanh(W z* + U e)` (`‖W‖_F < 1`, so a
contraction) solved by Anderson
acceleration and differentiated implicitly, decoder `Linear(h, 10)`; cross-entropy plus the
Jacobian regulariser of Bai, Koltun & Kolter (2021). Target: test accuracy ≥ 95%.

Baseline: the explicit MLP of equal size (`64 → h → h → h → 10`, tanh: the parameter count of
encoder, cell and decoder plus one bias vector), trained with the same settings. Both report
the model that is best on the validation split (`train.best_metric`); the test split is scored
once, at the end.
"""

import dataclasses
import functools
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray
from omegaconf import DictConfig

from ..config import ConfigError, TrainConfig, at_least, choice, fraction, positive, section
from ..data import digits
from ..implicit import FIXED_POINT_SOLVERS
from ..models import DEQ, TanhCell
from ..plotting import Figure, loss_curve
from ..train import read_metrics
from ._registry import register
from ._splits import check_digits_split
from ._training import fit_from_config


@dataclasses.dataclass
class DEQModelConfig:
    width: int = at_least(64, 1)
    solver: str = choice("anderson", FIXED_POINT_SOLVERS)
    tol: float = positive(1e-4)
    max_steps: int = at_least(50, 1)
    contraction: float = positive(0.9)  # ‖W‖_F = γ < 1: the cell is a contraction
    jacobian_penalty: float = at_least(0.1, 0.0)


@dataclasses.dataclass
class DEQDigitsConfig:
    experiment: str = "deq_digits"
    seed: int = 0
    test_fraction: float = fraction(0.2)
    validation_fraction: float = fraction(0.15)  # of all images, per class, before training
    target_accuracy: float = 0.95
    model: DEQModelConfig = section(DEQModelConfig)
    train: TrainConfig = section(TrainConfig)


class DEQClassifier(eqx.Module):
    """`x ↦ decoder(z*(encoder(x)))`."""

    encoder: eqx.nn.Linear
    deq: DEQ
    decoder: eqx.nn.Linear

    def __init__(self, m: DictConfig, *, key: PRNGKeyArray):
        k1, k2, k3 = jax.random.split(key, 3)
        self.encoder = eqx.nn.Linear(64, m.width, key=k1)
        cell = TanhCell(dim=m.width, in_size=m.width, contraction=m.contraction, key=k2)
        self.deq = DEQ(cell, dim=m.width, solver=m.solver, tol=m.tol, max_steps=m.max_steps)
        self.decoder = eqx.nn.Linear(m.width, 10, key=k3)

    def features(self, x):
        return jnp.tanh(self.encoder(x))

    def __call__(self, x):
        return self.decoder(self.deq(self.features(x)))

    def logits(self, x):
        """The logits without raising on a solve that does not converge (for evaluation)."""
        z, _ = dataclasses.replace(self.deq, on_failure="return").solve(self.features(x))
        return self.decoder(z)


class MLPClassifier(eqx.Module):
    """The explicit baseline: `64 → h → h → h → 10` with tanh, the size of the DEQ classifier
    of width `h` (encoder `64h + h`, cell `2h² + h`, decoder `10h + 10`) but for one more bias
    vector (`h`: 64 of 13,130 parameters at `h = 64`)."""

    mlp: eqx.nn.MLP

    def __init__(self, m: DictConfig, *, key: PRNGKeyArray):
        self.mlp = eqx.nn.MLP(64, 10, width_size=m.width, depth=3, activation=jnp.tanh, key=key)

    def __call__(self, x):
        return self.mlp(x)

    logits = __call__


def _nll(logits, labels):
    """Mean cross-entropy of `(batch, classes)` logits against integer labels."""
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))


class _Scores(eqx.Module):
    """`{"accuracy", "nll"}` of a classifier on a split: `fit`'s validation evaluation."""

    images: jax.Array
    labels: jax.Array

    def __call__(self, model, key):
        logits = jax.vmap(model.logits)(self.images)
        return {"accuracy": jnp.mean(jnp.argmax(logits, -1) == self.labels),
                "nll": _nll(logits, self.labels)}  # fmt: skip


def _parameters(model: eqx.Module) -> int:
    return sum(a.size for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))


def accuracy_and_iterations(model: DEQClassifier, images, labels) -> tuple[float, float, float]:
    """Test accuracy, mean Anderson iterations and fraction of solves converged."""

    @eqx.filter_jit
    def evaluate(model, images):
        def one(x):
            e = model.features(x)
            z, info = dataclasses.replace(model.deq, on_failure="return").solve(e)
            return model.decoder(z), info

        return jax.vmap(one)(images)

    logits, info = evaluate(model, jnp.asarray(images))
    correct = np.asarray(jnp.argmax(logits, -1)) == labels
    return float(correct.mean()), float(info.iterations.mean()), float(info.converged.mean())


def _cross_entropy(model: MLPClassifier, batch, key):
    x, y = batch
    return _nll(jax.vmap(model)(x), y)


def _loss(model: DEQClassifier, batch, key, *, weight: float):
    """Cross-entropy plus `weight` times the Jacobian penalty (one probe per example)."""
    x, y = batch
    e = jax.vmap(model.features)(x)
    z = jax.vmap(model.deq)(e)
    nll = _nll(jax.vmap(model.decoder)(z), y)

    def penalty(z, e, key):
        return model.deq.jacobian_penalty(z, e, key=key)

    jacobian = jnp.mean(jax.vmap(penalty)(z, e, jax.random.split(key, x.shape[0])))
    return nll + weight * jacobian, {"nll": nll, "jacobian": jacobian}


def _figures(run_dir: Path) -> None:
    rows = read_metrics(run_dir / "metrics.jsonl")
    loss_curve(np.asarray([r["nll"] for r in rows]), run_dir / "loss.png",
               title="DEQ digits: training cross-entropy")  # fmt: skip
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot([r["jacobian"] for r in rows], lw=0.6)
    ax.set(xlabel="step", ylabel="‖∂f/∂z‖²_F / h (Hutchinson)", title="Jacobian penalty")
    fig.tight_layout()
    fig.savefig(run_dir / "jacobian.png", dpi=120)


def _check(cfg: DictConfig) -> None:
    if cfg.train.best_metric is not None and cfg.train.best_metric not in (
        "validation.accuracy",
        "validation.nll",
    ):
        raise ConfigError(
            f"train.best_metric={cfg.train.best_metric!r}: deq_digits evaluates "
            "validation.accuracy and validation.nll"
        )
    if cfg.test_fraction + cfg.validation_fraction >= 0.9:
        raise ConfigError(
            f"test_fraction + validation_fraction = {cfg.test_fraction + cfg.validation_fraction}"
            " leaves under 10% of the images for training"
        )
    check_digits_split(cfg)


def _train(cfg, model, loss_fn, data, validation, run_dir, resume, key, has_aux):
    """`fit` with the config's training settings; the model best on validation (or the last,
    without `train.best_metric`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    result = fit_from_config(loss_fn, model, data, cfg.train, key=key, run_dir=run_dir,
                             resume=resume, has_aux=has_aux, eval_fn=validation)  # fmt: skip
    return result, (result.model if result.best_model is None else result.best_model)


@register("deq_digits", DEQDigitsConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """DEQ classifier on load_digits (implicit backward); target test accuracy >= 95%."""
    data = digits(test_fraction=cfg.test_fraction, validation_fraction=cfg.validation_fraction,
                  seed=cfg.seed)  # fmt: skip
    (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
    train = (jnp.asarray(x_train), jnp.asarray(y_train))
    validation = _Scores(*map(jnp.asarray, data["validation"]))
    model_key, train_key, mlp_key = jax.random.split(jax.random.key(cfg.seed), 3)
    model = DEQClassifier(cfg.model, key=model_key)
    loss_fn = functools.partial(_loss, weight=cfg.model.jacobian_penalty)
    result, deq = _train(cfg, model, loss_fn, train, validation, run_dir, resume, train_key, True)
    mlp_result, mlp = _train(cfg, MLPClassifier(cfg.model, key=mlp_key), _cross_entropy, train,
                             validation, run_dir / "mlp", resume, train_key, False)  # fmt: skip
    # The test split, once, for the reported models.
    test_acc, iterations, converged = accuracy_and_iterations(deq, x_test, y_test)
    train_acc, _, _ = accuracy_and_iterations(deq, x_train, y_train)
    mlp_test = _accuracy(_Scores(jnp.asarray(x_test), jnp.asarray(y_test)), mlp)
    _figures(run_dir)
    return {
        "test_accuracy": test_acc,
        "train_accuracy": train_acc,
        "validation_accuracy": _accuracy(validation, deq),
        "mlp_test_accuracy": mlp_test,
        "mlp_validation_accuracy": _accuracy(validation, mlp),
        "parameters": _parameters(deq),
        "mlp_parameters": _parameters(mlp),
        "target_accuracy": cfg.target_accuracy,
        "target_met": test_acc >= cfg.target_accuracy,
        "mean_fixed_point_iterations": iterations,
        "fraction_converged": converged,
        "best_step": result.best_step,
        "mlp_best_step": mlp_result.best_step,
        "steps": result.step,
    }


def _accuracy(scores: _Scores, model) -> float:
    return float(eqx.filter_jit(scores)(model, None)["accuracy"])
