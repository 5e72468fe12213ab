"""The solve options a model forwards to `odeint` / `sdeint` / `cdeint`."""

from typing import Any

__all__ = ["ODE_OPTIONS", "solve_options"]

#: What `NeuralODE` and `NeuralCDE` forward to `odeint` / `cdeint`.
ODE_OPTIONS = ("solver", "rtol", "atol", "dt0", "adjoint", "max_steps", "on_failure")


def solve_options(model: Any, *names: str) -> dict[str, Any]:
    """`{name: model.name}` for the options `names`. `max_steps=None` (the models' default)
    is left out, so the solve layer applies its own default (`docs/api.md`: 4096 for
    adaptive solves, the exact step count for fixed steps)."""
    options = {name: getattr(model, name) for name in names}
    if options.get("max_steps", 0) is None:
        del options["max_steps"]
    return options
