"""What the timing scripts in `benchmarks/` share: round-robin timing, summary statistics,
markdown cells, the JSON record's header and its writing, and the pieces of the neural ODE/SDE
step benchmarks that are the same on both sides (a batched field, one jitted Adam step, an MLP
copied into torch)."""

import argparse
import datetime
import gc
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import optax

from jaxdyn._environment import machine, versions
from jaxdyn.models import MLPField

# --------------------------------------------------------------------------- timing


def time_round_robin(contenders: list[dict], reps: int, warmup: int, seed: int = 0) -> float:
    """Warm up, then time `reps` rounds with one call of each contender per round, in a shuffled
    order, with the garbage collector off; returns the wall time of the rounds.

    Each contender is a dict with `"run"` (the timed call) and optionally `"reset"` (called
    before every call, untimed); the times land in its `"times"` list."""
    for c in contenders:
        c["times"] = []
        for _ in range(warmup):
            c.get("reset", lambda: None)()
            c["run"]()
    order = list(contenders)
    rng = random.Random(seed)
    start = time.perf_counter()
    gc.collect()
    gc.disable()
    try:
        for _ in range(reps):
            rng.shuffle(order)
            for c in order:
                c.get("reset", lambda: None)()
                begin = time.perf_counter()
                c["run"]()
                c["times"].append(time.perf_counter() - begin)
    finally:
        gc.enable()
    return time.perf_counter() - start


def time_call(fn: Callable[[], object]) -> float:
    """The wall time of one call of `fn` (a contender's first call: its compile time)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_step_contenders(contenders: list[dict], args) -> float:
    """`time_round_robin` with `args.reps`, `args.warmup`, `args.seed`; the wall time of it all,
    warm-up included."""
    print(f"timing {len(contenders)} contenders, {args.reps} round-robin rounds ...")
    start = time.perf_counter()
    time_round_robin(contenders, args.reps, args.warmup, args.seed)
    return time.perf_counter() - start


def spread(values, unit: str) -> dict:
    """Median, quartiles, min, max and count of `values`, keyed `median_<unit>` and so on."""
    values = np.asarray(values)
    return {
        f"median_{unit}": float(np.median(values)),
        f"q25_{unit}": float(np.percentile(values, 25)),
        f"q75_{unit}": float(np.percentile(values, 75)),
        f"min_{unit}": float(values.min()),
        f"max_{unit}": float(values.max()),
        "reps": len(values),
    }


# --------------------------------------------------------------------------- reporting


def fmt(x, spec: str) -> str:
    """A table cell: `x` formatted by `spec`, or a dash for a missing value."""
    return "–" if x is None else format(x, spec)


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def print_table(table: str) -> None:
    print()
    print(table)
    print()


def record_header(benchmark: str, *packages: str) -> dict:
    """The first keys of every JSON record: name, UTC date, machine, library versions, and
    the backend and devices JAX runs on (so a GPU run is never mistaken for a CPU one)."""
    return {
        "benchmark": benchmark,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(*packages),
        "jax_backend": jax.default_backend(),
        "jax_devices": [d.device_kind for d in jax.devices()],
    }


def write_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


# --------------------------------------------------------------------------- command line


def add_torch_and_out_arguments(parser, out: Path) -> None:
    """The last options of the torch comparisons: `--torch-threads`, `--device` (where the torch
    peers run; `resolve_torch_device` settles its default after parsing) and `--out`."""
    parser.add_argument(
        "--torch-threads", type=int, default=os.cpu_count() or 1, help="default: all cores"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="where the torch peers run (default: cuda when torch sees one, else cpu)",
    )
    parser.add_argument("--out", type=Path, default=out)


def resolve_torch_device(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Set `args.device` to `"cuda"` when torch sees a CUDA device and `"cpu"` otherwise,
    unless given; `--device cuda` without one is a usage error (exit 2)."""
    try:
        import torch
    except ImportError:  # no torch: its peers are skipped, so nothing runs anywhere
        torch = None
    cuda = torch is not None and torch.cuda.is_available()
    if args.device is None:
        args.device = "cuda" if cuda else "cpu"
    elif args.device == "cuda" and not cuda:
        why = "torch sees no CUDA device" if torch is not None else "torch is not installed"
        parser.error(f"--device cuda: {why}")


def torch_synchronised(torch, device: str, fn: Callable) -> Callable:
    """`fn`, then on CUDA `torch.cuda.synchronize()` before returning, so that a clock read
    after the call counts the GPU work it queued (as JAX's contenders `block_until_ready`).
    Wrap a torch contender's `run` and its untimed `reset` alike, so that no queued work spills
    from one into the other's timing."""
    if device != "cuda":
        return fn

    def synchronised(*args, **kwargs):
        result = fn(*args, **kwargs)
        torch.cuda.synchronize()
        return result

    return synchronised


def torch_record(torch_list: list, args: argparse.Namespace) -> dict:
    """The record's torch keys: threads, device, and the float32 matmul precision of both
    sides (on a GPU, JAX's default may use TF32 where torch's is full float32); None when no
    torch contender ran."""
    if not torch_list:
        return {"torch_threads": None, "torch_device": None, "float32_matmul_precision": None}
    import torch

    return {
        "torch_threads": args.torch_threads,
        "torch_device": args.device,
        "float32_matmul_precision": {
            "jax": jax.config.jax_default_matmul_precision,  # None: the backend's default
            "torch": torch.get_float32_matmul_precision(),
        },
    }


def parse_step_args(description: str, out: Path, extra: Callable = lambda parser: None):
    """The options of the one-training-step benchmarks (`extra(parser)` adds more before
    `--quick`); `--quick` sets 3 reps, batch 16 and 1 warm-up call."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--reps", type=int, default=30, help="timed repetitions (>= 20)")
    parser.add_argument("--batch", type=int, default=256, help="initial states per step")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls after compiling")
    parser.add_argument("--seed", type=int, default=0)
    extra(parser)
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 reps, batch 16")
    add_torch_and_out_arguments(parser, out)
    args = parser.parse_args()
    resolve_torch_device(parser, args)
    if args.quick:
        args.reps, args.batch, args.warmup = 3, 16, 1
    return args


# --------------------------------------------------------------------------- step benchmarks


class JointField(eqx.Module):
    """A per-sample field applied to a whole batch (one state for the solver)."""

    field: MLPField

    def __call__(self, t, y, args):
        return jax.vmap(self.field, in_axes=(None, 0, None))(t, y, args)


def make_jax_step(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
    """One jitted training step, `loss_fn(model, y0, extra)` (extra: a target or a key), the
    same code for every JAX contender."""

    @eqx.filter_jit
    def step(model, opt_state, y0, extra):
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, y0, extra)
        params = eqx.filter(model, eqx.is_inexact_array)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return eqx.apply_updates(model, updates), opt_state, loss

    return step


def torch_mlp(torch, field: MLPField):
    """`field`'s tanh MLP as a `torch.nn.Sequential` with a copy of its weights."""
    layers = []
    for i, linear in enumerate(field.mlp.layers):
        out_size, in_size = linear.weight.shape
        layer = torch.nn.Linear(in_size, out_size)
        with torch.no_grad():  # eqx and torch both store weights as (out, in)
            layer.weight.copy_(torch.from_numpy(np.array(linear.weight)))
            layer.bias.copy_(torch.from_numpy(np.array(linear.bias)))
        layers.append(layer)
        if i < len(field.mlp.layers) - 1:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def jax_step_contender(
    name, model, loss_fn, y0, extra, count_steps, *, lr: float, zero_model=None
) -> dict:
    """A contender running one jitted Adam step of `loss_fn(model, y0, extra)` from fresh
    optimiser state (always the same computation); its compile time, its solver steps
    (`count_steps()`) and a loss probe `loss(zero, extra)` (`zero`: on `zero_model`, the same
    shapes and dtypes, so nothing recompiles)."""
    optimizer = optax.adam(lr)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    step = make_jax_step(loss_fn, optimizer)

    def run():
        jax.block_until_ready(step(model, opt_state, y0, extra))

    def loss(zero=False, extra_=extra):
        return float(step(zero_model if zero else model, opt_state, y0, extra_)[2])

    compile_s = time_call(run)
    return {
        "name": name,
        "run": run,
        "loss": loss,
        "compile_s": compile_s,
        "solver_steps": count_steps(),
    }
