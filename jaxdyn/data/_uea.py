"""Multivariate time-series classification sets of the UEA/UCR archive bundled with sktime.

Bagnall et al. (2018), "The UEA multivariate time series classification archive": sktime ships
a few of its sets inside the wheel (no download). They are the equal-length sets used by the
irregular-sampling experiments of Kidger et al. (2020) and Oh, Lim & Kim (2024), on which
observations are then dropped (`jaxdyn.data.drop_observations`).
"""

from typing import NamedTuple

import numpy as np
from jaxtyping import Float, Int

__all__ = ["UEA_DATASETS", "UEADataset", "uea"]

#: Names of the bundled equal-length sets, and sktime's loader for each.
UEA_DATASETS: dict[str, str] = {
    "BasicMotions": "load_basic_motions",  # 6 channels, length 100, 4 classes, train/test 40/40
    "ArrowHead": "load_arrow_head",  # 1 channel, length 251, 3 classes, 36/175
    "GunPoint": "load_gunpoint",  # 1 channel, length 150, 2 classes, 50/150
    "ItalyPowerDemand": "load_italy_power_demand",  # 1 channel, length 24, 2 classes, 67/1029
    "OSULeaf": "load_osuleaf",  # 1 channel, length 427, 6 classes, 200/242
}


class UEADataset(NamedTuple):
    """A split, standardised classification set.

    - `ts`: `(time,)` observation times, evenly spaced in `[0, 1]`.
    - `x_train`, `x_test`: `(n, time, channels)` values, standardised per channel with the
      mean and standard deviation of the training split (over series and times).
    - `y_train`, `y_test`: `(n,)` integer labels `0 … num_classes - 1`.
    - `classes`: the original label of each integer, in order.
    - `mean`, `std`: `(channels,)` the training statistics used.
    """

    ts: Float[np.ndarray, " time"]
    x_train: Float[np.ndarray, "n time channels"]
    y_train: Int[np.ndarray, " n"]
    x_test: Float[np.ndarray, "m time channels"]
    y_test: Int[np.ndarray, " m"]
    classes: tuple[str, ...]
    mean: Float[np.ndarray, " channels"]
    std: Float[np.ndarray, " channels"]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.x_train.shape[-1]


def _load(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    from sktime import datasets  # imported here: sktime is slow to import

    x, y = getattr(datasets, UEA_DATASETS[name])(split=split, return_type="numpy3D")
    return np.asarray(x, dtype=np.float64), np.asarray(y)


def uea(name: str = "BasicMotions", *, stride: int = 1, dtype: type = np.float32) -> UEADataset:
    """The train and test splits of the bundled UEA/UCR set `name` (see `UEA_DATASETS`).

    Series become arrays `(n, time, channels)` (sktime gives `(n, channels, time)`), labels
    integers in the sorted order of the original labels, and every channel is standardised
    with the training split's mean and standard deviation. `stride > 1` keeps every
    `stride`-th time step (from the first) to shorten the series; `ts` is then the kept
    steps' times on the original `[0, 1]` grid.
    """
    if name not in UEA_DATASETS:
        known = ", ".join(sorted(UEA_DATASETS))
        raise ValueError(f"unknown UEA dataset name={name!r}; bundled: {known}")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an int >= 1, got {stride!r}")
    x_train, labels_train = _load(name, "train")
    x_test, labels_test = _load(name, "test")
    classes = tuple(sorted(set(labels_train.tolist()) | set(labels_test.tolist())))
    index = {label: i for i, label in enumerate(classes)}
    y_train = np.array([index[v] for v in labels_train.tolist()], dtype=np.int32)
    y_test = np.array([index[v] for v in labels_test.tolist()], dtype=np.int32)

    x_train = np.moveaxis(x_train, 1, 2)
    x_test = np.moveaxis(x_test, 1, 2)
    length = x_train.shape[1]
    ts = np.linspace(0.0, 1.0, length)
    keep = np.arange(0, length, stride)
    ts, x_train, x_test = ts[keep], x_train[:, keep], x_test[:, keep]
    if ts.shape[0] < 2:
        raise ValueError(f"stride={stride} leaves {ts.shape[0]} time step of {length}")
    mean = x_train.mean(axis=(0, 1))
    std = x_train.std(axis=(0, 1))
    std = np.where(std > 0, std, 1.0)  # a constant channel is only centred
    return UEADataset(
        ts=ts.astype(dtype),
        x_train=((x_train - mean) / std).astype(dtype),
        y_train=y_train,
        x_test=((x_test - mean) / std).astype(dtype),
        y_test=y_test,
        classes=tuple(str(c) for c in classes),
        mean=mean.astype(dtype),
        std=std.astype(dtype),
    )
