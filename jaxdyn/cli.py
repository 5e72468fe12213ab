"""The `jaxdyn` command: `jaxdyn run | list | show`.

User mistakes (a missing file, an unknown key, a wrong type) print one line naming the
problem and exit with status 2, without a traceback.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from .config import ConfigError, to_yaml

__all__ = ["main"]

EXIT_USAGE = 2


def _config_dirs() -> list[Path]:
    """Where config names are looked up: ./configs, then the repository's configs/."""
    dirs = [Path.cwd() / "configs", Path(__file__).resolve().parent.parent / "configs"]
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def _resolve_config(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    for directory in _config_dirs():
        candidate = directory / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    raise ConfigError(f"config file not found: {name}")


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


def _cmd_run(args) -> int:
    from . import experiments

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
    run_dir, summary = experiments.execute(experiment, cfg, out=out, resume=args.resume is not None)
    print(json.dumps(summary, indent=2))
    print(f"run directory: {run_dir}")
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
    run.set_defaults(handler=_cmd_run)

    show = commands.add_parser("show", help="print the resolved config")
    show.add_argument("config", help="config YAML path or name in configs/")
    show.add_argument("overrides", nargs="*", help="overrides such as train.steps=500")
    show.set_defaults(handler=_cmd_show)

    listing = commands.add_parser("list", help="list experiments and their configs")
    listing.set_defaults(handler=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides may also follow options (`run CONFIG --out D key=value`).
    unknown = [a for a in extra if "=" not in a or a.startswith("-")]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides.extend(extra)
    if args.command == "run" and args.resume and args.config and "=" in args.config:
        if not Path(args.config).is_file():
            # `jaxdyn run --resume DIR key=value`: the first override lands in `config`.
            args.overrides.insert(0, args.config)
            args.config = None
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"jaxdyn: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TypeError) as error:
        # The library's argument checks (a value or combination a config allowed but the
        # solver or the loop refuses) are user mistakes too: one line, unless asked.
        if os.environ.get("JAXDYN_TRACEBACK"):
            raise
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"jaxdyn: error: {first} (JAXDYN_TRACEBACK=1 shows where)", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
