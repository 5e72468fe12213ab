"""Optax optimisers by name, as configs name them."""

import optax

__all__ = ["OPTIMIZERS", "make_optimizer"]

OPTIMIZERS = {
    "adam": optax.adam,
    "adamw": optax.adamw,
    "rmsprop": optax.rmsprop,
    "sgd": optax.sgd,
}


def make_optimizer(
    name: str, lr: float, *, schedule: str = "constant", steps: int | None = None
) -> optax.GradientTransformation:
    """An optax optimiser `name` with learning rate `lr`, constant or cosine-decayed to zero
    over `steps` (Loshchilov & Hutter 2017)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    if not lr > 0:
        raise ValueError(f"learning rate must be positive, got {lr!r}")
    if schedule == "constant":
        rate = lr
    elif schedule == "cosine":
        if not steps:
            raise ValueError("a cosine schedule needs the number of steps")
        rate = optax.cosine_decay_schedule(lr, steps)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; expected 'constant' or 'cosine'")
    return OPTIMIZERS[name](rate)
