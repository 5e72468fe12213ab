"""Checks, before any work starts, of the data splits experiments ask for."""

from omegaconf import DictConfig

from ..config import ConfigError
from ..data import digits

__all__ = ["check_digits_split"]


def check_digits_split(cfg: DictConfig) -> None:
    """`cfg.test_fraction` and `cfg.validation_fraction` must split `load_digits` with a
    validation image in some class (validation selects what the experiment reports)."""
    try:
        split = digits(test_fraction=cfg.test_fraction, validation_fraction=cfg.validation_fraction)
    except ValueError as error:  # fractions that leave no training image
        raise ConfigError(str(error)) from None
    if "validation" not in split:
        raise ConfigError(
            f"validation_fraction={cfg.validation_fraction} rounds to no validation image in "
            "any class"
        )
