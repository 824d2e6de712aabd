"""Accuracy, precision/recall/F against scikit-learn; expected calibration error by hand."""

import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.errors import DataError
from jaxllm.metrics import (accuracy, confusion_matrix, expected_calibration_error,
                            precision_recall_fscore)
from jaxllm.metrics.classification import calibration_bins


@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn, on one-class draws
@settings(max_examples=30, deadline=None)
@given(data=st.data(), n=st.integers(1, 25), n_classes=st.integers(2, 4),
       beta=st.sampled_from([0.5, 1.0, 2.0]))
def test_equal_sklearn(data, n, n_classes, beta):
    def draw():
        return np.array(data.draw(st.lists(st.integers(0, n_classes - 1), min_size=n,
                                           max_size=n)))

    y_true, y_pred = draw(), draw()
    assert accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    labels = np.unique(np.concatenate([y_true, y_pred]))
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred)[0],
                                  skm.confusion_matrix(y_true, y_pred, labels=labels))
    for average in ("micro", "macro", "weighted", None):
        ours = precision_recall_fscore(y_true, y_pred, average=average, beta=beta)
        theirs = skm.precision_recall_fscore_support(y_true, y_pred, average=average, beta=beta,
                                                     zero_division=0)[:3]
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12, err_msg=str(average))
    if len(labels) <= 2:
        ours = precision_recall_fscore(y_true, y_pred, pos_label=int(labels[-1]), beta=beta)
        theirs = skm.precision_recall_fscore_support(y_true, y_pred, pos_label=labels[-1],
                                                     average="binary", beta=beta,
                                                     zero_division=0)[:3]
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_accuracy_with_weights():
    assert accuracy([1, 0, 1], [1, 1, 1], sample_weight=[1, 2, 1]) == 0.5


def test_ece_worked_example():
    """Four predictions worked by hand with 2 and 5 bins."""
    # confidences (max prob): 0.9, 0.8, 0.6, 0.55; predicted classes 0, 1, 0, 1
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])
    labels = np.array([0, 0, 0, 1])  # correct, wrong, correct, correct
    # 2 bins: all four in (0.5, 1]: accuracy 3/4, mean confidence 2.85/4
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(
        abs(0.75 - 2.85 / 4))
    # 5 bins: (0.4, 0.6] holds 0.6, 0.55 (both correct, conf 0.575), (0.6, 0.8] holds 0.8
    # (wrong), (0.8, 1] holds 0.9 (correct)
    expected = 2 / 4 * abs(1 - 0.575) + 1 / 4 * abs(0 - 0.8) + 1 / 4 * abs(1 - 0.9)
    assert expected_calibration_error(probs, labels, n_bins=5) == pytest.approx(expected)


@settings(max_examples=30, deadline=None)
@given(data=st.data(), n=st.integers(1, 40), n_bins=st.integers(1, 20))
def test_ece_equals_the_bin_loop(data, n, n_bins):
    p1 = np.array(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    labels = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    # binary probabilities of class 1, scored the textbook way: loop over bins (lo, hi]
    probs = np.stack([1 - p1, p1], axis=1)
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for b in range(n_bins):
        inside = (conf > edges[b]) & (conf <= edges[b + 1])
        if b == 0:
            inside |= conf == 0
        if inside.any():
            ece += inside.mean() * abs((pred[inside] == labels[inside]).mean()
                                       - conf[inside].mean())
    assert expected_calibration_error(p1, labels, n_bins=n_bins) == pytest.approx(ece, abs=1e-12)
    assert calibration_bins(p1, labels, n_bins=n_bins).count.sum() == n


def test_bad_input_is_a_data_error():
    with pytest.raises(DataError, match="equal length"):
        accuracy([1, 0], [1])
    with pytest.raises(DataError, match="average='binary' needs two classes"):
        precision_recall_fscore([0, 1, 2], [0, 1, 2])
    with pytest.raises(DataError, match="average='mean'"):
        precision_recall_fscore([0, 1], [0, 1], average="mean")
    with pytest.raises(DataError, match="probs must be"):
        expected_calibration_error(np.zeros((3, 2, 2)), [0, 1, 0])
