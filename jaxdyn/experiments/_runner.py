"""Running an experiment into a run directory: resolved config, summary, versions, and the
full traceback of a run that fails."""

import copy
import datetime
import itertools
import json
import re
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, read_write

from .._environment import machine, versions
from .._output import SEEDS_FILE, new_output_dir, read_seeds
from ..config import ConfigError, load_config, read_experiment_name, to_yaml
from ._records import flatten, seed_statistics
from ._registry import Experiment, get

__all__ = ["RunFailed", "RunInterrupted", "execute", "execute_seeds", "load"]


class RunFailed(RuntimeError):
    """An experiment failed after it started. The message is one line naming the error and
    the run directory, whose `error.log` holds the full traceback; the metrics written so far
    and the last checkpoint stay there."""

    def __init__(self, run_dir: Path, error: BaseException, resume_dir: Path | None = None):
        first = _message_line(error)
        super().__init__(
            f"run failed in {run_dir}: {type(error).__name__}: {first} (full traceback in "
            f"{run_dir / 'error.log'}; metrics and the last checkpoint are kept: "
            f"`jaxdyn run --resume {resume_dir or run_dir}` continues once the cause is fixed)"
        )
        self.run_dir = run_dir


def _message_line(error: BaseException) -> str:
    """The line of `error`'s message that says what went wrong: its first line, or for a check
    raised inside a compiled program (Equinox's runtime errors open with a note about stacks)
    the line that carries the check's own message."""
    lines = str(error).splitlines()
    for line in lines:
        check = _EQX_CHECK.match(line)
        if check:
            return check.group(1)
    return lines[0] if lines else ""


# Under `eqx.filter_jit`: "equinox.EquinoxRuntimeError: MSG"; under `jax.jit`, in the
# JaxRuntimeError of the failed callback: "_EquinoxRuntimeError: MSG".
_EQX_CHECK = re.compile(r"(?:equinox\.)?_?EquinoxRuntimeError: (.+)")


class RunInterrupted(KeyboardInterrupt):
    """The run was interrupted (Ctrl-C); the message says how to continue it."""

    def __init__(self, run_dir: Path):
        super().__init__(f"interrupted; `jaxdyn run --resume {run_dir}` continues the run")
        self.run_dir = run_dir


def load(path: str | Path, overrides=()) -> tuple[Experiment, DictConfig]:
    """The experiment a config file names, and the config validated against its schema and
    the experiment's own `check` (so that config mistakes stop before any work starts)."""
    experiment = get(read_experiment_name(path))
    cfg = load_config(path, experiment.schema, overrides)
    if cfg.experiment != experiment.name:
        raise ConfigError("config key 'experiment' cannot be overridden; edit the config file")
    experiment.check(cfg)
    return experiment, cfg


def _run_dir(experiment: Experiment, out: str | Path | None) -> Path:
    """A new run directory: `out`, which must not hold a run, or `runs/<experiment>/<time>`."""
    if out is None:
        return new_output_dir("runs", experiment.name)
    run_dir = Path(out)
    if (run_dir / "config.yaml").exists() or (run_dir / "checkpoint").exists():
        raise ConfigError(
            f"run directory {run_dir} already holds a run: resume it with --resume "
            f"{run_dir} or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _check_resumable(
    saved: DictConfig, cfg: DictConfig, run_dir: Path, *, extend: bool = True
) -> None:
    """A resumed run must be the interrupted one: only `train.steps` may change, only with a
    constant learning rate (a schedule's horizon is `train.steps`), and only with `extend`
    (a multi-seed run allows no change: its finished seeds would not be comparable)."""
    old = flatten(OmegaConf.to_container(saved, resolve=True))
    new = flatten(OmegaConf.to_container(cfg, resolve=True))
    constant = "train" in cfg and cfg.train.get("schedule") == "constant"
    allowed = {"train.steps"} if extend and constant else set()
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key) and key not in allowed:
            rule = "only train.steps may change, and only with train.schedule=constant"
            if not extend:
                rule = "a multi-seed run resumes with its config unchanged"
            raise ConfigError(
                f"cannot resume {run_dir} with config key '{key}' changed "
                f"({old.get(key)!r} -> {new.get(key)!r}); {rule}. Start a new run instead"
            )


def execute(
    experiment: Experiment,
    cfg: DictConfig,
    *,
    out: str | Path | None = None,
    resume: bool = False,
) -> tuple[Path, dict]:
    """Run `experiment` with `cfg` in a run directory and write its records there.

    The directory (default `runs/<experiment>/<date-time>`) receives `config.yaml` (the
    resolved config), `metrics.jsonl` and `checkpoint/` (from training), the experiment's
    figures, and `summary.json` (its metrics, wall time, versions, machine). With
    `resume=True` an interrupted run in `out` continues from its last checkpoint.

    **Raises:** `ConfigError` for a run directory that cannot be used (nothing has started);
    `RunFailed` when the experiment raises, after writing its traceback to `error.log`.
    """
    if resume:
        run_dir = Path(out)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"cannot resume: {run_dir} holds no run (no config.yaml)")
        _check_resumable(OmegaConf.load(run_dir / "config.yaml"), cfg, run_dir)
    else:
        run_dir = _run_dir(experiment, out)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    start = time.perf_counter()
    try:
        summary = experiment.run(cfg, run_dir, resume)
    except KeyboardInterrupt:
        raise RunInterrupted(run_dir) from None
    except Exception as error:  # any failure of the run: record it, keep what was written
        (run_dir / "error.log").write_text("".join(traceback.format_exception(error)))
        raise RunFailed(run_dir, error) from error
    (run_dir / "error.log").unlink(missing_ok=True)  # a failure that resuming got past
    record = {
        "experiment": experiment.name,
        **summary,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "resumed": resume,
        **_provenance(),
    }
    (run_dir / "summary.json").write_text(json.dumps(record, indent=2) + "\n")
    return run_dir, record


def _provenance() -> dict:
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
    }


_NOT_STATISTICS = ("resumed", "date", "machine", "versions")


def _run_seeds(experiment: Experiment, cfg: DictConfig, seeds: list[int], run_dir: Path) -> dict:
    """`{seed: summary}`: the finished seeds read back, the others run (an interrupted one
    resumed) in `run_dir/seed_<s>`."""
    per_seed = {}
    for i, seed in enumerate(seeds):
        seed_dir = run_dir / f"seed_{seed}"
        if (seed_dir / "summary.json").is_file():
            per_seed[seed] = json.loads((seed_dir / "summary.json").read_text())
            continue
        print(f"jaxdyn: seed {seed} ({i + 1} of {len(seeds)}) in {seed_dir}", file=sys.stderr)
        seed_cfg = copy.deepcopy(cfg)
        with read_write(seed_cfg):
            seed_cfg.seed = seed
        started = (seed_dir / "config.yaml").is_file()
        try:
            per_seed[seed] = execute(experiment, seed_cfg, out=seed_dir, resume=started)[1]
        except RunFailed as failure:
            raise RunFailed(seed_dir, failure.__cause__, resume_dir=run_dir) from failure
    return per_seed


def execute_seeds(
    experiment: Experiment,
    cfg: DictConfig,
    seeds: Sequence[int],
    *,
    out: str | Path | None = None,
    resume: bool = False,
) -> tuple[Path, dict]:
    """Run `experiment` once per seed (config key `seed`), each run in `out/seed_<s>` (as
    `execute` writes it), then write `out/summary.json`: every figure that the runs report
    as its mean, sample standard deviation and per-seed values (`seed_statistics`), and the
    runs' own summaries under `per_seed`.

    The seeds run one after the other. With `resume=True` the finished seeds (those with a
    `summary.json`) are read back, an interrupted one continues from its checkpoint and the
    rest start; the config must be the one the directory was started with.

    **Raises:** `ConfigError` for bad seeds or an unusable directory (nothing has started);
    `RunFailed` naming the failed seed's directory, resumable through `out`.
    """
    seeds = [int(s) for s in seeds]
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must be distinct non-negative integers, got {seeds}")
    inner = cfg.get("num_seeds", 1)  # seeds seed, …, seed + num_seeds - 1 inside each run
    ordered = sorted(seeds)
    if inner > 1 and any(b - a < inner for a, b in itertools.pairwise(ordered)):
        raise ConfigError(
            f"{experiment.name} runs num_seeds={inner} seeds from its seed itself: with "
            f"--seeds {seeds} the runs' seeds overlap; give num_seeds=1, or seeds at least "
            f"{inner} apart (each run is then an independent repeat of the {inner}-seed protocol)"
        )
    if resume:
        run_dir = Path(out)
        if read_seeds(run_dir) != seeds:
            raise ConfigError(f"cannot resume: {run_dir} holds no run of seeds {seeds}")
        _check_resumable(OmegaConf.load(run_dir / "config.yaml"), cfg, run_dir, extend=False)
    else:
        run_dir = _run_dir(experiment, out)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        (run_dir / SEEDS_FILE).write_text(json.dumps({"seeds": seeds}) + "\n")
    try:  # Ctrl-C in a seed's run or between runs: resumable through `run_dir`
        per_seed = _run_seeds(experiment, cfg, seeds, run_dir)
    except KeyboardInterrupt:
        raise RunInterrupted(run_dir) from None
    runs = {
        seed: {k: v for k, v in summary.items() if k not in _NOT_STATISTICS}
        for seed, summary in per_seed.items()
    }
    record = {
        "experiment": experiment.name,
        "seeds": seeds,
        "statistics": seed_statistics(runs),
        "per_seed": {str(seed): summary for seed, summary in runs.items()},
        **_provenance(),
    }
    (run_dir / "summary.json").write_text(json.dumps(record, indent=2) + "\n")
    return run_dir, record
