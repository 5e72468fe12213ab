"""Jittable training: `fit`, `make_step`, atomic checkpoints and the metrics log."""

from .checkpoint import load_checkpoint as load_checkpoint
from .checkpoint import save_checkpoint as save_checkpoint
from .loop import FitResult as FitResult
from .loop import TrainingDivergedError as TrainingDivergedError
from .loop import fit as fit
from .loop import make_step as make_step
from .loop import sample_batch as sample_batch
from .metrics import read_metrics as read_metrics
from .optim import OPTIMIZERS as OPTIMIZERS
from .optim import make_optimizer as make_optimizer
