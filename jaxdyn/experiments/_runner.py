"""Running an experiment into a run directory: resolved config, summary, versions, and the
full traceback of a run that fails."""

import datetime
import json
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .._environment import machine, versions
from .._output import new_output_dir
from ..config import ConfigError, load_config, read_experiment_name, to_yaml
from ._registry import Experiment, get

__all__ = ["RunFailed", "RunInterrupted", "execute", "load"]


class RunFailed(RuntimeError):
    """An experiment failed after it started. The message is one line naming the error and
    the run directory, whose `error.log` holds the full traceback; the metrics written so far
    and the last checkpoint stay there."""

    def __init__(self, run_dir: Path, error: BaseException):
        first = str(error).splitlines()[0] if str(error) else ""
        super().__init__(
            f"run failed in {run_dir}: {type(error).__name__}: {first} (full traceback in "
            f"{run_dir / 'error.log'}; metrics and the last checkpoint are kept: "
            f"`jaxdyn run --resume {run_dir}` continues once the cause is fixed)"
        )
        self.run_dir = run_dir


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


def _flat(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


def _check_resumable(saved: DictConfig, cfg: DictConfig, run_dir: Path) -> None:
    """A resumed run must be the interrupted one: only `train.steps` may change, and only
    with a constant learning rate (a schedule's horizon is `train.steps`)."""
    old = _flat(OmegaConf.to_container(saved, resolve=True))
    new = _flat(OmegaConf.to_container(cfg, resolve=True))
    allowed = {"train.steps"} if cfg.train.schedule == "constant" else set()
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key) and key not in allowed:
            raise ConfigError(
                f"cannot resume {run_dir} with config key '{key}' changed "
                f"({old.get(key)!r} -> {new.get(key)!r}); only train.steps may change, and "
                "only with train.schedule=constant. Start a new run instead"
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
    elif out is None:
        run_dir = new_output_dir("runs", experiment.name)
    else:
        run_dir = Path(out)
        if (run_dir / "config.yaml").exists() or (run_dir / "checkpoint").exists():
            raise ConfigError(
                f"run directory {run_dir} already holds a run: resume it with --resume "
                f"{run_dir} or choose another --out"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    start = time.perf_counter()
    try:
        summary = experiment.run(cfg, run_dir, resume)
    except KeyboardInterrupt:
        raise RunInterrupted(run_dir) from None
    except Exception as error:  # any failure of the run: record it, keep what was written
        (run_dir / "error.log").write_text("".join(traceback.format_exception(error)))
        raise RunFailed(run_dir, error) from error
    record = {
        "experiment": experiment.name,
        **summary,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "resumed": resume,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
    }
    (run_dir / "summary.json").write_text(json.dumps(record, indent=2) + "\n")
    return run_dir, record
