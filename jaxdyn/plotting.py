"""Figures shared by experiments. Built on `matplotlib.figure.Figure` directly (no pyplot),
so they render headless and never change the caller's matplotlib backend."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = ["Figure", "loss_curve"]


def loss_curve(losses: np.ndarray, path: str | Path, *, title: str = "training loss") -> Path:
    """Plot per-step losses (log scale) with a moving average; save to `path`."""
    losses = np.asarray(losses)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    steps = np.arange(losses.size)
    ax.plot(steps, losses, lw=0.6, alpha=0.4, label="per step")
    window = max(1, losses.size // 50)
    if losses.size >= window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, lw=1.5, label=f"mean of {window}")
    ax.set(xlabel="step", ylabel="loss", title=title)
    if np.all(losses > 0):
        ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)
