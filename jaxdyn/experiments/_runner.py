"""Running an experiment into a run directory: resolved config, summary, versions."""

import datetime
import json
import time
from pathlib import Path

from omegaconf import DictConfig

from .._environment import machine, versions
from ..config import ConfigError, load_config, read_experiment_name, to_yaml
from ._registry import Experiment, get

__all__ = ["execute", "load"]


def load(path: str | Path, overrides=()) -> tuple[Experiment, DictConfig]:
    """The experiment a config file names, and the config validated against its schema."""
    experiment = get(read_experiment_name(path))
    return experiment, load_config(path, experiment.schema, overrides)


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
    """
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / experiment.name / stamp
    run_dir = Path(out)
    if resume and not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"cannot resume: {run_dir} holds no run (no config.yaml)")
    if not resume and (run_dir / "checkpoint").exists():
        raise ConfigError(
            f"run directory {run_dir} already holds a run: resume it with --resume {run_dir} "
            "or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    start = time.perf_counter()
    summary = experiment.run(cfg, run_dir, resume)
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
