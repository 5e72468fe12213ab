"""SINDy fit time, jaxdyn against pysindy on the same data, and batched fits pysindy cannot do.

What is measured (CPU, float64 on both sides, the same Lorenz data as the `sindy_lorenz`
experiment: x0 = (−8, 8, 27), dt = 0.002, t < 10, 5,000 samples):

- `single fit`: derivatives (second-order finite differences), degree-2 polynomial library
  and STLSQ (threshold 0.1, α = 0.05, unbias) on one trajectory. jaxdyn: `eqx.filter_jit`ted
  `fit_sindy` after compilation; pysindy: `SINDy(...).fit(x, t=dt)`. Interleaved round-robin
  repeats; medians and their ratio. Coefficients are checked equal (to 1e-9) first.
- `threshold sweep`: 64 thresholds (log-spaced 0.01–10) on the same data. jaxdyn: one
  `jax.vmap` over the STLSQ threshold (one program); pysindy: a Python loop of 64 fits.
- `trajectories`: 256 trajectories (random initial conditions near the attractor, t < 2,
  1,000 samples each), one model per trajectory. jaxdyn: `jax.vmap` of `fit_sindy` over the
  trajectories; pysindy: a loop of 256 fits.

Usage: python benchmarks/sysid.py [--reps 7] [--out benchmarks/out/sysid.json]
"""

import argparse
import time
import warnings
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # the benchmark's own process: float64 as pysindy

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pysindy  # noqa: E402
from _common import (  # noqa: E402
    print_table,
    record_header,
    spread,
    time_call,
    time_round_robin,
    write_record,
)

from jaxdyn.data import lorenz  # noqa: E402
from jaxdyn.sysid import STLSQ, PolynomialLibrary, fit_sindy  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "sysid.json"
DT = 0.002


def _pysindy_fit(x, threshold=0.1):
    model = pysindy.SINDy(optimizer=pysindy.STLSQ(threshold=threshold, alpha=0.05),
                          feature_library=pysindy.PolynomialLibrary(degree=2))  # fmt: skip
    model.fit(x, t=DT)
    return model.coefficients()


def _contenders(name: str, ours, theirs) -> list[dict]:
    return [{"name": f"{name} jaxdyn", "run": lambda: jax.block_until_ready(ours())},
            {"name": f"{name} pysindy", "run": theirs}]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--thresholds", type=int, default=64)
    parser.add_argument("--trajectories", type=int, default=256)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    x = np.asarray(lorenz(jnp.arange(0.0, 10.0, DT)))
    fit = eqx.filter_jit(lambda x: fit_sindy(x, DT).coefficients)
    compile_s = {"single fit": time_call(lambda: jax.block_until_ready(fit(x)))}
    np.testing.assert_allclose(fit(x), _pysindy_fit(x), atol=1e-9)

    library = PolynomialLibrary(2)
    thresholds = jnp.logspace(-2, 1, args.thresholds)

    @jax.jit
    def sweep(x, thresholds):
        def one(threshold):
            optimizer = STLSQ(threshold=threshold, on_failure="return")
            return fit_sindy(x, DT, library=library, optimizer=optimizer).coefficients

        return jax.vmap(one)(thresholds)

    def sweep_pysindy():
        with warnings.catch_warnings():  # thresholds above the largest coefficient (28)
            warnings.filterwarnings("ignore", "Sparsity parameter is too big", UserWarning)
            return [_pysindy_fit(x, float(t)) for t in thresholds]

    key = jax.random.key(0)
    starts = np.asarray(x[::19][: args.trajectories]) + np.asarray(
        jax.random.normal(key, (args.trajectories, 3))
    )
    many = np.stack([np.asarray(lorenz(jnp.arange(0.0, 2.0, DT), tuple(s))) for s in starts])
    fit_many = jax.jit(jax.vmap(lambda x: fit_sindy(x, DT).coefficients))

    def many_pysindy():
        return [_pysindy_fit(xi) for xi in many]

    compile_s["threshold sweep"] = time_call(lambda: jax.block_until_ready(sweep(x, thresholds)))
    compile_s["trajectories"] = time_call(lambda: jax.block_until_ready(fit_many(many)))
    groups = {
        "single fit": _contenders("single fit", lambda: fit(x), lambda: _pysindy_fit(x)),
        "threshold sweep": _contenders(
            "threshold sweep", lambda: sweep(x, thresholds), sweep_pysindy
        ),  # fmt: skip
        "trajectories": _contenders("trajectories", lambda: fit_many(many), many_pysindy),
    }
    contenders = [c for group in groups.values() for c in group]
    start = time.perf_counter()
    time_round_robin(contenders, args.reps, args.warmup)
    wall = time.perf_counter() - start

    rows, results = [], {}
    for name, (ours, theirs) in groups.items():
        a, b = spread(ours["times"], "s"), spread(theirs["times"], "s")
        ratio = b["median_s"] / a["median_s"]
        results[name] = {"jaxdyn": a, "pysindy": b, "pysindy_over_jaxdyn": ratio,
                         "jaxdyn_compile_s": compile_s[name]}  # fmt: skip
        rows.append(f"| {name} | {1e3 * a['median_s']:.2f} | {1e3 * b['median_s']:.2f} | "
                    f"{ratio:.1f}× | {compile_s[name]:.1f} |")  # fmt: skip
    table = ("| task | jaxdyn (ms, median) | pysindy (ms, median) | pysindy / jaxdyn | "
             "jaxdyn compile (s) |\n|---|---:|---:|---:|---:|\n" + "\n".join(rows))  # fmt: skip
    print_table(table)
    record = {**record_header("sysid", "pysindy"), "reps": args.reps,
              "thresholds": args.thresholds, "trajectories": args.trajectories,
              "wall_s": wall, "results": results}  # fmt: skip
    write_record(args.out, record)


if __name__ == "__main__":
    main()
