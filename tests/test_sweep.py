"""`jaxdyn sweep`: parameter specs, and a quickstart sweep interrupted after 2 trials and
resumed."""

import csv
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_experiments import QUICKSTART_EULER

from jaxdyn.cli import main
from jaxdyn.experiments._training import _initial_state, _rate_in_state
from jaxdyn.sweep import Param, parse_param
from jaxdyn.train import fit, make_optimizer

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
# Tiny trials: the quickstart smoke's fixed Euler steps through the direct adjoint (a third
# cheaper to trace and compile than the checkpointed one; the sweep is not about the adjoint),
# 4 steps in chunks of 2 with a validation after each chunk (the pruning reports), no figures.
# Trials that differ in lr alone share one compiled chunk.
TINY = ["data.num_points=50", "data.t1=2.0", "data.num_validation=1", "data.num_test=1",
        "model.width=4", "train.batch_size=4", "train.steps=4", "train.chunk=2",
        "train.eval_every=1", *QUICKSTART_EULER, "figures=false"]  # fmt: skip


@pytest.mark.parametrize(
    "spec, param",
    [
        ("train.lr=loguniform(1e-4,1e-2)", Param("train.lr", "loguniform", (1e-4, 1e-2))),
        ("train.lr = uniform( 0.1 , 0.5 )", Param("train.lr", "uniform", (0.1, 0.5))),
        ("model.depth=int(1,3)", Param("model.depth", "int", (1, 3))),
        ("model.depth=intuniform(1,3)", Param("model.depth", "int", (1, 3))),
        ("model.width=choice(32,64)", Param("model.width", "choice", (32, 64))),
        (
            "solve.solver=choice(tsit5,'dopri5')",
            Param("solve.solver", "choice", ("tsit5", "dopri5")),
        ),
        ("model.time=choice(true,false)", Param("model.time", "choice", (True, False))),
    ],
)
def test_parse_param(spec, param):
    assert parse_param(spec) == param


@pytest.mark.parametrize(
    "param, message",
    [
        ("train.lr", "bad --param 'train.lr': expected KEY=DIST(ARGS)"),
        ("train.lr=logunifrom(1e-4,1e-2)", "unknown distribution 'logunifrom' (did you mean "),
        ("train.lr=loguniform(1e-4)", "loguniform needs two values LOW,HIGH"),
        ("train.lr=loguniform(0,1e-2)", "loguniform needs 0 < LOW, got 0.0"),
        ("train.lr=uniform(a,1)", "uniform needs two numbers LOW,HIGH, got (a, 1)"),
        ("train.lr=uniform(2,1)", "uniform needs LOW < HIGH, got 2.0, 1.0"),
        ("model.width=int(8,16.5)", "int needs two integers LOW,HIGH"),
        ("model.width=choice()", "choice needs one or more values"),
        ("model.widht=choice(8,16)", "unknown config key 'model.widht' (did you mean 'width'?)"),
        ("model.width=choice(8,-1)", "'model.width': -1 is not >= 1"),
    ],
)
def test_bad_param_is_one_line_and_exit_2_before_any_work(param, message, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", QUICKSTART, "--param", "train.lr=loguniform(1e-4,1e-2)", "--param", param]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_the_rate_in_the_optimiser_state_changes_no_bit():
    """`fit_from_config`'s default optimiser keeps lr in its state (so lr trials share one
    compiled chunk): the same steps as `make_optimizer`'s, bit for bit (adamw: the rate also
    scales the weight decay; cosine: the schedule multiplies the rate)."""
    model = eqx.nn.MLP(2, 2, 8, 1, key=jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (32, 2))

    def loss(m, b, key):
        return jnp.mean((jax.vmap(m)(b) - b[:, ::-1]) ** 2)

    options = dict(steps=20, batch_size=8, key=jax.random.key(2), chunk=20, progress=False)
    plain = fit(loss, model, xs, make_optimizer("adamw", 3e-3, schedule="cosine", steps=20),
                **options)  # fmt: skip
    shared = _rate_in_state("adamw", "cosine", 20)
    ours = fit(loss, model, xs, shared, opt_state=_initial_state(shared, model, 3e-3), **options)
    assert np.array_equal(plain.losses, ours.losses)
    for a, b in zip(jax.tree.leaves(plain.model), jax.tree.leaves(ours.model), strict=True):
        assert np.array_equal(a, b)


def _rows(out: Path) -> list[dict]:
    path = out / "trials.csv"
    return list(csv.DictReader(path.read_text().splitlines())) if path.exists() else []


def _complete(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["state"] == "COMPLETE"]


def _interrupt_a_trial(out: Path) -> float:
    """Leave the study as a sweep killed during its third trial does: a RUNNING trial in
    `study.db` (its process gone). Returns the trial's learning rate."""
    import optuna

    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}")
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)})
    return trial.params["train.lr"]


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    """A 4-trial quickstart sweep stopped after 2 trials, with a third left running (the
    state a kill leaves in the study), resumed: 4 completed trials, the first 2 not run again,
    the interrupted one recorded as failed and its parameters run again. In one process, so
    that the trials share one compiled chunk (a SIGKILLed subprocess and an in-process resume
    compiled everything twice: 90 s on the shared 2-core VM)."""
    out = tmp_path / "sweep"
    argv = ["sweep", QUICKSTART, *TINY, "--param", "train.lr=loguniform(1e-3,1e-2)",
            "--trials", "2", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    before = _complete(_rows(out))
    assert len(before) == 2
    stamps = {row["run_dir"]: (out / row["run_dir"] / "summary.json").stat().st_mtime_ns
              for row in before}  # fmt: skip
    interrupted = _interrupt_a_trial(out)

    assert main(["sweep", "--resume", str(out), "--trials", "4"]) == 0
    rows = _rows(out)
    complete = _complete(rows)
    assert [row["number"] for row in rows] == ["0", "1", "2", "3", "4"]
    assert [row["state"] for row in rows] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE",
                                              "COMPLETE"]  # fmt: skip
    for run_dir, stamp in stamps.items():  # the first two trials were not run again
        assert (out / run_dir / "summary.json").stat().st_mtime_ns == stamp
    assert float(rows[3]["train.lr"]) == interrupted  # the interrupted trial, run again
    for row in complete:
        summary = json.loads((out / row["run_dir"] / "summary.json").read_text())
        assert float(row["value"]) == summary["validation.loss"] and summary["steps"] == 4
    assert len({row["train.lr"] for row in complete}) == 4
    assert (out / "sweep.png").stat().st_size > 0
    importance = (out / "importance.md").read_text()
    assert "| train.lr |" in importance and "Only 4 completed trials" in importance
