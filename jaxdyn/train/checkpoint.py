"""Atomic checkpoints of a training state (model parameters, optimiser state, key, step)."""

import json
import os
import tempfile
from pathlib import Path

import equinox as eqx
from jaxtyping import PyTree

__all__ = ["CHECKPOINT_FILE", "atomic_write", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FILE = "state.eqx"
_INFO_FILE = "info.json"


def atomic_write(path: Path, write) -> None:
    """Write to a temporary file in the same directory, then rename it over `path`.

    `os.replace` is atomic on POSIX: a reader (or a resumed run after a kill) sees either the
    old file or the new one, never a partial write.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(directory: str | Path, state: PyTree, step: int) -> Path:
    """Serialise the array leaves of `state` to `directory/state.eqx`, atomically.

    `info.json` beside it records the step for people; the step inside `state` is the
    authoritative one. Returns the checkpoint's path.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    atomic_write(path, lambda f: eqx.tree_serialise_leaves(f, state))
    info = json.dumps({"step": int(step), "file": CHECKPOINT_FILE}).encode()
    atomic_write(directory / _INFO_FILE, lambda f: f.write(info))
    return path


def load_checkpoint(directory: str | Path, like: PyTree) -> PyTree | None:
    """Load the state saved in `directory`, shaped like `like`; `None` if there is none."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        return eqx.tree_deserialise_leaves(path, like)
    except Exception as error:
        raise ValueError(
            f"checkpoint {path} does not match this model/optimiser (was the config "
            f"changed since it was written?): {error}"
        ) from error
