"""The `jaxdyn` command: `jaxdyn run | sweep | list | show`.

Exit status:

- 2: a usage or config mistake found before any work starts (a missing file, an unknown key, a
  wrong type, a value or combination of values the experiment refuses): one line naming it.
- 1: the run failed after it started: one line naming the error and the run directory, whose
  `error.log` holds the full traceback; its metrics and last checkpoint are kept.
- 130: interrupted (Ctrl-C); `jaxdyn run --resume DIR` continues.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ._output import read_seeds
from .config import ConfigError, closest, to_yaml

__all__ = ["main"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _config_dirs() -> list[Path]:
    """Where config names are looked up: ./configs, then the repository's configs/."""
    dirs = [Path.cwd() / "configs", Path(__file__).resolve().parent.parent / "configs"]
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def _resolve_config(name: str) -> Path:
    """A config path, or a config name looked up in `_config_dirs()`."""
    path = Path(name)
    if path.is_file():
        return path
    for directory in _config_dirs():
        candidate = directory / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in _config_dirs() for p in d.glob("*.yaml")})
    raise ConfigError(f"config file not found: {name}{closest(path.stem, known)}")


def _cmd_list(_args) -> int:
    from . import experiments

    configs: dict[str, list[str]] = {}
    for directory in _config_dirs():
        for path in sorted(directory.glob("*.yaml")):
            try:
                name = experiments.load(path)[0].name
            except Exception:  # any broken file is listed as invalid, not fatal
                name = "(invalid)"
            configs.setdefault(name, []).append(str(path))
    for name in experiments.names():
        experiment = experiments.get(name)
        print(f"{name:24s} {experiment.description}")
        for path in configs.get(name, []):
            print(f"{'':24s}   {path}")
    for path in configs.get("(invalid)", []):
        print(f"{'(invalid config)':24s}   {path}")
    return 0


def _cmd_show(args) -> int:
    from . import experiments

    _, cfg = experiments.load(_resolve_config(args.config), args.overrides)
    print(to_yaml(cfg), end="")
    return 0


def _join_processes(args) -> None:
    """`jax.distributed.initialize` for a multi-process run (`--coordinator HOST:PORT
    --num-processes N --process-id I`, or `--distributed` to read them from the environment
    as SLURM sets them), before any JAX computation; nothing for a single-process run."""
    given = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and all(v is None for v in given):
        return
    if args.distributed and any(v is not None for v in given):
        raise ConfigError("give --distributed (from the environment) or --coordinator, "
                          "--num-processes and --process-id, not both")  # fmt: skip
    host, _, port = (args.coordinator or "h:0").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    from .train import initialize_distributed

    try:
        initialize_distributed(*given)
    except (ValueError, RuntimeError) as error:  # bad values, no cluster, JAX already started
        raise ConfigError(str(error).replace("initialize_distributed: ", "")) from None


def _execute(experiments, experiment, cfg, out, resume: bool) -> tuple[Path, dict]:
    """`experiments.execute` in `out` on process 0; on the other processes of a multi-process
    run in a scratch directory deleted afterwards, so that only process 0 writes the run's
    files (`fit` hands the others a resumed state from process 0)."""
    from .train import is_primary

    if is_primary():
        return experiments.execute(experiment, cfg, out=out, resume=resume)
    with tempfile.TemporaryDirectory(prefix="jaxdyn-process-") as scratch:
        if resume:
            (Path(scratch) / "config.yaml").write_text(to_yaml(cfg))
        return experiments.execute(experiment, cfg, out=scratch, resume=resume)


def _seeds(args) -> list[int] | None:
    """The seeds of a multi-seed run (`--seeds`, or those of the run directory resumed),
    checked before anything starts: one process runs them in turn, and each sets the config's
    `seed`."""
    if args.resume is not None and args.seeds is not None:
        raise ConfigError("--resume continues the seeds its directory was started with; "
                          "drop --seeds")  # fmt: skip
    seeds = args.seeds if args.resume is None else read_seeds(args.resume)
    if seeds is None:
        return None
    if any(o.split("=", 1)[0].strip() == "seed" for o in args.overrides):
        raise ConfigError("a multi-seed run sets the config key seed per run: drop the "
                          "override seed=…")  # fmt: skip
    flags = (args.distributed, args.coordinator, args.num_processes, args.process_id)
    if any(flag not in (None, False) for flag in flags):
        raise ConfigError("a multi-seed run runs its seeds in turn in one process; it does not "
                          "go with --coordinator, --num-processes, --process-id or "
                          "--distributed")  # fmt: skip
    return seeds


def _cmd_run(args) -> int:
    seeds = _seeds(args)
    _join_processes(args)
    from . import experiments
    from .train import is_primary

    if args.resume is not None:
        if args.out is not None and Path(args.out) != Path(args.resume):
            raise ConfigError("--out and --resume name different directories; give one")
        path = _resolve_config(args.config) if args.config else Path(args.resume) / "config.yaml"
        if not path.is_file():
            raise ConfigError(f"cannot resume: {args.resume} holds no run (no config.yaml)")
        out = args.resume
    elif args.config is None:
        raise ConfigError("run needs a CONFIG (a path or a name in configs/), or --resume DIR")
    else:
        path, out = _resolve_config(args.config), args.out
    experiment, cfg = experiments.load(path, args.overrides)
    if seeds is None:
        run_dir, summary = _execute(experiments, experiment, cfg, out, args.resume is not None)
    else:
        run_dir, record = experiments.execute_seeds(
            experiment, cfg, seeds, out=out, resume=args.resume is not None
        )
        summary = {k: record[k] for k in ("experiment", "seeds", "statistics")}
    if is_primary():
        print(json.dumps(summary, indent=2))
        print(f"run directory: {run_dir}")
    return 0


def _cmd_sweep(args) -> int:
    from . import sweep

    if args.resume is not None:
        if args.config is not None or args.overrides or args.param:
            raise ConfigError("sweep --resume DIR takes no CONFIG, overrides or --param")
        result = sweep.resume_sweep(args.resume, trials=args.trials, jobs=args.jobs)
    elif args.config is None:
        raise ConfigError("sweep needs a CONFIG (a path or a name in configs/), or --resume DIR")
    else:
        result = sweep.sweep(
            _resolve_config(args.config), args.param, trials=args.trials or 20,
            metric=args.metric, mode=args.mode, out=args.out, jobs=args.jobs, seed=args.seed,
            overrides=args.overrides,
        )  # fmt: skip
    print(json.dumps({"counts": result.counts, "best_trial": result.best_trial,
                      "best_value": result.best_value, "best_params": result.best_params},
                     indent=2))  # fmt: skip
    print(f"best run directory: {result.best_run_dir}")
    print(f"sweep directory: {result.out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxdyn", description="Config-driven experiments on dynamics models."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run an experiment from a config")
    run.add_argument("config", nargs="?", help="config YAML path or name in configs/")
    run.add_argument("overrides", nargs="*", help="overrides such as train.steps=500")
    run.add_argument("--out", help="run directory (default runs/<experiment>/<time>)")
    run.add_argument("--resume", metavar="DIR", help="resume the interrupted run in DIR")
    run.add_argument("--seeds", nargs="+", metavar="S",
                     help="run once per seed (config key seed), each in DIR/seed_S; DIR's "
                     "summary.json has every figure's mean, std and per-seed values")  # fmt: skip
    run.add_argument("--coordinator", metavar="HOST:PORT",
                     help="multi-process run: the address of process 0")  # fmt: skip
    run.add_argument("--num-processes", type=int, metavar="N",
                     help="multi-process run: the number of processes")  # fmt: skip
    run.add_argument("--process-id", type=int, metavar="I",
                     help="multi-process run: this process's index, 0 to N-1")  # fmt: skip
    run.add_argument("--distributed", action="store_true",
                     help="multi-process run set up from the environment (SLURM)")  # fmt: skip
    run.set_defaults(handler=_cmd_run)

    tune = commands.add_parser("sweep", help="tune config keys over trials (Optuna)")
    tune.add_argument("config", nargs="?", help="config YAML path or name in configs/")
    tune.add_argument("overrides", nargs="*", help="overrides for every trial (train.steps=500)")
    tune.add_argument("--param", action="append", default=[], metavar="KEY=DIST(ARGS)",
                      help="a swept key: loguniform(LOW,HIGH), uniform(LOW,HIGH), "
                      "int(LOW,HIGH), choice(A,B,...); repeat for several")  # fmt: skip
    tune.add_argument("--trials", type=int, help="trials to finish (default 20)")
    tune.add_argument("--metric", default="validation.loss", help="the score of a trial")
    tune.add_argument("--mode", choices=("min", "max"), default="min")
    tune.add_argument("--jobs", type=int, default=1, help="trials at once (threads)")
    tune.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    tune.add_argument("--out", help="sweep directory (default sweeps/<experiment>/<time>)")
    tune.add_argument("--resume", metavar="DIR", help="continue the sweep in DIR")
    tune.set_defaults(handler=_cmd_sweep)

    show = commands.add_parser("show", help="print the resolved config")
    show.add_argument("config", help="config YAML path or name in configs/")
    show.add_argument("overrides", nargs="*", help="overrides such as train.steps=500")
    show.set_defaults(handler=_cmd_show)

    listing = commands.add_parser("list", help="list experiments and their configs")
    listing.set_defaults(handler=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `jaxdyn` command with `argv` (default `sys.argv[1:]`); return its exit status
    (0, or 1, 2, 130 as the module says)."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides may also follow options (`run CONFIG --out D key=value`).
    unknown = [a for a in extra if "=" not in a or a.startswith("-")]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides.extend(extra)
    if getattr(args, "seeds", None) is not None:
        # `--seeds 0 1 2 key=value`: the overrides after the seeds land in `seeds`.
        args.overrides.extend(s for s in args.seeds if "=" in s)
        bad = [s for s in args.seeds if "=" not in s and not s.isdigit()]
        if bad:
            parser.error(f"--seeds takes non-negative integers, got {' '.join(bad)} (put "
                         "CONFIG before --seeds)")  # fmt: skip
        args.seeds = [int(s) for s in args.seeds if "=" not in s]
    if args.command == "run" and args.resume and args.config and "=" in args.config:
        if not Path(args.config).is_file():
            # `jaxdyn run --resume DIR key=value`: the first override lands in `config`.
            args.overrides.insert(0, args.config)
            args.config = None
    from .experiments import RunFailed, RunInterrupted

    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"jaxdyn: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except RunFailed as failure:
        print(f"jaxdyn: error: {failure}", file=sys.stderr)
        return EXIT_FAILURE
    except RunInterrupted as interrupt:
        print(f"jaxdyn: {interrupt}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
