"""Config-driven experiments. Each public module here registers one experiment family;
adding one touches only its module and its YAML in `configs/`."""

import importlib
import pkgutil

from .._output import read_seeds as read_seeds
from ._registry import Experiment as Experiment
from ._registry import get as get
from ._registry import names as names
from ._registry import register as register
from ._runner import RunFailed as RunFailed
from ._runner import RunInterrupted as RunInterrupted
from ._runner import execute as execute
from ._runner import execute_seeds as execute_seeds
from ._runner import load as load

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
