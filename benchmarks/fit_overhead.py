"""Overhead of `jaxdyn.train.fit` over a hand-written `lax.scan` of the same training step.

What is measured: the wall time of training a neural ODE for `--steps` steps (default 200)
with `jaxdyn.train.fit` and with a bare loop written by hand, on the workload

- field: MLP 2-64-64-2 with tanh, `NeuralODE(..., solver="dopri5", rtol=atol=1e-5,
  batch="joint")`, float32, t in [0, 1];
- data: 1024 initial states from a standard normal; minibatches of 256 drawn without
  replacement; loss: mean squared error between y(1) and the reversed state `y0[:, ::-1]`;
- optimiser: Adam, learning rate 1e-3; chunks of 100 steps.

Contenders:

- `bare`: `jaxdyn.train.make_step` inside one `eqx.filter_jit`-ted `lax.scan` per chunk, with
  fit's key scheme (step `s` uses `fold_in(key, s)`, split into batch and loss keys) and
  sampling (`jax.random.choice(batch_key, n, (batch_size,), replace=False)`); compiled
  once, before timing, and reused;
- `fit`: `fit(..., progress=False, run_dir=None)`;
- `fit + run_dir`: the same, writing `metrics.jsonl` and a checkpoint per chunk to a fresh
  temporary directory;
- `bare, compiled per call`: `bare` with a new jitted function on every call, so that it
  traces and compiles every time. It shows what part of fit's time is compilation: fit
  defines its jitted chunk function inside the call, so every call of fit compiles again.

How: every contender is called once to warm up, then the contenders are timed in rounds
(one call of each per round, in a shuffled order) so that noise on a shared machine falls
on all alike. Reported: median wall time, min-max, the ratio to `bare`, and the time the
call spent tracing, lowering and compiling (summed from `jax.monitoring` events), with the
ratio to `bare` of the time left after subtracting it (an estimate: it leaves in other
per-call costs of a new jitted function, such as building its dispatch cache). The losses
of `bare` and `fit` are compared to check that both run the same computation.

The dataset-size sweep (issue 13, `--sweep`): an MLP 2-64-64-2 (tanh) regressing `sin` of
2-d standard normal inputs, batch 256, `--sweep-steps` steps (default 500) in one chunk, Adam,
float32, for n = 1e3, 1e4, 1e5, 1e6 samples. Contenders: `bare`, a hand-written `lax.scan`
of `make_step` drawing its indices with `jax.random.randint` (the cheapest draw there is);
`fit` (epoch-wise shuffling, the default: every sample once per epoch, by an index shuffle);
`fit, with replacement`. Reported: ms per step (median over interleaved rounds) and the ratio
to `bare`; target: `fit` ≤ 1.10× `bare` at every n.

Run: `python benchmarks/fit_overhead.py [--steps 200] [--reps 5] [--quick] [--sweep]`. Writes
`benchmarks/out/fit_overhead.json` (the sweep: `benchmarks/out/fit_sizes.json`).
"""

import argparse
import gc
import random
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import print_table, record_header, verdict, write_record

from jaxdyn.models import MLPField, NeuralODE
from jaxdyn.train import fit, make_step

OUT = Path(__file__).resolve().parent / "out" / "fit_overhead.json"
SWEEP_OUT = OUT.with_name("fit_sizes.json")
SWEEP_SIZES = (1_000, 10_000, 100_000, 1_000_000)
DIM, WIDTH, DEPTH = 2, 64, 2
RTOL = ATOL = 1e-5
LR = 1e-3
TS = (0.0, 1.0)
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class CompileTimer:
    """Sums the durations JAX reports for tracing, lowering and compiling."""

    def __init__(self):
        self.total = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs) -> None:
        if event in COMPILE_EVENTS:
            self.total += duration


def loss_fn(model, batch, key):
    ts = jnp.asarray(TS, dtype=batch.dtype)
    y1 = model(ts, batch)[:, -1]
    return jnp.mean((y1 - batch[:, ::-1]) ** 2)


def make_bare(optimizer, static, batch_size: int):
    """A hand-written chunk of training: the same step, sampling and keys as `fit`."""
    step = make_step(loss_fn, optimizer)

    @eqx.filter_jit
    def run_chunk(params, opt_state, data, key, first, length: int):
        n = data.shape[0]

        def body(carry, s):
            params, opt_state = carry
            batch_key, loss_key = jax.random.split(jax.random.fold_in(key, s))
            index = jax.random.choice(batch_key, n, (batch_size,), replace=False)
            model = eqx.combine(params, static)
            model, opt_state, loss, _ = step(model, opt_state, data[index], loss_key)
            return (eqx.filter(model, eqx.is_inexact_array), opt_state), loss

        return jax.lax.scan(body, (params, opt_state), first + jnp.arange(length))

    return run_chunk


def bare_train(run_chunk, params, opt_state, data, key, steps: int, chunk: int):
    losses = []
    for first in range(0, steps, chunk):
        length = min(chunk, steps - first)
        (params, opt_state), chunk_losses = run_chunk(
            params, opt_state, data, key, jnp.asarray(first), length
        )
        losses.append(chunk_losses)
    jax.block_until_ready((params, opt_state, losses))
    return np.concatenate([np.asarray(x) for x in losses])


def mlp_loss(model, batch, key):
    x, y = batch
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def make_bare_randint(optimizer, static, batch_size: int):
    """A hand-written chunk drawing its batch with `randint`: the floor for any sampler."""
    step = make_step(mlp_loss, optimizer)

    @eqx.filter_jit
    def run_chunk(params, opt_state, data, key, first, length: int):
        n = data[0].shape[0]

        def body(carry, s):
            params, opt_state = carry
            batch_key, loss_key = jax.random.split(jax.random.fold_in(key, s))
            index = jax.random.randint(batch_key, (batch_size,), 0, n)
            batch = jax.tree.map(lambda x: x[index], data)
            model, opt_state, loss, _ = step(
                eqx.combine(params, static), opt_state, batch, loss_key
            )
            return (eqx.filter(model, eqx.is_inexact_array), opt_state), loss

        return jax.lax.scan(body, (params, opt_state), first + jnp.arange(length))

    return run_chunk


def _interleaved(
    contenders: dict, reps: int, seed: int, timer: CompileTimer | None = None
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall times of `reps` rounds, one call of each contender per round in a shuffled order,
    and the time each call spent compiling (by `timer`; zeros without one)."""
    times = {name: [] for name in contenders}
    compile_s = {name: [] for name in contenders}
    order, rng = list(contenders), random.Random(seed)
    for _ in range(reps):
        rng.shuffle(order)
        for name in order:
            gc.collect()
            before = timer.total if timer else 0.0
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
            compile_s[name].append((timer.total if timer else 0.0) - before)
    return times, compile_s


def _size_contenders(n: int, steps: int, batch_size: int, key) -> dict:
    data_key, model_key, train_key = jax.random.split(key, 3)
    x = jax.random.normal(data_key, (n, 2), dtype=jnp.float32)
    data = (x, jnp.sin(x))
    model = eqx.nn.MLP(2, 2, 64, 2, activation=jnp.tanh, key=model_key)
    optimizer = optax.adam(LR)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    bare_chunk = make_bare_randint(optimizer, static, batch_size)

    def bare():
        out = bare_chunk(params, opt_state, data, train_key, jnp.asarray(0), steps)
        return jax.block_until_ready(out)

    def fitted(sampling):
        def run():
            result = fit(mlp_loss, model, data, optimizer, steps=steps, batch_size=batch_size,
                         key=train_key, chunk=steps, sampling=sampling, progress=False)  # fmt: skip
            return jax.block_until_ready(result.model)

        return run

    return {
        "bare": bare,
        "fit": fitted("epoch"),
        "fit, with replacement": fitted("with_replacement"),
    }


def size_sweep(args) -> None:
    """The dataset-size sweep of the module docstring."""
    sizes = (1_000, 10_000) if args.quick else SWEEP_SIZES
    steps = 20 if args.quick else args.sweep_steps
    reps = 1 if args.quick else args.reps
    rows, start_all = [], time.perf_counter()
    for n in sizes:
        contenders = _size_contenders(n, steps, 256, jax.random.key(args.seed))
        for run in contenders.values():
            run()  # compile
        times, _ = _interleaved(contenders, reps, args.seed)
        bare = float(np.median(times["bare"]))
        for name, t in times.items():
            median = float(np.median(t))
            rows.append({"n": n, "contender": name, "ms_per_step": 1e3 * median / steps,
                         "ratio_vs_bare": median / bare, "times_s": t})  # fmt: skip
        print(f"n={n:>9,}: " + ", ".join(f"{r['contender']} {r['ms_per_step']:.3f} ms/step "
              f"({r['ratio_vs_bare']:.2f}x)" for r in rows[-len(times):]))  # fmt: skip
    names = list(contenders)
    lines = ["| n | " + " | ".join(f"{c} ms/step" for c in names) + " | fit / bare |",
             "|---:|" + "---:|" * (len(names) + 1)]  # fmt: skip
    for n in sizes:
        by = {r["contender"]: r for r in rows if r["n"] == n}
        cells = " | ".join(f"{by[c]['ms_per_step']:.3f}" for c in names)
        lines.append(f"| {n:,} | {cells} | **{by['fit']['ratio_vs_bare']:.2f}** |")
    table = "\n".join(lines)
    worst = max(r["ratio_vs_bare"] for r in rows if r["contender"] == "fit")
    print(
        f"\n{table}\n\ntarget fit <= 1.10x bare at every n: worst {worst:.3f} -> "
        f"{'met' if worst <= 1.10 else 'NOT met'}"
    )
    record = {**record_header("fit_sizes"),
              "workload": {"model": "MLP 2-64-64-2 tanh", "batch_size": 256, "steps": steps,
                           "optimizer": f"adam lr={LR}", "dtype": "float32"},
              "reps": reps, "quick": args.quick, "timing_wall_s": time.perf_counter() - start_all,
              "results": rows, "worst_fit_ratio": worst, "target_met": worst <= 1.10,
              "table_markdown": table}  # fmt: skip
    write_record(SWEEP_OUT, record)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per call")
    parser.add_argument("--chunk", type=int, default=100, help="steps per jitted scan")
    parser.add_argument("--reps", type=int, default=5, help="timed calls of each (>= 5)")
    parser.add_argument("--data", type=int, default=1024, help="dataset size")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: 20 steps, 1 rep")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--sweep", action="store_true", help="the dataset-size sweep instead")
    parser.add_argument("--sweep-steps", type=int, default=500, help="steps per call (sweep)")
    return parser.parse_args()


def overhead_contenders(args) -> dict:
    """`bare`, `fit`, `fit + run_dir` and `bare, compiled per call` of the module docstring:
    each a callable training the same model from the same state, returning the losses."""
    field_key, data_key, train_key = jax.random.split(jax.random.key(args.seed), 3)
    model = NeuralODE(
        MLPField(dim=DIM, width=WIDTH, depth=DEPTH, activation="tanh", key=field_key),
        solver="dopri5",
        rtol=RTOL,
        atol=ATOL,
        batch="joint",
    )
    data = jax.random.normal(data_key, (args.data, DIM), dtype=jnp.float32)
    optimizer = optax.adam(LR)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    steps, chunk = args.steps, args.chunk
    fit_kwargs = dict(steps=steps, batch_size=args.batch_size, key=train_key, chunk=chunk)
    bare_chunk = make_bare(optimizer, static, args.batch_size)

    def run_bare():
        return bare_train(bare_chunk, params, opt_state, data, train_key, steps, chunk)

    def run_bare_cold():
        run_chunk = make_bare(optimizer, static, args.batch_size)
        return bare_train(run_chunk, params, opt_state, data, train_key, steps, chunk)

    def run_fit():
        result = fit(loss_fn, model, data, optimizer, progress=False, **fit_kwargs)
        jax.block_until_ready((result.model, result.opt_state))
        return result.losses

    def run_fit_dir():
        with tempfile.TemporaryDirectory() as run_dir:
            result = fit(
                loss_fn, model, data, optimizer, progress=False, run_dir=run_dir, **fit_kwargs
            )
            jax.block_until_ready((result.model, result.opt_state))
            written = sorted(p.name for p in Path(run_dir).rglob("*") if p.is_file())
        assert "metrics.jsonl" in written and "state.eqx" in written, written
        return result.losses

    return {
        "bare": run_bare,
        "fit": run_fit,
        "fit + run_dir": run_fit_dir,
        "bare, compiled per call": run_bare_cold,
    }


def warm_up(contenders: dict, steps: int) -> tuple[dict, float]:
    """Call each contender once (timed: its first call); compare the losses of fit and bare."""
    print(f"warming up ({steps} steps per call) ...")
    warm = {}
    for name, run in contenders.items():
        start = time.perf_counter()
        warm[name] = {"losses": run(), "first_call_s": time.perf_counter() - start}
    diff = float(np.max(np.abs(warm["fit"]["losses"] - warm["bare"]["losses"])))
    print(f"max |loss_fit - loss_bare| over {steps} steps: {diff:.3g}")
    return warm, diff


def summarise(times: dict, compile_s: dict, warm: dict) -> list[dict]:
    bare_median = float(np.median(times["bare"]))
    cold_median = float(np.median(times["bare, compiled per call"]))
    rows = []
    for name in times:
        t = np.asarray(times[name])
        c = np.asarray(compile_s[name])
        rest = float(np.median(t - c))
        rows.append(
            {
                "contender": name,
                "median_s": float(np.median(t)),
                "min_s": float(t.min()),
                "max_s": float(t.max()),
                "ratio_vs_bare": float(np.median(t)) / bare_median,
                "ratio_vs_bare_compiled_per_call": float(np.median(t)) / cold_median,
                "compile_s_median": float(np.median(c)),
                "median_s_without_compile": rest,
                "ratio_vs_bare_without_compile": rest / bare_median,
                "first_call_s": warm[name]["first_call_s"],
                "times_s": [float(x) for x in t],
                "compile_times_s": [float(x) for x in c],
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| contender | median s | min–max s | ratio vs bare | vs bare compiled per call "
        "| trace+compile s | median s − compile | ratio vs bare w/o compile |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['contender']} | {r['median_s']:.3f} | {r['min_s']:.3f}–{r['max_s']:.3f} "
            f"| {r['ratio_vs_bare']:.3f} | {r['ratio_vs_bare_compiled_per_call']:.3f} "
            f"| {r['compile_s_median']:.2f} "
            f"| {r['median_s_without_compile']:.3f} | {r['ratio_vs_bare_without_compile']:.3f} |"
        )
    return "\n".join(lines)


def check_targets(rows: list[dict]) -> dict:
    """fit, with and without a run directory, within 1.05x of bare."""
    by_name = {r["contender"]: r for r in rows}
    targets = {}
    for name in ("fit", "fit + run_dir"):
        ratio = by_name[name]["ratio_vs_bare"]
        targets[f"{name} <= 1.05x bare"] = {"ratio": ratio, "met": ratio <= 1.05}
        print(f"target {name} <= 1.05x bare: {ratio:.3f} -> {verdict(ratio <= 1.05)}")
    return targets


def main() -> None:
    args = parse_args()
    if args.sweep:
        return size_sweep(args)
    if args.quick:
        args.steps, args.chunk, args.reps, args.data, args.batch_size = 20, 10, 1, 128, 32

    contenders = overhead_contenders(args)
    timer = CompileTimer()
    warm, diff = warm_up(contenders, args.steps)
    print(f"timing {len(contenders)} contenders x {args.reps} rounds ...")
    start_all = time.perf_counter()
    times, compile_s = _interleaved(contenders, args.reps, args.seed, timer)
    elapsed = time.perf_counter() - start_all
    rows = summarise(times, compile_s, warm)
    table = markdown(rows)
    print_table(table)
    targets = check_targets(rows)

    record = {
        **record_header("fit_overhead"),
        "workload": {
            "model": f"NeuralODE(MLPField(dim={DIM}, width={WIDTH}, depth={DEPTH}), dopri5, "
            f"rtol=atol={RTOL}, "
            "batch='joint')",
            "data": args.data,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "chunk": args.chunk,
            "optimizer": f"adam lr={LR}",
            "dtype": "float32",
        },
        "reps": args.reps,
        "quick": args.quick,
        "timing_wall_s": elapsed,
        "max_abs_loss_difference_fit_vs_bare": diff,
        "results": rows,
        "targets": targets,
        "table_markdown": table,
    }
    write_record(args.out, record)


if __name__ == "__main__":
    main()
