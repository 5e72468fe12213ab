"""Multivariate time-series classification sets of the UEA/UCR archive bundled with sktime.

Bagnall et al. (2018), "The UEA multivariate time series classification archive": sktime ships
a few of its sets inside the wheel (no download), the kind of sets used by the irregular-sampling
experiments of Kidger et al. (2020) and Oh, Lim & Kim (2024), on which observations are then
dropped (`jaxdyn.data.drop_observations`). A variable-length set (JapaneseVowels) is padded at the
end with NaN to its longest series: the padding reads as unobserved time steps, as a dropped
observation does.
"""

import functools
from typing import NamedTuple

import numpy as np
from jaxtyping import Float, Int

from ._stratify import per_class_split

__all__ = ["UEA_DATASETS", "UEADataset", "UEASplit", "uea", "uea_split"]

#: Names of the bundled classification sets, and sktime's loader for each.
UEA_DATASETS: dict[str, str] = {
    "BasicMotions": "load_basic_motions",  # 6 channels, length 100, 4 classes, train/test 40/40
    "ArrowHead": "load_arrow_head",  # 1 channel, length 251, 3 classes, 36/175
    "GunPoint": "load_gunpoint",  # 1 channel, length 150, 2 classes, 50/150
    "ItalyPowerDemand": "load_italy_power_demand",  # 1 channel, length 24, 2 classes, 67/1029
    "JapaneseVowels": "load_japanese_vowels",  # 12 channels, length 7-29, 9 classes, 270/370
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


@functools.cache
def _load(name: str, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """The series of one shipped split as `(time, channels)` arrays (lengths may differ); read
    once per process (callers copy, never write)."""
    from sktime import datasets  # imported here: sktime is slow to import

    frame, y = getattr(datasets, UEA_DATASETS[name])(split=split, return_type="nested_univ")
    series = [np.stack([np.asarray(cell, dtype=np.float64) for cell in row], axis=-1)
              for row in frame.itertuples(index=False)]  # fmt: skip
    return series, np.asarray(y)


def _pad(series: list[np.ndarray], length: int) -> np.ndarray:
    """`(n, length, channels)`: each series followed by NaN up to `length`."""
    out = np.full((len(series), length, series[0].shape[-1]), np.nan)
    for i, s in enumerate(series):
        out[i, : s.shape[0]] = s
    return out


def _shipped(name: str, stride: int):
    """Both shipped splits of `name`, NaN-padded to the longest series and subsampled by
    `stride`: `(ts, x_train, labels_train, x_test, labels_test, classes)`, labels as
    integers in the sorted order of the original ones."""
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
    length = max(s.shape[0] for s in x_train + x_test)
    ts = np.linspace(0.0, 1.0, length)
    keep = np.arange(0, length, stride)
    if keep.shape[0] < 2:
        raise ValueError(f"stride={stride} leaves {keep.shape[0]} time step of {length}")
    x_train, x_test = _pad(x_train, length)[:, keep], _pad(x_test, length)[:, keep]
    return ts[keep], x_train, y_train, x_test, y_test, tuple(str(c) for c in classes)


def _statistics(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over the observed (non-NaN) training values;
    a constant channel gets std 1 (it is only centred)."""
    mean = np.nanmean(x_train, axis=(0, 1))
    std = np.nanstd(x_train, axis=(0, 1))
    return mean, np.where(std > 0, std, 1.0)


def uea(name: str = "BasicMotions", *, stride: int = 1, dtype: type = np.float32) -> UEADataset:
    """The train and test splits of the bundled UEA/UCR set `name` (see `UEA_DATASETS`).

    Series become arrays `(n, time, channels)` (sktime gives `(n, channels, time)`), labels
    integers in the sorted order of the original labels, and every channel is standardised
    with the training split's mean and standard deviation (over the observed values). A
    variable-length set is NaN-padded at the end to its longest series. `stride > 1` keeps
    every `stride`-th time step (from the first) to shorten the series; `ts` is then the kept
    steps' times on the original `[0, 1]` grid.
    """
    ts, x_train, y_train, x_test, y_test, classes = _shipped(name, stride)
    mean, std = _statistics(x_train)
    return UEADataset(
        ts=ts.astype(dtype),
        x_train=((x_train - mean) / std).astype(dtype),
        y_train=y_train,
        x_test=((x_test - mean) / std).astype(dtype),
        y_test=y_test,
        classes=classes,
        mean=mean.astype(dtype),
        std=std.astype(dtype),
    )


class UEASplit(NamedTuple):
    """A set re-split into train, validation and test series (`uea_split`), standardised.

    - `ts`: `(time,)` observation times, evenly spaced in `[0, 1]`.
    - `x_train`, `x_validation`, `x_test`: `(n, time, channels)` values (NaN: not observed),
      standardised per channel with the mean and standard deviation of the training split.
    - `y_train`, `y_validation`, `y_test`: `(n,)` integer labels `0 … num_classes - 1`.
    - `classes`: the original label of each integer; `mean`, `std`: `(channels,)`.
    """

    ts: Float[np.ndarray, " time"]
    x_train: Float[np.ndarray, "n time channels"]
    y_train: Int[np.ndarray, " n"]
    x_validation: Float[np.ndarray, "v time channels"]
    y_validation: Int[np.ndarray, " v"]
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


def uea_split(
    name: str = "BasicMotions",
    *,
    seed: int,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.15,
    stride: int = 1,
    dtype: type = np.float32,
) -> UEASplit:
    """The shipped train and test series of `name` pooled and re-split at random, stratified
    by class, the protocol of Oh, Lim & Kim (2024) (70/15/15 by default).

    Each class of `n_c` series gives `round(test_fraction · n_c)` test and
    `round(validation_fraction · n_c)` validation series, drawn with
    `numpy.random.default_rng(seed)`; the rest (at least one per class) train. The split sizes
    depend only on the class counts, not on `seed`. Values are standardised per channel with
    the training split's statistics; `stride` as in `uea`.
    """
    for label, value in (("validation_fraction", validation_fraction),
                         ("test_fraction", test_fraction)):  # fmt: skip
        if not 0 < value < 1:
            raise ValueError(f"{label} must be in (0, 1), got {value!r}")
    ts, x_train, y_train, x_test, y_test, classes = _shipped(name, stride)
    x, y = np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
    rng = np.random.default_rng(seed)
    parts = per_class_split(y, len(classes), test_fraction, validation_fraction, rng)
    for c, train in enumerate(parts["train"]):
        if train.size < 1:
            raise ValueError(
                f"validation_fraction={validation_fraction} and test_fraction={test_fraction} "
                f"leave no training series of class {classes[c]!r} ({(y == c).sum()} series)"
            )
    index = {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
    mean, std = _statistics(x[index["train"]])

    def values(split: str) -> np.ndarray:
        return ((x[index[split]] - mean) / std).astype(dtype)

    return UEASplit(
        ts=ts.astype(dtype),
        x_train=values("train"),
        y_train=y[index["train"]],
        x_validation=values("validation"),
        y_validation=y[index["validation"]],
        x_test=values("test"),
        y_test=y[index["test"]],
        classes=classes,
        mean=mean.astype(dtype),
        std=std.astype(dtype),
    )
