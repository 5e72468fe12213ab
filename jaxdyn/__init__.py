"""jaxdyn: a JAX toolkit for modelling and studying dynamics.

Public API (re-exports only):

- `odeint`, `sdeint`, `cdeint`, `Solution`, `Endpoint`, `Stats`, `RESULTS`, `SOLVERS`,
  `ADJOINTS` — solving ODEs, SDEs and CDEs (`jaxdyn.solve`).
- `MLPField`, `NeuralODE`, `NeuralSDE`, `NeuralCDE` — models (`jaxdyn.models`).
- `fit`, `make_step`, `FitResult`, `TrainingDivergedError` — training (`jaxdyn.train`).
- Subpackages: `solve`, `implicit`, `train`, `data`, `models`, `generative`, `learning`, `physics`,
  `regularize`, `sysid`, `metrics`.
- `ConfigError`, `load_config` — typed configs (`jaxdyn.config`).

`import jaxdyn` loads the solve and train layers; every other subpackage (and the names
above that live in one) loads on first use, `jaxdyn.models` when `jaxdyn.models` or
`jaxdyn.NeuralODE` is first read (lazy loading as in Scientific Python's SPEC 1): a script that
only solves or trains pays for no model family, generative sampler or dataset it does not use.
"""

import importlib
from typing import TYPE_CHECKING

from . import solve as solve
from . import train as train
from .solve import ADJOINTS as ADJOINTS
from .solve import RESULTS as RESULTS
from .solve import SOLVERS as SOLVERS
from .solve import Endpoint as Endpoint
from .solve import Solution as Solution
from .solve import Stats as Stats
from .solve import cdeint as cdeint
from .solve import odeint as odeint
from .solve import sdeint as sdeint
from .train import FitResult as FitResult
from .train import TrainingDivergedError as TrainingDivergedError
from .train import fit as fit
from .train import make_step as make_step

if TYPE_CHECKING:  # what the lazy names below are, for type checkers and the API reference
    from . import data as data
    from . import generative as generative
    from . import implicit as implicit
    from . import learning as learning
    from . import metrics as metrics
    from . import models as models
    from . import physics as physics
    from . import regularize as regularize
    from . import sysid as sysid
    from .config import ConfigError as ConfigError
    from .config import load_config as load_config
    from .models import MLPField as MLPField
    from .models import NeuralCDE as NeuralCDE
    from .models import NeuralODE as NeuralODE
    from .models import NeuralSDE as NeuralSDE

__version__ = "0.1.0"
__all__ = [
    "ADJOINTS", "RESULTS", "SOLVERS", "ConfigError", "Endpoint", "FitResult", "MLPField",
    "NeuralCDE", "NeuralODE", "NeuralSDE", "Solution", "Stats", "TrainingDivergedError",
    "cdeint", "data", "fit", "generative", "implicit", "learning", "load_config", "make_step",
    "metrics", "models", "odeint", "physics", "regularize", "sdeint", "solve", "sysid", "train",
]  # fmt: skip

_LAZY_SUBPACKAGES = (
    "data", "generative", "implicit", "learning", "metrics", "models", "physics", "regularize",
    "sysid",
)  # fmt: skip
_LAZY_NAMES = {
    "ConfigError": "config",
    "load_config": "config",
    "MLPField": "models",
    "NeuralCDE": "models",
    "NeuralODE": "models",
    "NeuralSDE": "models",
}


def __getattr__(name: str):
    """Load a lazy subpackage, or the subpackage a lazy name lives in, on first use."""
    if name in _LAZY_SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later reads skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBPACKAGES) | set(_LAZY_NAMES))
