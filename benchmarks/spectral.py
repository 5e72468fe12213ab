"""ETDRK4 steps per second on Kuramoto–Sivashinsky, jaxdyn against exponax, batched over
initial conditions.

What is measured (the same process, CPU unless JAX sees an accelerator): Kassam & Trefethen's
KS problem (x ∈ [0, 32π), n = 128, dt = 1/4), initial conditions `cos(x/16)(1 + sin(x/16))`
plus a random smooth perturbation (8 low modes, amplitude 0.1) per sample, batches of 1 and 64.
One timed call is `--steps` steps of the whole batch, jitted and `jax.vmap`ped over the batch,
returning the final states:

- `jaxdyn`: `kuramoto_sivashinsky(...).rollout(u0, steps)` (a `lax.scan` in Fourier space);
- `jaxdyn (physical steps)`: a `lax.scan` of `.step` (an FFT pair per step, as exponax's
  stepper is called), to separate the scheme's cost from where the state lives;
- `exponax`: `exponax.repeat(KuramotoSivashinskyConservative(..., order=4,
  num_circle_points=64), steps)` on `(1, n)` states.

Both use the same dealiasing mask (modes `|m| < n/3`; exponax's `dealiasing_fraction=43/64`)
and contour (our 32 points on the upper half circle are its 64 on the full circle); the final
states are first checked equal after 40 steps. Interleaved round-robin repeats, median times,
their ratio; steps/s counts time steps of the whole batch, sample-steps/s multiplies by the
batch.

Usage: python benchmarks/spectral.py [--reps 7] [--steps 1000] [--x64] [--out ...]
"""

import argparse
import math
import time
from pathlib import Path

import jax

PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
PARSER.add_argument("--reps", type=int, default=7)
PARSER.add_argument("--warmup", type=int, default=1)
PARSER.add_argument("--steps", type=int, default=1000)
PARSER.add_argument("--batches", type=int, nargs="+", default=[1, 64])
PARSER.add_argument("--x64", action="store_true", help="float64 (default float32)")
PARSER.add_argument(
    "--out", type=Path, default=Path(__file__).resolve().parent / "out" / "spectral.json"
)
ARGS = PARSER.parse_args()
jax.config.update("jax_enable_x64", ARGS.x64)  # before any array is made

import exponax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    print_table,
    record_header,
    spread,
    time_call,
    time_round_robin,
    write_record,
)

from jaxdyn.physics import PeriodicGrid, kuramoto_sivashinsky  # noqa: E402

N, LENGTH, DT = 128, 32 * math.pi, 0.25


def initial_conditions(grid: PeriodicGrid, batch: int, key) -> jax.Array:
    x = grid.points
    base = jnp.cos(x / 16) * (1 + jnp.sin(x / 16))
    modes = jnp.arange(1, 9)
    a, b = jax.random.normal(key, (2, batch, 8)) * 0.1 / math.sqrt(8)
    phase = 2 * math.pi * modes[:, None] * x[None, :] / grid.length
    return base + a @ jnp.cos(phase) + b @ jnp.sin(phase)


def main() -> None:
    grid = PeriodicGrid(length=LENGTH, n=N)
    ours = kuramoto_sivashinsky(grid=grid, dt0=DT)
    theirs = exponax.stepper.KuramotoSivashinskyConservative(
        1, LENGTH, N, DT, order=4, num_circle_points=64,
        dealiasing_fraction=math.ceil(N / 3) / (N / 2),
    )  # fmt: skip

    def programs(steps: int) -> dict:
        def physical(u):
            return jax.lax.scan(lambda u, _: (ours.step(u), None), u, length=steps)[0]

        return {
            "jaxdyn": jax.jit(jax.vmap(lambda u: ours.rollout(u, steps))),
            "jaxdyn (physical steps)": jax.jit(jax.vmap(physical)),
            "exponax": jax.jit(lambda u: jax.vmap(exponax.repeat(theirs, steps))(u[:, None])[:, 0]),
        }

    # The same answer first (40 steps = t 10, before the KS solution's chaos amplifies rounding).
    u_check = initial_conditions(grid, 4, jax.random.key(1))
    outs = {name: np.asarray(f(u_check)) for name, f in programs(40).items()}
    scale = np.max(np.abs(outs["exponax"]))
    agreement = {
        name: float(np.max(np.abs(o - outs["exponax"])) / scale) for name, o in outs.items()
    }
    tolerance = 1e-12 if ARGS.x64 else 1e-4
    assert max(agreement.values()) < tolerance, agreement

    contenders, compile_s = [], {}
    fns = programs(ARGS.steps)
    for batch in ARGS.batches:
        u0 = initial_conditions(grid, batch, jax.random.key(0))
        for name, f in fns.items():
            key = f"{name}, batch {batch}"
            compile_s[key] = time_call(lambda f=f, u0=u0: jax.block_until_ready(f(u0)))
            contenders.append({"name": key, "batch": batch, "solver": name,
                               "run": lambda f=f, u0=u0: jax.block_until_ready(f(u0))})  # fmt: skip
    start = time.perf_counter()
    time_round_robin(contenders, ARGS.reps, ARGS.warmup)
    wall = time.perf_counter() - start

    rows, results = [], {}
    for batch in ARGS.batches:
        group = {c["solver"]: c for c in contenders if c["batch"] == batch}
        base = np.median(group["exponax"]["times"])
        for name, c in group.items():
            median = float(np.median(c["times"]))
            steps_per_s = ARGS.steps / median
            results[c["name"]] = {**spread(c["times"], "s"), "steps_per_s": steps_per_s,
                                  "sample_steps_per_s": batch * steps_per_s,
                                  "speedup_over_exponax": base / median,
                                  "compile_s": compile_s[c["name"]]}  # fmt: skip
            rows.append(f"| {batch} | {name} | {1e3 * median:.1f} | {steps_per_s:,.0f} | "
                        f"{batch * steps_per_s:,.0f} | {base / median:.2f}× | "
                        f"{compile_s[c['name']]:.1f} |")  # fmt: skip
    table = ("| batch | solver | ms per call (median) | steps/s | sample-steps/s | "
             "exponax time / this | compile (s) |\n|---:|---|---:|---:|---:|---:|---:|\n"
             + "\n".join(rows))  # fmt: skip
    print_table(table)
    record = {**record_header("spectral", "exponax"),
              "dtype": "float64" if ARGS.x64 else "float32", "n": N, "length": LENGTH, "dt": DT,
              "steps": ARGS.steps, "reps": ARGS.reps, "batches": ARGS.batches,
              "agreement_40_steps": agreement, "wall_s": wall, "results": results}  # fmt: skip
    write_record(ARGS.out, record)


if __name__ == "__main__":
    main()
