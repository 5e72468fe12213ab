"""Continual learning on split digits: CLASSP (Ludwig 2024) against plain SGD and elastic
weight consolidation (EWC; Kirkpatrick et al. 2017).

Setting. `load_digits` (8×8 images, pixels in [0, 1]) split per class into train, validation
and test (`data.split_seed`, one split for every seed), then into 5 tasks of 2 classes,
`{0, 1}, {2, 3}, …, {8, 9}`, learned one after the other. Task-incremental (the default
`scenario`, "multi-head"): a 10-output head of which task `t` uses and is scored on its own two
outputs `(2t, 2t + 1)`, the task identity being given at test; domain-incremental: one shared
2-output head (which of the task's two classes), no task identity. The network is a ReLU MLP
(`network.layers` hidden layers of `network.hidden` units, He-normal weights), trained by
minibatch steps on the cross-entropy of the current task only (no replay), `train.steps_per_task`
steps a task, in one jitted `lax.scan` over tasks and steps, vmapped over the hyperparameter
grid. The seed draws the initial weights and the minibatches (the same for every grid point).

Methods. `sgd`: plain SGD (`optax.sgd(η)`). `ewc`: SGD on the loss plus `(λ/2) Σ_{s<t} Σᵢ
F_{s,i} (θᵢ − θ*_{s,i})²`, `F_s` the diagonal Fisher information at the end of task `s`
(exact expectation over the model's own predictive `p(y|x)` on the task's training images,
Kirkpatrick et al.'s definition), `θ*_s` the weights then; plain SGD is this program at
`λ = 0` (one compiled program for both). `classp`: `jaxdyn.learning.classp`
(accumulated-gradient suppression with power `p`, gradient threshold `τ`), its state kept
across tasks.

Protocol. Each method's hyperparameters (grids in the config) are chosen on the validation
split by the average final accuracy over the 5 tasks; the chosen run (same seed, same
trajectory) is then scored once on test: the accuracy matrix `R[k, j]` (test accuracy on task
`j` after training task `k`), the average final accuracy `ACC = (1/T) Σⱼ R[T−1, j]` and the
average forgetting `F = (1/(T−1)) Σ_{j<T−1} (max_{k<T−1} R[k, j] − R[T−1, j])` (Chaudhry et
al. 2018). `target_met`: CLASSP's average test accuracy at least EWC's (the paper's claim).
"""

import dataclasses
import itertools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from omegaconf import DictConfig

from ..config import (
    ConfigError,
    at_least,
    choice,
    fraction,
    non_negative_list,
    positive,
    positive_list,
    section,
)
from ..data import digits
from ..learning import classp
from ..plotting import Figure
from ._registry import register

TASKS = 5
METHODS = ("sgd", "ewc", "classp")


@dataclasses.dataclass
class DataConfig:
    test_fraction: float = fraction(0.2)  # per class
    validation_fraction: float = fraction(0.2)  # per class; chooses the hyperparameters
    split_seed: int = 0  # the split, the same for every seed


@dataclasses.dataclass
class NetworkConfig:
    hidden: int = at_least(100, 1)
    layers: int = at_least(2, 1)  # hidden layers


@dataclasses.dataclass
class TrainConfig:
    steps_per_task: int = at_least(300, 1)
    batch_size: int = at_least(32, 1)  # drawn with replacement from the task's training images


@dataclasses.dataclass
class SGDGrid:
    learning_rates: list = positive_list([0.01, 0.03, 0.1, 0.3], "learning rates")


@dataclasses.dataclass
class EWCGrid:
    learning_rates: list = positive_list([0.01, 0.03, 0.1, 0.3], "learning rates")
    strengths: list = positive_list([1.0, 10.0, 100.0, 1000.0], "strengths λ")


@dataclasses.dataclass
class ClasspGrid:
    learning_rates: list = positive_list([0.01, 0.03, 0.1, 0.3], "learning rates")
    thresholds: list = non_negative_list([0.0, 1e-4, 1e-3, 1e-2], "thresholds τ")
    powers: list = positive_list([1.0, 2.0], "powers p")
    eps: float = positive(1e-8)


@dataclasses.dataclass
class ContinualDigitsConfig:
    experiment: str = "continual_digits"
    seed: int = 0  # the initial weights and the minibatches
    figures: bool = True
    scenario: str = choice("task_incremental", ["task_incremental", "domain_incremental"])
    data: DataConfig = section(DataConfig)
    network: NetworkConfig = section(NetworkConfig)
    train: TrainConfig = section(TrainConfig)
    sgd: SGDGrid = section(SGDGrid)
    ewc: EWCGrid = section(EWCGrid)
    classp: ClasspGrid = section(ClasspGrid)


def task_splits(cfg: DictConfig) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per split, `(images (T, m, 64), labels in {0, 1} (T, m), counts (T,))`: the tasks'
    images padded to the largest task (`m`), labels relative to the task's first class."""
    parts = digits(
        test_fraction=cfg.data.test_fraction,
        validation_fraction=cfg.data.validation_fraction,
        seed=cfg.data.split_seed,
    )
    out = {}
    for name, (x, y) in parts.items():
        chosen = [np.flatnonzero(y // 2 == t) for t in range(TASKS)]
        m = max(len(c) for c in chosen)
        images = np.zeros((TASKS, m, x.shape[1]), np.float32)
        labels = np.zeros((TASKS, m), np.int32)
        for t, c in enumerate(chosen):
            images[t, : len(c)], labels[t, : len(c)] = x[c], y[c] - 2 * t
        out[name] = (images, labels, np.array([len(c) for c in chosen], np.int32))
    return out


def _init(key, sizes):
    layers = []
    for k, (fan_in, fan_out) in zip(
        jax.random.split(key, len(sizes) - 1), itertools.pairwise(sizes), strict=True
    ):
        w = jax.random.normal(k, (fan_in, fan_out), jnp.float32) * (2.0 / fan_in) ** 0.5
        layers.append((w, jnp.zeros(fan_out, jnp.float32)))
    return layers


def _logits(params, x, task, multi_head: bool):
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    out = x @ w + b
    return jax.lax.dynamic_slice_in_dim(out, 2 * task, 2, axis=-1) if multi_head else out


def _train(method: str, hyper: dict, key, train, cfg: DictConfig):
    """The weights after each task (stacked over tasks) and the final optimiser state, for
    one point `hyper` of `method`'s grid."""
    images, labels, counts = train
    multi_head = cfg.scenario == "task_incremental"
    sizes = [images.shape[-1]] + [cfg.network.hidden] * cfg.network.layers
    params = _init(jax.random.fold_in(key, 0), sizes + [2 * TASKS if multi_head else 2])
    steps, batch = cfg.train.steps_per_task, cfg.train.batch_size
    if method == "classp":
        opt = classp(
            hyper["learning_rate"],
            threshold=hyper["threshold"],
            power=hyper["power"],
            eps=cfg.classp.eps,
        )
    else:
        opt = optax.sgd(hyper["learning_rate"])
    zeros = jax.tree.map(jnp.zeros_like, params)

    def loss(p, x, y, task, fisher, anchor):
        nll = jnp.mean(
            optax.softmax_cross_entropy_with_integer_labels(_logits(p, x, task, multi_head), y)
        )
        if method != "ewc":
            return nll
        # (λ/2) Σ_s F_s (θ − θ*_s)² up to a constant: F = Σ F_s, anchor = Σ F_s θ*_s
        penalty = sum(
            jnp.sum(f * q**2 - 2 * a * q)
            for f, a, q in zip(
                jax.tree.leaves(fisher), jax.tree.leaves(anchor), jax.tree.leaves(p), strict=True
            )
        )
        return nll + 0.5 * hyper["strength"] * penalty

    def fisher_of(p, task):
        """Diagonal Fisher `E_x Σ_y p(y|x) (∂ log p(y|x)/∂θ)²` over the task's images: with
        two classes `∂ log p₀ = p₁ ∂d`, `∂ log p₁ = −p₀ ∂d` for the logit difference `d = z₀ −
        z₁`, so it is `E_x p₀p₁ (∂d/∂θ)²`."""
        mask = jnp.arange(images.shape[1]) < counts[task]

        def per_image(x):
            def d(q):
                z = _logits(q, x, task, multi_head)
                return z[0] - z[1]

            p0 = jax.nn.sigmoid(d(p))
            return jax.tree.map(lambda g: p0 * (1 - p0) * g**2, jax.grad(d)(p))

        each = jax.vmap(per_image)(images[task])
        weights = mask.astype(jnp.float32) / counts[task].astype(jnp.float32)
        return jax.tree.map(lambda f: jnp.tensordot(weights, f, axes=1), each)

    def task_body(carry, task):
        params, state, fisher, anchor = carry

        def step(c, k):
            params, state = c
            index = jax.random.randint(
                jax.random.fold_in(key, 1 + task * steps + k), (batch,), 0, counts[task]
            )
            grads = jax.grad(loss)(
                params, images[task, index], labels[task, index], task, fisher, anchor
            )
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(step, (params, state), jnp.arange(steps))
        if method == "ewc":
            f = fisher_of(params, task)
            fisher = jax.tree.map(jnp.add, fisher, f)
            anchor = jax.tree.map(lambda a, g, q: a + g * q, anchor, f, params)
        return (params, state, fisher, anchor), params

    carry = (params, opt.init(params), zeros, zeros)
    (_, state, _, _), snapshots = jax.lax.scan(task_body, carry, jnp.arange(TASKS))
    return snapshots, state


def _train_grid(method: str, grid: list[dict], key, train, cfg: DictConfig):
    """`_train` at every point of `grid`, vmapped: weights after each task `(G, T, …)` and
    the final optimiser states."""
    hyper = {k: jnp.asarray([g[k] for g in grid], jnp.float32) for k in grid[0]}
    return jax.jit(jax.vmap(lambda h: _train(method, h, key, train, cfg)))(hyper)


def _take(tree, start: int, stop: int | None = None):
    """Grid point `start` of a vmapped pytree, or points `start:stop`."""
    if stop is None:
        return jax.tree.map(lambda a: a[start], tree)
    return jax.tree.map(lambda a: a[start:stop], tree)


def _accuracy_matrix(snapshots, split, multi_head: bool):
    """`R[k, j]`: accuracy on task `j` of the weights after task `k`."""
    images, labels, counts = split

    def one(params, task):
        hits = jnp.argmax(_logits(params, images[task], task, multi_head), -1) == labels[task]
        return (
            jnp.sum(jnp.where(jnp.arange(images.shape[1]) < counts[task], hits, 0)) / counts[task]
        )

    tasks = jnp.arange(TASKS)
    return jax.vmap(lambda p: jax.vmap(lambda t: one(p, t))(tasks))(snapshots)


def average_accuracy(r: np.ndarray) -> float:
    return float(np.mean(r[-1]))


def average_forgetting(r: np.ndarray) -> float:
    """`(1/(T−1)) Σ_{j<T−1} (max_{k<T−1} R[k, j] − R[T−1, j])`; `R[k, j]` before task `j` is
    training is not counted (`k >= j`)."""
    t = r.shape[0]
    drops = [np.max(r[j : t - 1, j]) - r[t - 1, j] for j in range(t - 1)]
    return float(np.mean(drops))


def _grid(cfg: DictConfig, method: str) -> list[dict]:
    g = cfg[method]
    if method == "sgd":
        return [{"learning_rate": lr} for lr in g.learning_rates]
    if method == "ewc":
        return [
            {"learning_rate": lr, "strength": s}
            for lr, s in itertools.product(g.learning_rates, g.strengths)
        ]
    return [
        {"learning_rate": lr, "threshold": th, "power": p}
        for lr, th, p in itertools.product(g.learning_rates, g.thresholds, g.powers)
    ]


def _check(cfg: DictConfig) -> None:
    d = cfg.data
    if d.test_fraction + d.validation_fraction >= 1:
        raise ConfigError(
            f"data.test_fraction={d.test_fraction} + data.validation_fraction="
            f"{d.validation_fraction} must be < 1: no training image would be left"
        )


@register("continual_digits", ContinualDigitsConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Split-digits continual learning: CLASSP vs plain SGD and EWC (average accuracy and
    forgetting, hyperparameters chosen on validation)."""
    splits = {k: tuple(jnp.asarray(a) for a in v) for k, v in task_splits(cfg).items()}
    multi_head = cfg.scenario == "task_incremental"
    key = jax.random.key(cfg.seed)
    summary: dict = {"scenario": cfg.scenario, "methods": {}}
    matrices = {}
    start = time.perf_counter()
    evaluate = jax.jit(_accuracy_matrix, static_argnums=2)
    runs = {}  # one program for SGD and EWC: SGD is the penalty at λ = 0
    sgd_grid, ewc_grid = _grid(cfg, "sgd"), _grid(cfg, "ewc")
    penalised = [g | {"strength": 0.0} for g in sgd_grid] + ewc_grid
    snapshots, _ = _train_grid("ewc", penalised, key, splits["train"], cfg)
    runs["sgd"] = (sgd_grid, _take(snapshots, 0, len(sgd_grid)), None)
    runs["ewc"] = (ewc_grid, _take(snapshots, len(sgd_grid), len(penalised)), None)
    classp_grid = _grid(cfg, "classp")
    snapshots, state = _train_grid("classp", classp_grid, key, splits["train"], cfg)
    runs["classp"] = (classp_grid, snapshots, state.total)
    for method in METHODS:
        grid, snapshots, total = runs[method]
        validation = np.stack(
            [
                np.asarray(evaluate(_take(snapshots, i), splits["validation"], multi_head))
                for i in range(len(grid))
            ]
        )
        scores = [average_accuracy(r) for r in validation]
        best = int(np.argmax(scores))  # the first of ties: the grid's order
        test = np.asarray(evaluate(_take(snapshots, best), splits["test"], multi_head))  # once
        matrices[method] = test
        entry = {
            "test_average_accuracy": average_accuracy(test),
            "test_average_forgetting": average_forgetting(test),
            "validation_average_accuracy": scores[best],
            "validation_average_forgetting": average_forgetting(validation[best]),
            "chosen": grid[best],
            "grid_size": len(grid),
            "test_accuracy_matrix": test.round(4).tolist(),
        }
        if method == "classp":  # the share of weights CLASSP ever updated (sparsity promotion)
            total = jax.tree.leaves(_take(total, best))
            entry["fraction_of_weights_updated"] = float(
                sum(jnp.sum(a > 0) for a in total) / sum(a.size for a in total)
            )
        summary["methods"][method] = entry
    methods = summary["methods"]
    summary["classp_minus_ewc_test_accuracy"] = (
        methods["classp"]["test_average_accuracy"] - methods["ewc"]["test_average_accuracy"]
    )
    summary["target_met"] = bool(summary["classp_minus_ewc_test_accuracy"] >= 0)
    summary["train_seconds"] = time.perf_counter() - start
    if cfg.figures:
        _figure(run_dir, matrices, summary, cfg)
    return summary


def _figure(run_dir: Path, matrices: dict, summary: dict, cfg: DictConfig) -> None:
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    axes = fig.subplots(1, len(METHODS), sharey=True)
    for ax, method in zip(axes, METHODS, strict=True):
        r = matrices[method]
        image = ax.imshow(r, vmin=0.0, vmax=1.0, cmap="viridis")
        for k, j in itertools.product(range(TASKS), range(TASKS)):
            color = "w" if r[k, j] < 0.6 else "k"
            ax.text(j, k, f"{r[k, j]:.2f}", ha="center", va="center", fontsize=7, color=color)
        m = summary["methods"][method]
        title = (
            f"{method}: ACC {m['test_average_accuracy']:.3f}, F {m['test_average_forgetting']:.3f}"
        )
        ax.set(xlabel="task evaluated", xticks=range(TASKS), yticks=range(TASKS), title=title)
    axes[0].set_ylabel("after training task")
    fig.colorbar(image, ax=axes, shrink=0.8, label="test accuracy (chance 0.5)")
    fig.suptitle(f"Split digits, {cfg.scenario.replace('_', '-')} (seed {cfg.seed})")
    fig.savefig(run_dir / "accuracy_matrices.png", dpi=120)
