"""Where a run's validation metrics go as training produces them, besides its metrics log.

A sweep (`jaxdyn.sweep`) installs a reporter around one run: `fit_from_config` (the one
place experiments train from a config) calls it with `(step, {"validation.<name>": value})`
after every evaluation, on the host. The reporter may raise (e.g. `optuna.TrialPruned`) to
stop the run; the checkpoint written at that evaluation stays in the run directory.
"""

import contextlib
import contextvars
from collections.abc import Callable, Iterator

__all__ = ["Reporter", "evaluation_reporter", "reporting_evaluations"]

Reporter = Callable[[int, dict[str, float]], None]
_REPORTER: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar(
    "jaxdyn_evaluation_reporter", default=None
)


@contextlib.contextmanager
def reporting_evaluations(reporter: Reporter) -> Iterator[None]:
    """Within this block (in this thread or task), `reporter(step, metrics)` receives each
    evaluation of the runs trained through `fit_from_config`."""
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def evaluation_reporter() -> Reporter | None:
    """The reporter installed by the innermost `reporting_evaluations` block, if any."""
    return _REPORTER.get()
