"""Running an experiment into a run directory: resolved config, summary, versions."""

import datetime
import itertools
import json
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .._environment import machine, versions
from ..config import ConfigError, load_config, read_experiment_name, to_yaml
from ._registry import Experiment, get

__all__ = ["execute", "load"]


def load(path: str | Path, overrides=()) -> tuple[Experiment, DictConfig]:
    """The experiment a config file names, and the config validated against its schema."""
    experiment = get(read_experiment_name(path))
    cfg = load_config(path, experiment.schema, overrides)
    if cfg.experiment != experiment.name:
        raise ConfigError("config key 'experiment' cannot be overridden; edit the config file")
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


def _new_run_dir(name: str) -> Path:
    """`runs/<name>/<date-time>`, with a suffix if a run started in the same second."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in itertools.count():
        run_dir = Path("runs") / name / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            return run_dir
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


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
    if resume:
        run_dir = Path(out)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"cannot resume: {run_dir} holds no run (no config.yaml)")
        _check_resumable(OmegaConf.load(run_dir / "config.yaml"), cfg, run_dir)
    elif out is None:
        run_dir = _new_run_dir(experiment.name)
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
