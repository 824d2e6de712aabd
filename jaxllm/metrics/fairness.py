"""Group fairness of a binary classifier from (label, prediction, group), as fairlearn defines it.

    table = group_table(y_true, y_pred, sensitive_features=race)   # per-group confusion counts
    table.rates()                 # {group: {"selection_rate", "tpr", "fpr", ...}} and "overall"
    demographic_parity_difference(y_true, y_pred, sensitive_features=race)

Per group: selection rate P(pred = 1), true positive rate P(pred = 1 | y = 1), false positive
rate P(pred = 1 | y = 0) (a rate whose condition never occurs in the group is 0, as in
fairlearn). A disparity compares the groups' values of one rate:
- method "between_groups": difference = largest - smallest, ratio = smallest / largest;
- method "to_overall": difference = the largest |group - overall|, ratio = the smallest of
  group / overall, each taken as overall / group where that is above 1.

demographic parity: of the selection rate; equal opportunity: of the TPR; equalized odds: the
worse (agg="worst_case": larger difference, smaller ratio) or the mean (agg="mean") of the TPR's
and the FPR's. sensitive_features is one label per row, or an (N, k) array whose rows are
intersectional groups. With sample_weight, every count is a sum of weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxllm.errors import DataError

METHODS = ("between_groups", "to_overall")


@dataclass(frozen=True)
class GroupTable:
    """Confusion counts per group (sums of weights with sample_weight), groups sorted."""

    groups: list
    tp: np.ndarray  # (G,) predicted 1, label 1
    fp: np.ndarray  # (G,) predicted 1, label 0
    tn: np.ndarray  # (G,) predicted 0, label 0
    fn: np.ndarray  # (G,) predicted 0, label 1

    @property
    def count(self) -> np.ndarray:
        return self.tp + self.fp + self.tn + self.fn

    def overall(self) -> "GroupTable":
        return GroupTable(["overall"], *(np.array([x.sum()]) for x in
                                         (self.tp, self.fp, self.tn, self.fn)))

    def rate(self, name: str) -> np.ndarray:
        """(G,) one of: selection_rate, tpr, fpr, tnr, fnr, accuracy, base_rate."""
        num, den = {
            "selection_rate": (self.tp + self.fp, self.count),
            "tpr": (self.tp, self.tp + self.fn),
            "fpr": (self.fp, self.fp + self.tn),
            "tnr": (self.tn, self.fp + self.tn),
            "fnr": (self.fn, self.tp + self.fn),
            "accuracy": (self.tp + self.tn, self.count),
            "base_rate": (self.tp + self.fn, self.count),
        }[name]
        num, den = np.asarray(num, float), np.asarray(den, float)
        return np.divide(num, den, out=np.zeros_like(num), where=den != 0)

    RATES = ("selection_rate", "tpr", "fpr", "tnr", "fnr", "accuracy", "base_rate")

    def rates(self) -> dict:
        """{group: {rate name: value}} for every group and "overall"."""
        out = {}
        for table in (self, self.overall()):
            values = {name: table.rate(name) for name in self.RATES}
            for i, g in enumerate(table.groups):
                out[g] = {name: float(v[i]) for name, v in values.items()}
                out[g]["count"] = float(table.count[i])
        return out


def _binary(y, pos_label, what: str) -> np.ndarray:
    y = np.asarray(y)
    values = np.unique(y).tolist()
    if len(values) > 2:
        raise DataError(f"{what} must hold two classes, got {len(values)}: {values[:5]}")
    if pos_label not in values and not (set(values) <= {0, 1} or set(values) <= {-1, 1}):
        raise DataError(f"{what} holds {values}, not pos_label={pos_label!r}; pass the label "
                        f"that means 'positive' as pos_label")
    return y == pos_label


def group_table(y_true, y_pred, *, sensitive_features, sample_weight=None,
                pos_label=1) -> GroupTable:
    """Per-group confusion counts of binary labels and predictions."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    features = np.asarray(sensitive_features)
    if y_true.ndim != 1 or y_pred.shape != y_true.shape or len(features) != len(y_true):
        raise DataError(f"y_true, y_pred and sensitive_features must have one entry per row, "
                        f"got shapes {y_true.shape}, {y_pred.shape}, {features.shape}")
    if len(y_true) == 0:
        raise DataError("y_true is empty")
    t = _binary(y_true, pos_label, "y_true")
    p = _binary(y_pred, pos_label, "y_pred")
    w = np.ones(len(t)) if sample_weight is None else np.asarray(sample_weight, float)
    if w.shape != t.shape:
        raise DataError(f"sample_weight has shape {w.shape}, expected {t.shape}")
    if features.ndim == 1:
        groups, index = np.unique(features, return_inverse=True)
        groups = groups.tolist()
    else:
        rows, index = np.unique(features, axis=0, return_inverse=True)
        groups = [tuple(r) for r in rows.tolist()]
    index = index.reshape(-1)

    def per_group(mask):
        return np.bincount(index, weights=w * mask, minlength=len(groups))

    return GroupTable(groups, per_group(t & p), per_group(~t & p), per_group(~t & ~p),
                      per_group(t & ~p))


def _difference(table: GroupTable, name: str, method: str) -> float:
    values = table.rate(name)
    if method == "between_groups":
        return float(values.max() - values.min())
    return float(np.max(np.abs(values - table.overall().rate(name)[0])))


def _ratio(table: GroupTable, name: str, method: str) -> float:
    values = table.rate(name)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "between_groups":
            return float(values.min() / values.max())
        r = values / table.overall().rate(name)[0]
        r = np.where(r > 1, 1 / r, r)
    return float(np.nanmin(r)) if not np.all(np.isnan(r)) else float("nan")


def _table(y_true, y_pred, features, weights, method: str, agg: str = "worst_case"
           ) -> GroupTable:
    """The group table a disparity is read from, after checking method and agg."""
    if method not in METHODS:
        raise DataError(f"method={method!r} is unknown; use between_groups or to_overall")
    if agg not in ("worst_case", "mean"):
        raise DataError(f"agg={agg!r} is unknown; use worst_case or mean")
    return group_table(y_true, y_pred, sensitive_features=features, sample_weight=weights)


def _disparity(name: str, rate: str, measure, doc: str):
    """A disparity of one rate with fairlearn's signature; measure is _difference or _ratio."""
    def disparity(y_true, y_pred, *, sensitive_features, method: str = "between_groups",
                  sample_weight=None) -> float:
        table = _table(y_true, y_pred, sensitive_features, sample_weight, method)
        return measure(table, rate, method)

    disparity.__name__ = disparity.__qualname__ = name
    disparity.__doc__ = doc
    return disparity


demographic_parity_difference = _disparity(
    "demographic_parity_difference", "selection_rate", _difference,
    "Largest minus smallest group selection rate P(pred = 1).")
demographic_parity_ratio = _disparity(
    "demographic_parity_ratio", "selection_rate", _ratio,
    "Smallest over largest group selection rate P(pred = 1).")
equal_opportunity_difference = _disparity(
    "equal_opportunity_difference", "tpr", _difference,
    "Largest minus smallest group true positive rate.")
equal_opportunity_ratio = _disparity(
    "equal_opportunity_ratio", "tpr", _ratio,
    "Smallest over largest group true positive rate.")


def equalized_odds_difference(y_true, y_pred, *, sensitive_features,
                              method: str = "between_groups", sample_weight=None,
                              agg: str = "worst_case") -> float:
    """The larger (agg="mean": the mean) of the TPR's and the FPR's differences."""
    table = _table(y_true, y_pred, sensitive_features, sample_weight, method, agg)
    tpr, fpr = _difference(table, "tpr", method), _difference(table, "fpr", method)
    return max(tpr, fpr) if agg == "worst_case" else (tpr + fpr) / 2


def equalized_odds_ratio(y_true, y_pred, *, sensitive_features,
                         method: str = "between_groups", sample_weight=None,
                         agg: str = "worst_case") -> float:
    """The smaller (agg="mean": the mean) of the TPR's and the FPR's ratios."""
    table = _table(y_true, y_pred, sensitive_features, sample_weight, method, agg)
    tpr, fpr = _ratio(table, "tpr", method), _ratio(table, "fpr", method)
    if agg == "worst_case":
        return min(tpr, fpr)  # as fairlearn: a NaN TPR ratio (0/0) wins, a NaN FPR ratio loses
    both = [x for x in (tpr, fpr) if not np.isnan(x)]  # the mean skips a NaN, as pandas does
    return sum(both) / len(both) if both else float("nan")
