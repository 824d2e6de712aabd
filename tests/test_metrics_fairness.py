"""Group fairness against fairlearn and a worked example; ProPublica's COMPAS table."""

import fairlearn.metrics as fm
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.data.tabular import adult, compas
from jaxllm.errors import DataError
from jaxllm.metrics import fairness

# A worked example: 10 people in groups a (4), b (4), c (2).
Y_TRUE = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 0])
Y_PRED = np.array([1, 0, 1, 0, 1, 1, 1, 0, 0, 0])
GROUP = np.array(["a", "a", "a", "a", "b", "b", "b", "b", "c", "c"])
# a: tp 1, fn 1, fp 1, tn 1 -> selection 2/4, TPR 1/2, FPR 1/2
# b: tp 1, fn 0, fp 2, tn 1 -> selection 3/4, TPR 1,   FPR 2/3
# c: tp 0, fn 1, fp 0, tn 1 -> selection 0,   TPR 0,   FPR 0
# overall: selection 5/10, TPR 2/4, FPR 3/6

FUNCTIONS = ["demographic_parity_difference", "demographic_parity_ratio",
             "equal_opportunity_difference", "equal_opportunity_ratio",
             "equalized_odds_difference", "equalized_odds_ratio"]


def test_worked_example():
    table = fairness.group_table(Y_TRUE, Y_PRED, sensitive_features=GROUP)
    assert table.groups == ["a", "b", "c"]
    np.testing.assert_array_equal(np.stack([table.tp, table.fp, table.tn, table.fn]),
                                  [[1, 1, 0], [1, 2, 0], [1, 1, 1], [1, 0, 1]])
    rates = table.rates()
    assert rates["b"]["fpr"] == 2 / 3 and rates["overall"]["selection_rate"] == 0.5
    kw = dict(sensitive_features=GROUP)
    assert fairness.demographic_parity_difference(Y_TRUE, Y_PRED, **kw) == 0.75
    assert fairness.demographic_parity_ratio(Y_TRUE, Y_PRED, **kw) == 0.0
    assert fairness.equal_opportunity_difference(Y_TRUE, Y_PRED, **kw) == 1.0
    assert fairness.equalized_odds_difference(Y_TRUE, Y_PRED, **kw) == 1.0
    assert fairness.equalized_odds_difference(Y_TRUE, Y_PRED, agg="mean", **kw) == \
        pytest.approx((1.0 + 2 / 3) / 2)
    # to the overall rate: selection |0 - 0.5|, ratio min(0.5/0.5, 0.5/0.75, 0/0.5) = 0
    assert fairness.demographic_parity_difference(Y_TRUE, Y_PRED, method="to_overall",
                                                  **kw) == 0.5
    # groups a and b only: overall selection 5/8; ratios 0.5/0.625 = 0.8 and 0.625/0.75
    kw_ab = dict(sensitive_features=GROUP[:8])
    assert fairness.demographic_parity_ratio(Y_TRUE[:8], Y_PRED[:8], method="to_overall",
                                             **kw_ab) == pytest.approx(0.8)


def _compare(y_true, y_pred, features, weights):
    for name in FUNCTIONS:
        for method in ("between_groups", "to_overall"):
            for agg in (("worst_case", "mean") if "odds" in name else (None,)):
                kw = dict(sensitive_features=features, method=method, sample_weight=weights)
                if agg:
                    kw["agg"] = agg
                ours = getattr(fairness, name)(y_true, y_pred, **kw)
                theirs = getattr(fm, name)(y_true, y_pred, **kw)
                assert ours == pytest.approx(theirs, abs=1e-12, nan_ok=True), (name, method, agg)


def _compare_frame(y_true, y_pred, features, weights):
    """Our rates and disparities against one fairlearn MetricFrame (each fairlearn function
    builds a frame of its own, which is slow; this builds one for all of them)."""
    params = {"sample_weight": weights}
    frame = fm.MetricFrame(metrics={"selection_rate": fm.selection_rate,
                                    "tpr": fm.true_positive_rate, "fpr": fm.false_positive_rate},
                           y_true=y_true, y_pred=y_pred, sensitive_features=features,
                           sample_params={k: params for k in ("selection_rate", "tpr", "fpr")})
    table = fairness.group_table(y_true, y_pred, sensitive_features=features,
                                 sample_weight=weights)
    for name in ("selection_rate", "tpr", "fpr"):
        np.testing.assert_allclose(table.rate(name), frame.by_group[name].to_numpy(), atol=1e-12)
    kw = dict(sensitive_features=features, sample_weight=weights)
    for method in ("between_groups", "to_overall"):
        diff, ratio = frame.difference(method=method), frame.ratio(method=method)
        expected = {
            "demographic_parity_difference": diff["selection_rate"],
            "demographic_parity_ratio": ratio["selection_rate"],
            "equal_opportunity_difference": diff["tpr"],
            "equal_opportunity_ratio": ratio["tpr"],
            "equalized_odds_difference": max(diff["tpr"], diff["fpr"]),  # fairlearn's worst case
            "equalized_odds_ratio": min(ratio["tpr"], ratio["fpr"]),
        }
        for name, value in expected.items():
            ours = getattr(fairness, name)(y_true, y_pred, method=method, **kw)
            assert ours == pytest.approx(value, abs=1e-12, nan_ok=True), (name, method)


def test_small_arrays_equal_fairlearn():
    _compare(Y_TRUE, Y_PRED, GROUP, None)  # every function, as fairlearn's own functions
    _compare_frame(Y_TRUE, Y_PRED, GROUP, np.linspace(0.5, 2.0, len(Y_TRUE)))
    # two sensitive features: intersectional groups
    _compare_frame(Y_TRUE, Y_PRED, np.stack([GROUP, np.array(list("xyxyxyxyxy"))], axis=1),
                   None)


@settings(max_examples=15, deadline=None)
@given(data=st.data(), n=st.integers(2, 30), n_groups=st.integers(1, 4), weighted=st.booleans())
def test_random_arrays_equal_fairlearn(data, n, n_groups, weighted):
    def draw(elements):
        return np.array(data.draw(st.lists(elements, min_size=n, max_size=n)))

    y_true, y_pred = draw(st.integers(0, 1)), draw(st.integers(0, 1))
    groups = draw(st.sampled_from("pqrs"[:n_groups]))
    weights = draw(st.floats(0.1, 3.0)) if weighted else None
    _compare_frame(y_true, y_pred, groups, weights)


def test_compas_propublica_table():
    """ProPublica's filters leave 6,172 rows; Medium/High scores as positive predictions of
    two-year recidivism: FPR 0.4234 African-American vs 0.2201 Caucasian, TPR 0.7152 vs 0.5036."""
    data = compas()
    assert len(data["race"]) == 6172
    y_true = data["two_year_recid"].astype(int)
    y_pred = (data["score_text"] != "Low").astype(int)
    rates = fairness.group_table(y_true, y_pred, sensitive_features=data["race"]).rates()
    assert rates["African-American"]["fpr"] == pytest.approx(0.4234, abs=5e-5)
    assert rates["Caucasian"]["fpr"] == pytest.approx(0.2201, abs=5e-5)
    assert rates["African-American"]["tpr"] == pytest.approx(0.7152, abs=5e-5)
    assert rates["Caucasian"]["tpr"] == pytest.approx(0.5036, abs=5e-5)
    _compare_frame(y_true, y_pred, data["race"], None)


def test_adult_sizes():
    test = adult("test")
    assert len(adult("train")["sex"]) == 30162 and len(test["sex"]) == 15060
    assert set(test["income"]) == {"<=50K", ">50K"}  # adult.test's "<=50K." lost its period


def test_bad_input_is_a_data_error():
    with pytest.raises(DataError, match="one entry per row"):
        fairness.group_table([0, 1], [0, 1, 1], sensitive_features=["a", "b"])
    with pytest.raises(DataError, match="two classes"):
        fairness.group_table([0, 1, 2], [0, 1, 1], sensitive_features=["a", "b", "a"])
    with pytest.raises(DataError, match="method='overall'"):
        fairness.demographic_parity_difference([0, 1], [0, 1], sensitive_features=["a", "b"],
                                               method="overall")
    with pytest.raises(DataError, match="pos_label"):
        fairness.group_table(["no", "yes"], ["no", "yes"], sensitive_features=["a", "b"])
