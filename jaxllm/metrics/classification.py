"""Classification metrics: accuracy, confusion matrix, precision / recall / F-beta, calibration.

Precision, recall and F follow scikit-learn's `precision_recall_fscore_support`: `average` is
"binary" (the class pos_label), "micro" (counts pooled over classes), "macro" (the unweighted
mean over classes), "weighted" (the mean weighted by each class's true count) or None (one value
per class); the classes are those in y_true or y_pred (or `labels`); a ratio with a zero
denominator is 0.

Expected calibration error (Guo et al. 2017): predictions are put in n_bins equal-width bins of
confidence (bin b holds confidences in (b/n, (b+1)/n], the first bin also 0), and
ECE = sum over bins of (bin size / N) * |accuracy in bin - mean confidence in bin|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxllm.errors import DataError

AVERAGES = ("binary", "micro", "macro", "weighted", None)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise DataError(f"y_true and y_pred must be 1-D and of equal length, got shapes "
                        f"{y_true.shape} and {y_pred.shape}")
    if len(y_true) == 0:
        raise DataError("y_true and y_pred are empty")
    return y_true, y_pred


def accuracy(y_true, y_pred, *, sample_weight=None) -> float:
    """Fraction (weighted, with sample_weight) of predictions equal to the label."""
    y_true, y_pred = _pair(y_true, y_pred)
    w = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, float)
    return float(np.sum(w * (y_true == y_pred)) / np.sum(w))


def confusion_matrix(y_true, y_pred, *, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """(C, C) counts, row = true class, column = predicted class, and the C class labels
    (sorted, or as given)."""
    y_true, y_pred = _pair(y_true, y_pred)
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    index = {v: i for i, v in enumerate(labels.tolist())}
    t = np.array([index.get(v, -1) for v in y_true.tolist()])
    p = np.array([index.get(v, -1) for v in y_pred.tolist()])
    keep = (t >= 0) & (p >= 0)
    c = len(labels)
    matrix = np.bincount(t[keep] * c + p[keep], minlength=c * c).reshape(c, c)
    return matrix, labels


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, float), np.asarray(den, float)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def precision_recall_fscore(y_true, y_pred, *, average: str | None = "binary", pos_label=1,
                            labels=None, beta: float = 1.0):
    """(precision, recall, F-beta): floats, or arrays over the classes with average=None."""
    if average not in AVERAGES:
        raise DataError(f"average={average!r} is unknown; use one of binary, micro, macro, "
                        f"weighted, None")
    y_true, y_pred = _pair(y_true, y_pred)
    if average == "binary":
        present = np.unique(np.concatenate([y_true, y_pred])).tolist()
        if len(present) > 2:
            raise DataError(f"average='binary' needs two classes, got {len(present)}; pass "
                            f"average='macro', 'micro' or 'weighted'")
        if len(present) == 2 and pos_label not in present:
            raise DataError(f"pos_label={pos_label!r} is not one of the labels {present}")
        t, p = y_true == pos_label, y_pred == pos_label
        tp, predicted, true = np.array([np.sum(t & p)]), np.array([p.sum()]), np.array([t.sum()])
    else:
        matrix, labels = confusion_matrix(y_true, y_pred, labels=labels)
        tp, predicted, true = np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)
    if average == "micro":
        tp, predicted, true = tp.sum(keepdims=True), predicted.sum(keepdims=True), \
            true.sum(keepdims=True)
    precision, recall = _ratio(tp, predicted), _ratio(tp, true)
    b2 = beta * beta
    f = _ratio((1 + b2) * precision * recall, b2 * precision + recall)
    if average is None:
        return precision, recall, f
    if average == "weighted":
        weights = true / true.sum() if true.sum() else np.zeros_like(true, float)
        return tuple(float(np.sum(x * weights)) for x in (precision, recall, f))
    return tuple(float(np.mean(x)) for x in (precision, recall, f))


@dataclass(frozen=True)
class CalibrationBins:
    """Per bin: predictions, their accuracy, their mean confidence (0 for an empty bin)."""

    edges: np.ndarray       # (n_bins + 1,)
    count: np.ndarray       # (n_bins,)
    accuracy: np.ndarray    # (n_bins,)
    confidence: np.ndarray  # (n_bins,)

    @property
    def ece(self) -> float:
        n = self.count.sum()
        return float(np.sum(self.count / n * np.abs(self.accuracy - self.confidence)))


def calibration_bins(probs, labels, *, n_bins: int = 15) -> CalibrationBins:
    """Reliability-diagram bins of (N, C) class probabilities (or (N,) probabilities of class
    1 of a binary problem) against integer labels."""
    probs, labels = np.asarray(probs, float), np.asarray(labels)
    if probs.ndim == 1:
        probs = np.stack([1 - probs, probs], axis=1)
    if probs.ndim != 2 or labels.shape != (len(probs),) or len(probs) == 0:
        raise DataError(f"probs must be (N, C) (or (N,) for a binary problem) and labels (N,), "
                        f"got {probs.shape} and {labels.shape}")
    if n_bins < 1:
        raise DataError(f"n_bins={n_bins} must be at least 1")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds (edges[b], edges[b + 1]]: the number of inner edges strictly below
    which = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(which, minlength=n_bins)
    acc = _ratio(np.bincount(which, weights=correct, minlength=n_bins), count)
    conf = _ratio(np.bincount(which, weights=confidence, minlength=n_bins), count)
    return CalibrationBins(edges, count, acc, conf)


def expected_calibration_error(probs, labels, *, n_bins: int = 15) -> float:
    """ECE of class probabilities against labels (see the module docstring)."""
    return calibration_bins(probs, labels, n_bins=n_bins).ece
