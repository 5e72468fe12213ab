"""Metrics for comparing models, samples and data."""

from .wasserstein import wasserstein_1d as wasserstein_1d
