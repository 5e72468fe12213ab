"""Prediction time of models trained with and without a solver regulariser (issue 19 §3).

What is measured: the wall time of the test split's prediction solves (one adaptive solve per
sample, `evaluation.*` of the run's config, jitted; `jax.vmap` over the samples) of the final
models of a finished `solver_regularisation*` run, for the unregularised configuration and the
one the run chose on validation (`best_regulariser` of its `summary.json`), every seed of each.
The models are read back from their checkpoints (`experiments._regularisation.train` resumed
at its last step: no training). Contenders are timed round-robin in a shuffled order
(`_common.time_round_robin`), so the machine's load falls on all alike. Reported per
configuration: median and quartiles of the time over seeds and repetitions, the ratio to the
unregularised median, and the mean NFE.

Run: `python benchmarks/regularisation_prediction.py RUN_DIR [--reps 10]`, e.g. `RUN_DIR =
runs/results/solver_regularisation_digits-<commit>/seed_0`. Writes
`benchmarks/out/regularisation_prediction.json`.
"""

import argparse
import importlib
import json
from pathlib import Path

import equinox as eqx
import jax
from _common import print_table, record_header, spread, time_round_robin, write_record

from jaxdyn import experiments
from jaxdyn.experiments._regularisation import train

OUT = Path(__file__).resolve().parent / "out" / "regularisation_prediction.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    summary = json.loads((args.run_dir / "summary.json").read_text())
    experiment, cfg = experiments.load(args.run_dir / "config.yaml", [])
    task = importlib.import_module(experiment.run.__module__).build_task(cfg)
    best = summary["best_regulariser"]
    if best is None:
        raise SystemExit(f"{args.run_dir}: the run chose no regulariser")
    chosen = summary["regularisers"][best]
    configurations = {"none": ("none", 0.0), best: (chosen["kind"], chosen["weight"])}
    predict = eqx.filter_jit(task.evaluators["test"])
    contenders, nfe = [], {}
    for name, (kind, weight) in configurations.items():
        for seed in summary["seeds"]:
            result = train(cfg, task, kind, weight, seed, args.run_dir, resume=True)
            if int(result.step) != cfg.train.steps:
                raise SystemExit(f"{args.run_dir}: {name} seed {seed} did not finish training")
            model = result.model

            def run(model=model):
                return jax.block_until_ready(predict(model, jax.random.key(0)))

            out = run()  # compiles (one program: the models share a structure)
            nfe.setdefault(name, []).append(float(out["nfe"]))
            contenders.append({"name": f"{name}/seed_{seed}", "config": name, "run": run})
    time_round_robin(contenders, args.reps, args.warmup)

    results, rows = {}, []
    for name in configurations:
        times = [t for c in contenders if c["config"] == name for t in c["times"]]
        results[name] = {**spread(times, "s"), "mean_nfe": sum(nfe[name]) / len(nfe[name])}
    plain = results["none"]["median_s"]
    for name, r in results.items():
        r["ratio_to_unregularised"] = r["median_s"] / plain
        rows.append(f"| {name} | {r['mean_nfe']:.1f} | {1e3 * r['median_s']:.1f} | "
                    f"{1e3 * r['q25_s']:.1f}–{1e3 * r['q75_s']:.1f} | "
                    f"{r['ratio_to_unregularised']:.2f}× |")  # fmt: skip
    table = ("| configuration | mean NFE | test prediction (ms, median) | IQR (ms) | vs none |\n"
             "|---|---:|---:|---:|---:|\n" + "\n".join(rows))  # fmt: skip
    print_table(table)
    record = {**record_header("regularisation_prediction"), "run_dir": str(args.run_dir),
              "reps": args.reps, "task": summary["task"], "results": results}  # fmt: skip
    write_record(args.out, record)


if __name__ == "__main__":
    main()
