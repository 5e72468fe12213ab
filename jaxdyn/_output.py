"""Where a run or a sweep writes when the user names no directory."""

import datetime
import itertools
from pathlib import Path

__all__ = ["new_output_dir"]


def new_output_dir(root: str, name: str) -> Path:
    """Create and return `root/<name>/<date-time>`, with a suffix (`-1`, `-2`, …) when another
    run or sweep started in the same second: two never share a directory."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in itertools.count():
        out = Path(root) / name / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            out.mkdir(parents=True, exist_ok=False)
            return out
        except FileExistsError:
            continue
    raise AssertionError("unreachable")
