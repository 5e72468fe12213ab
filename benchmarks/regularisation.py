"""The cost of one training step with each solver regulariser, relative to the plain step.

What is measured: the wall time of ONE training step (forward solve, penalty, backward pass and
an Adam update) of the `solver_regularisation` experiment's spiral model (the quickstart's
neural ODE: an MLP 2-50-2 on `y**3`, Dopri5 at rtol = atol = 1e-5, the checkpointed adjoint,
joint batch), on a batch of `--batch` windows of 10 points of the spiral, for the loss
`regularized_loss` with each regulariser at the config's weights, and for the plain mean
squared error (`none`). Every repetition runs the same computation (the first Adam step from
the initial weights), so solver steps do not drift between repetitions; contenders are timed
round-robin in a shuffled order (`_common.time_round_robin`), so the machine's load falls on
all alike. Reported: median and quartiles, the ratio of each median to the plain step's, and
each compile time. The papers expect the local variants to be the cheapest (one extra step
instead of work on every step).

Run: `python benchmarks/regularisation.py [--reps 20] [--batch 128]`. Writes
`benchmarks/out/regularisation.json`.
"""

import argparse
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from _common import (
    make_jax_step,
    print_table,
    record_header,
    spread,
    time_call,
    time_round_robin,
    write_record,
)

from jaxdyn.data import spiral, windows
from jaxdyn.models import MLPField, NeuralODE
from jaxdyn.regularize import Regularizer, regularized_loss

OUT = Path(__file__).resolve().parent / "out" / "regularisation.json"
# the first (a-priori) weight of each grid in configs/solver_regularisation.yaml
WEIGHTS = {"error": 1e-2, "stiffness": 2e-4, "local_error": 3e-2, "local_stiffness": 3e-4,
           "taylor": 1e-5}  # fmt: skip


class _Loss(eqx.Module):
    """The training loss of a batch of windows, each solved from its first point."""

    ts: jax.Array
    regularizer: Regularizer | None

    def __call__(self, model, batch, key):
        if self.regularizer is None:
            return jnp.mean((model(self.ts, batch[:, 0]) - batch) ** 2)
        return regularized_loss(model, self.ts, batch[:, 0], batch, self.regularizer, key=key)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    ts, ys = spiral()
    batch = windows(ys, 10)[: args.batch]
    ts_window = ts[:10] - ts[0]
    field = MLPField(dim=2, width=50, depth=1, activation="tanh", feature="cube",
                     key=jax.random.key(0))  # fmt: skip
    model = NeuralODE(field, solver="dopri5", rtol=1e-5, atol=1e-5, adjoint="checkpoint")
    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    key = jax.random.key(1)

    contenders = []
    for kind in ["none", *WEIGHTS]:
        regularizer = None if kind == "none" else Regularizer(kind, WEIGHTS[kind])
        step = make_jax_step(_Loss(ts_window, regularizer), optimizer)

        def run(step=step):
            jax.block_until_ready(step(model, opt_state, batch, key))

        contenders.append({"name": kind, "run": run, "compile_s": time_call(run)})
    time_round_robin(contenders, args.reps, args.warmup)

    plain = spread(contenders[0]["times"], "s")["median_s"]
    rows, results = [], {}
    for c in contenders:
        s = spread(c["times"], "s")
        results[c["name"]] = {**s, "ratio_to_plain": s["median_s"] / plain,
                              "compile_s": c["compile_s"]}  # fmt: skip
        rows.append(f"| {c['name']} | {1e3 * s['median_s']:.1f} | {1e3 * s['q25_s']:.1f}–"
                    f"{1e3 * s['q75_s']:.1f} | {s['median_s'] / plain:.2f}× | "
                    f"{c['compile_s']:.1f} |")  # fmt: skip
    table = ("| regulariser | step (ms, median) | IQR (ms) | vs plain | compile (s) |\n"
             "|---|---:|---:|---:|---:|\n" + "\n".join(rows))  # fmt: skip
    print_table(table)
    record = {**record_header("regularisation"), "reps": args.reps, "batch": args.batch,
              "weights": WEIGHTS, "results": results}  # fmt: skip
    write_record(args.out, record)


if __name__ == "__main__":
    main()
