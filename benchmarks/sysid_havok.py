"""HAVOK, jaxdyn against PyDMD on the same data (CPU), and jaxdyn's batched throughput.

What is measured:

- **One series** (the `havok_lorenz` experiment's data: Lorenz x from (-8, 8, 27), fixed RK4
  steps of dt = 0.001, `--samples` samples; 100 delays, rank 15): the wall time of the HAVOK
  fit alone and of fit + reconstruction, for `jaxdyn.sysid.havok` (one `jax.jit` program per
  task, compiled before timing; `derivative="central2"`, PyDMD's stencil, so both sides do the
  same arithmetic) and for PyDMD's `HAVOK(svd_rank=15, delays=100).fit(x, dt)` (+
  `reconstructed_data`). All four contenders are timed round-robin (one call each per round,
  shuffled; `_common.time_round_robin`), so the shared machine's load falls on all alike;
  reported: medians, and the median of the per-round ratios PyDMD / jaxdyn.
- **A batch** of `--batch` series of `--batch-samples` samples each (Lorenz trajectories from
  states spaced 2 time units apart along one long run): `jax.vmap` of fit + reconstruction in
  one jitted program against PyDMD looping over the same series; reported: series per second
  on each side (median over rounds).

Everything is float64 (x64 enabled by this script), as HAVOK at rank 15 needs (singular
values down to ~1e-13 of the first). Agreement is checked too: the two reconstructions'
relative L2 errors against x are printed.

Run: `python benchmarks/sysid_havok.py [--reps 5] [--quick]`. Writes
`benchmarks/out/sysid_havok.json`.
"""

import argparse
import sys
from pathlib import Path

import jax
import numpy as np
from _common import print_table, record_header, spread, time_call, time_round_robin, write_record

from jaxdyn.data import LORENZ_PARAMETERS, lorenz_field
from jaxdyn.solve import odeint
from jaxdyn.sysid import havok

jax.config.update("jax_enable_x64", True)

OUT = Path(__file__).resolve().parent / "out" / "sysid_havok.json"
DT, DELAYS, RANK = 0.001, 100, 15


def lorenz_states(y0: np.ndarray, samples: int) -> np.ndarray:
    """The Lorenz states `(samples, 3)` (or `(batch, samples, 3)` for a batch of `y0`) on the
    grid `k dt`, fixed RK4 steps of dt (as the experiment)."""
    ts = DT * np.arange(samples)
    batch = "vmap" if y0.ndim == 2 else None
    return np.asarray(
        odeint(lorenz_field, y0, ts, args=LORENZ_PARAMETERS, solver="rk4", dt0=DT, batch=batch).ys
    )


def jax_fit(x):
    return havok(x, DT, delays=DELAYS, rank=RANK, derivative="central2")


def jax_fit_reconstruct(x):
    model = jax_fit(x)
    return model, model.reconstruct()


def pydmd_fit(x):
    from pydmd import HAVOK as PyDMDHAVOK

    return PyDMDHAVOK(svd_rank=RANK, delays=DELAYS).fit(x, DT)


def pydmd_fit_reconstruct(x):
    model = pydmd_fit(x)
    return model, model.reconstructed_data


def rel_l2(pred, x) -> float:
    return float(np.linalg.norm(np.asarray(pred) - x) / np.linalg.norm(x))


def measure(args) -> dict:
    y0 = np.array([-8.0, 8.0, 27.0])
    x = lorenz_states(y0, args.samples)[:, 0]
    fit, fit_rec = jax.jit(jax_fit), jax.jit(jax_fit_reconstruct)
    compile_s = {
        "jaxdyn fit": time_call(lambda: jax.block_until_ready(fit(x))),
        "jaxdyn fit+reconstruct": time_call(lambda: jax.block_until_ready(fit_rec(x))),
    }
    errors = {"jaxdyn": rel_l2(fit_rec(x)[1], x), "pydmd": rel_l2(pydmd_fit_reconstruct(x)[1], x)}
    contenders = [
        {"name": "jaxdyn fit", "run": lambda: jax.block_until_ready(fit(x))},
        {"name": "jaxdyn fit+reconstruct", "run": lambda: jax.block_until_ready(fit_rec(x))},
        {"name": "pydmd fit", "run": lambda: pydmd_fit(x)},
        {"name": "pydmd fit+reconstruct", "run": lambda: pydmd_fit_reconstruct(x)},
    ]
    print(f"one series of {args.samples} samples: {args.reps} round-robin rounds ...")
    time_round_robin(contenders, args.reps, args.warmup, args.seed)
    single = {c["name"]: spread(c["times"], "s") for c in contenders}
    times = {c["name"]: np.asarray(c["times"]) for c in contenders}
    for task in ("fit", "fit+reconstruct"):
        single[f"ratio pydmd/jaxdyn {task}"] = float(
            np.median(times[f"pydmd {task}"] / times[f"jaxdyn {task}"])
        )

    # The batch: states 2 time units apart along one run from y0 start the series.
    spacing = round(2.0 / DT)
    states = lorenz_states(y0, spacing * args.batch + 1)[spacing::spacing][: args.batch]
    xs = lorenz_states(states, args.batch_samples)[..., 0]
    batched = jax.jit(jax.vmap(jax_fit_reconstruct))
    batch_compile_s = time_call(lambda: jax.block_until_ready(batched(xs)))
    batch_errors = [rel_l2(r, x_) for r, x_ in zip(batched(xs)[1], xs, strict=True)]
    contenders = [
        {"name": "jaxdyn vmap", "run": lambda: jax.block_until_ready(batched(xs))},
        {"name": "pydmd loop", "run": lambda: [pydmd_fit_reconstruct(x_) for x_ in xs]},
    ]
    print(f"{args.batch} series of {args.batch_samples} samples: {args.reps} rounds ...")
    time_round_robin(contenders, args.reps, args.warmup, args.seed)
    batch = {
        c["name"]: {**spread(c["times"], "s"), "series_per_s": args.batch / np.median(c["times"])}
        for c in contenders
    }
    return {
        "single": single,
        "compile_s": compile_s,
        "rel_l2_error": errors,
        "batch": batch,
        "batch_compile_s": batch_compile_s,
        "batch_rel_l2_error_median": float(np.median(batch_errors)),
    }


def table(result: dict, args) -> str:
    s, b = result["single"], result["batch"]
    rows = [
        f"| task ({args.samples} samples) | jaxdyn median s | PyDMD median s | PyDMD / jaxdyn |",
        "|---|---:|---:|---:|",
    ]
    for task in ("fit", "fit+reconstruct"):
        rows.append(
            f"| {task} | {s[f'jaxdyn {task}']['median_s']:.3f} | "
            f"{s[f'pydmd {task}']['median_s']:.3f} | {s[f'ratio pydmd/jaxdyn {task}']:.2f}× |"
        )
    rows += [
        "",
        f"| batch ({args.batch} × {args.batch_samples} samples) | median s | series / s |",
        "|---|---:|---:|",
    ]
    for name in ("jaxdyn vmap", "pydmd loop"):
        rows.append(f"| {name} | {b[name]['median_s']:.3f} | {b[name]['series_per_s']:.1f} |")
    errors = result["rel_l2_error"]
    rows += [
        "",
        f"reconstruction rel. L2 error: jaxdyn {errors['jaxdyn']:.4f}, PyDMD {errors['pydmd']:.4f}"
        f"; batch median (jaxdyn) {result['batch_rel_l2_error_median']:.4f}",
        f"compile: {result['compile_s']}, batch {result['batch_compile_s']:.2f} s",
    ]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000, help="samples of the one series")
    parser.add_argument("--batch", type=int, default=32, help="series in the batch")
    parser.add_argument("--batch-samples", type=int, default=10_000, help="samples per series")
    parser.add_argument("--reps", type=int, default=5, help="timed round-robin rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after compiling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: small sizes, 2 reps")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.batch, args.batch_samples, args.reps = 5_000, 4, 2_000, 2
    result = measure(args)
    print_table(table(result, args))
    record = record_header("sysid_havok", "jax", "jaxlib", "equinox", "numpy", "scipy", "pydmd")
    record.update(
        samples=args.samples,
        batch_size=args.batch,
        batch_samples=args.batch_samples,
        reps=args.reps,
        dt=DT,
        delays=DELAYS,
        rank=RANK,
        **result,
    )
    write_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
