"""Figures shared by experiments (matplotlib, headless)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["loss_curve", "plt"]


def loss_curve(losses: np.ndarray, path: str | Path, *, title: str = "training loss") -> Path:
    """Plot per-step losses (log scale) with a moving average; save to `path`."""
    losses = np.asarray(losses)
    fig, ax = plt.subplots(figsize=(6, 3.5))
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
    plt.close(fig)
    return Path(path)
