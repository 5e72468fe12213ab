"""Hyperparameter sweeps of an experiment on Optuna (Akiba et al. 2019): `jaxdyn sweep`.

Each trial is a normal run directory (`trial-NNNN/`, as `jaxdyn run --out` makes) of the
experiment with the trial's parameters as config overrides. The TPE sampler proposes the
parameters; the median pruner stops a trial whose validation metric, reported after every
evaluation of its training (`train.eval_every`), is worse than the median of earlier trials at
the same step. The study lives in `study.db` (SQLite) inside the sweep directory, so a killed
sweep continues with `jaxdyn sweep --resume DIR`: finished trials are kept, a trial that was
running is marked failed and its parameters are run again.

The sweep directory holds `sweep.json` (what was asked), `config.yaml` (the experiment's
resolved config, the base of every trial), `study.db`, `trial-NNNN/`, `trials.csv` (one row per
trial, rewritten after each), `importance.md` (parameter importances, `optuna.importance`) and
`sweep.png` (the metric of each trial and the best so far).
"""

import csv
import dataclasses
import difflib
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from . import experiments
from ._evaluations import reporting_evaluations
from ._output import new_output_dir
from .config import ConfigError, to_yaml
from .plotting import Figure
from .train import read_metrics

__all__ = [
    "DISTRIBUTIONS",
    "Param",
    "SweepResult",
    "parse_param",
    "plot_sweep",
    "resume_sweep",
    "sweep",
    "write_importance",
    "write_trials_csv",
]

DISTRIBUTIONS = ("loguniform", "uniform", "int", "intuniform", "choice")
MIN_TRIALS_FOR_IMPORTANCE = 10  # fewer completed trials: importances are noted as unreliable
_SPEC = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$")


@dataclasses.dataclass(frozen=True)
class Param:
    """One swept config key: `key` (dotted, e.g. `train.lr`), its `distribution` (one of
    `DISTRIBUTIONS`; `intuniform` is `int`) and its `args` (`(low, high)`, or the choices)."""

    key: str
    distribution: str
    args: tuple

    def suggest(self, trial) -> Any:
        """The value an `optuna.Trial` proposes for this key."""
        if self.distribution == "choice":
            return trial.suggest_categorical(self.key, list(self.args))
        if self.distribution == "int":
            return trial.suggest_int(self.key, *self.args)
        return trial.suggest_float(self.key, *self.args, log=self.distribution == "loguniform")

    def extremes(self) -> list:
        """The values that bound this parameter (both ends, or every choice)."""
        return list(self.args)


def _value_text(value: Any) -> str:
    """A value as a `key=value` override writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def _parse_choice(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text.lower(), text)


def _bounds(spec: str, name: str, args: list[str], integer: bool) -> tuple:
    kind = int if integer else float
    try:
        low, high = (kind(a) for a in args)
    except ValueError:
        words = "integers" if integer else "numbers"
        raise ConfigError(
            f"bad --param {spec!r}: {name} needs two {words} LOW,HIGH, got ({', '.join(args)})"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"bad --param {spec!r}: {name} needs LOW < HIGH, got {low}, {high}")
    if name == "loguniform" and low <= 0:
        raise ConfigError(f"bad --param {spec!r}: loguniform needs 0 < LOW, got {low}")
    return low, high


def parse_param(spec: str) -> Param:
    """`KEY=DIST(ARGS)` as a `Param`: `loguniform(LOW,HIGH)` (`0 < LOW < HIGH`),
    `uniform(LOW,HIGH)`, `int(LOW,HIGH)` or `intuniform(LOW,HIGH)` (integers, both ends
    included), `choice(A,B,…)` (numbers, `true`/`false`/`null` or strings). A `ConfigError`
    naming the spec for anything else."""
    match = _SPEC.match(spec)
    if match is None:
        raise ConfigError(
            f"bad --param {spec!r}: expected KEY=DIST(ARGS), DIST one of {', '.join(DISTRIBUTIONS)}"
        )
    key, name, body = match.groups()
    if name not in DISTRIBUTIONS:
        hint = difflib.get_close_matches(name, DISTRIBUTIONS, n=1)
        hint = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigError(
            f"bad --param {spec!r}: unknown distribution '{name}'{hint}; "
            f"one of {', '.join(DISTRIBUTIONS)}"
        )
    args = [a.strip() for a in body.split(",")] if body.strip() else []
    if name == "choice":
        if not args or any(not a for a in args):
            raise ConfigError(f"bad --param {spec!r}: choice needs one or more values A,B,…")
        values = tuple(_parse_choice(a) for a in args)
        if len(set(map(repr, values))) < len(values):
            raise ConfigError(f"bad --param {spec!r}: choice lists a value twice")
        return Param(key, "choice", values)
    if len(args) != 2:
        raise ConfigError(f"bad --param {spec!r}: {name} needs two values LOW,HIGH")
    integer = name in ("int", "intuniform")
    return Param(key, "int" if integer else name, _bounds(spec, name, args, integer))


def _check_params(config: Path, params: Sequence[Param], overrides: Sequence[str]) -> None:
    """Every parameter is a config key that accepts its extreme values (a `ConfigError`
    naming the parameter otherwise), before any trial runs."""
    keys = [p.key for p in params]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(f"bad --param: '{key}' is swept twice")
        if any(o.partition("=")[0] == key for o in overrides):
            raise ConfigError(f"bad --param: '{key}' is both swept and overridden")
    for param in params:
        for value in param.extremes():
            try:
                experiments.load(config, [*overrides, f"{param.key}={_value_text(value)}"])
            except ConfigError as error:
                raise ConfigError(f"bad --param for '{param.key}': {error}") from None


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """What `sweep` returns: the sweep directory, the best trial's number, value, parameters and
    run directory (`None` when no trial completed), and the count of trials by state."""

    out: Path
    best_trial: int | None
    best_value: float | None
    best_params: dict
    best_run_dir: Path | None
    counts: dict


class _MissingMetric(ConfigError):
    """A trial's run produced no value for the sweep's metric (a wrong `--metric`): the
    sweep stops after that trial, its records kept."""


def _metric_value(summary: dict, run_dir: Path, metric: str) -> float:
    """The metric in the run's `summary.json`, else its last value in `metrics.jsonl`."""
    value = summary.get(metric)
    if value is None:
        rows = [row for row in read_metrics(run_dir / "metrics.jsonl") if metric in row]
        value = rows[-1][metric] if rows else None
    if value is None:
        known = sorted(k for k, v in summary.items() if isinstance(v, float))
        raise _MissingMetric(f"{run_dir} reports no '{metric}' (its numbers: {', '.join(known)})")
    return float(value)


def _objective(out: Path, spec: dict, params: list[Param]):
    """The Optuna objective: one run of the experiment with the trial's overrides."""
    import optuna

    def objective(trial: "optuna.Trial") -> float:
        values = {p.key: p.suggest(trial) for p in params}
        overrides = [f"{k}={_value_text(v)}" for k, v in values.items()]
        experiment, cfg = experiments.load(out / "config.yaml", overrides)
        run_dir = out / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", run_dir.name)

        def report(step: int, metrics: dict[str, float]) -> None:
            if spec["metric"] in metrics and math.isfinite(metrics[spec["metric"]]):
                trial.report(metrics[spec["metric"]], step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at step {step}")

        with reporting_evaluations(report):
            try:
                _, summary = experiments.execute(experiment, cfg, out=run_dir)
            except experiments.RunFailed as failure:
                if isinstance(failure.__cause__, optuna.TrialPruned):
                    raise failure.__cause__ from None
                raise
        return _metric_value(summary, run_dir, spec["metric"])

    return objective


def _study(out: Path, spec: dict, *, create: bool):
    """The Optuna study in `out/study.db`: TPE sampler seeded by `spec["seed"]` (plus the
    number of trials the study holds), median pruner."""
    import optuna

    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    # A resumed sweep seeds its sampler past the trials it has, lest it propose the first
    # trials' parameters again.
    done = 0 if create else len(optuna.load_study(study_name="sweep", storage=storage).trials)
    return optuna.create_study(
        study_name="sweep",
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=spec["seed"] + done),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=spec["startup_trials"]),
        direction="minimize" if spec["mode"] == "min" else "maximize",
        load_if_exists=not create,
    )


def _requeue_interrupted(study) -> int:
    """Trials left running by a killed sweep are marked failed and their parameters queued
    to run again; returns how many."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return len(stale)


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def write_trials_csv(study, out: Path, params: Sequence[Param]) -> Path:
    """`out/trials.csv`: number, state, value, the parameters, duration and run directory of
    every trial."""
    path = out / "trials.csv"
    keys = [p.key for p in params]
    with open(path.with_suffix(".tmp"), "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["number", "state", "value", *keys, "duration_s", "run_dir"])
        for t in study.get_trials(deepcopy=False):
            duration = t.duration.total_seconds() if t.duration is not None else ""
            writer.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                             *(t.params.get(k, "") for k in keys), duration,
                             t.user_attrs.get("run_dir", "")])  # fmt: skip
    path.with_suffix(".tmp").replace(path)
    return path


def write_importance(study, out: Path) -> Path:
    """`out/importance.md`: the parameters' importances (`optuna.importance`, fANOVA) as a
    table, with a note when too few trials completed for them to mean much."""
    import optuna
    from optuna.trial import TrialState

    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    lines = ["# Parameter importance", ""]
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as error:  # too few completed trials, or one value each
        lines.append(f"Not computed from {done} completed trial(s): {error}")
    else:
        lines += ["| parameter | importance |", "|---|---:|"]
        lines += [f"| {name} | {value:.3f} |" for name, value in importances.items()]
        if done < MIN_TRIALS_FOR_IMPORTANCE:
            note = f"Only {done} completed trials: with fewer than {MIN_TRIALS_FOR_IMPORTANCE}"
            lines += ["", note + " these importances are not reliable."]
    path = out / "importance.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def plot_sweep(study, out: Path, metric: str) -> Path:
    """`out/sweep.png`: the metric of each completed trial and the best so far."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    numbers = [t.number for t in trials]
    values = [t.value for t in trials]
    better = min if study.direction.name == "MINIMIZE" else max
    best = [better(values[: i + 1]) for i in range(len(values))]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(numbers, values, "o", label="trial")
    ax.step(numbers, best, where="post", color="C1", label="best so far")
    ax.set(xlabel="trial", ylabel=metric, title=f"sweep: {metric} ({len(values)} completed)")
    ax.legend()
    fig.tight_layout()
    path = out / "sweep.png"
    fig.savefig(path, dpi=120)
    return path


def _run_study(out: Path, spec: dict, params: list[Param], *, create: bool, jobs: int):
    """Create or load the study, run trials until `spec["trials"]` have finished (completed
    or pruned), then write the records."""
    study = _study(out, spec, create=create)
    _requeue_interrupted(study)
    remaining = spec["trials"] - _finished(study)
    if remaining > 0:
        study.optimize(
            _objective(out, spec, params), n_trials=remaining, n_jobs=jobs,
            catch=(experiments.RunFailed,),
            callbacks=[lambda study, _trial: write_trials_csv(study, out, params)],
        )  # fmt: skip
    write_trials_csv(study, out, params)
    write_importance(study, out)
    plot_sweep(study, out, spec["metric"])
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    try:
        best = study.best_trial
    except ValueError:  # no completed trial
        return SweepResult(out, None, None, {}, None, counts)
    run_dir = out / best.user_attrs["run_dir"]
    return SweepResult(out, best.number, best.value, best.params, run_dir, counts)


def sweep(
    config: str | Path,
    params: Sequence[str | Param],
    *,
    trials: int,
    metric: str = "validation.loss",
    mode: Literal["min", "max"] = "min",
    out: str | Path | None = None,
    jobs: int = 1,
    seed: int = 0,
    overrides: Sequence[str] = (),
    startup_trials: int = 5,
) -> SweepResult:
    """Tune the config keys `params` (specs `KEY=DIST(ARGS)`, see `parse_param`) of the
    experiment `config` (a YAML path) over `trials` trials, each a run with `overrides` and
    the trial's values, scored by `metric` (a key of the run's `summary.json`, else of its
    `metrics.jsonl`), minimised or maximised (`mode`). `jobs` trials run at once (threads).
    Trials are pruned on the run's validation metric after `startup_trials` trials.

    Everything is checked before the first trial (a `ConfigError` naming the bad spec, key or
    value). The sweep directory `out` (default `sweeps/<experiment>/<date-time>`) must not
    hold a sweep already; `resume_sweep(out)` continues one.
    """
    params = [p if isinstance(p, Param) else parse_param(p) for p in params]
    if not params:
        raise ConfigError("sweep needs at least one --param KEY=DIST(ARGS)")
    if mode not in ("min", "max"):
        raise ConfigError(f"sweep: mode must be 'min' or 'max', got {mode!r}")
    for name, value in (("trials", trials), ("jobs", jobs), ("startup_trials", startup_trials)):
        if not isinstance(value, int) or value < (0 if name == "startup_trials" else 1):
            raise ConfigError(f"sweep: {name} must be a positive int, got {value!r}")
    config = Path(config)
    experiment, cfg = experiments.load(config, overrides)
    _check_params(config, params, overrides)
    out = Path(out) if out is not None else new_output_dir("sweeps", experiment.name)
    if (out / "study.db").exists() or (out / "sweep.json").exists():
        raise ConfigError(f"{out} already holds a sweep: continue it with --resume {out}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(to_yaml(cfg))  # the base of every trial
    spec = {"config": str(config), "params": [_spec_text(p) for p in params], "metric": metric,
            "mode": mode, "trials": trials, "seed": seed, "overrides": list(overrides),
            "startup_trials": startup_trials}  # fmt: skip
    (out / "sweep.json").write_text(json.dumps(spec, indent=2) + "\n")
    return _run_study(out, spec, params, create=True, jobs=jobs)


def resume_sweep(out: str | Path, *, trials: int | None = None, jobs: int = 1) -> SweepResult:
    """Continue the sweep in `out` (killed or finished) up to `trials` finished trials (default:
    the number it was started with); finished trials are not run again."""
    out = Path(out)
    if not (out / "sweep.json").is_file() or not (out / "study.db").is_file():
        raise ConfigError(f"cannot resume: {out} holds no sweep (no sweep.json and study.db)")
    spec = json.loads((out / "sweep.json").read_text())
    if trials is not None:
        if not isinstance(trials, int) or trials < 1:
            raise ConfigError(f"sweep: trials must be a positive int, got {trials!r}")
        spec["trials"] = trials
        (out / "sweep.json").write_text(json.dumps(spec, indent=2) + "\n")
    params = [parse_param(p) for p in spec["params"]]
    return _run_study(out, spec, params, create=False, jobs=jobs)


def _spec_text(param: Param) -> str:
    args = ",".join(_value_text(a) for a in param.args)
    return f"{param.key}={param.distribution}({args})"
