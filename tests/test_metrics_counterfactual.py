"""Counterfactual scores and embedding shifts with toy models whose answers are known."""

import numpy as np
import pytest

from jaxllm.errors import DataError
from jaxllm.metrics import counterfactual_scores, counterfactual_shift

TEMPLATES = ["{} is a nurse.", "{} fixed the car."]
GROUPS = {"female": ["She", "Mary"], "male": ["He", "John"]}


def test_scores_by_group_and_template():
    seen = []

    def score(texts):  # a "model" that scores a text by its length
        seen.extend(texts)
        return [len(t) for t in texts]

    result = counterfactual_scores(TEMPLATES, GROUPS, score)
    assert seen[:4] == ["She is a nurse.", "Mary is a nurse.", "He is a nurse.",
                        "John is a nurse."]
    assert result.scores.shape == (2, 2, 2)
    # template 0: female terms give lengths 15, 16 (mean 15.5), male 14, 16 (mean 15)
    np.testing.assert_array_equal(result.group_means[0], [15.5, 15.0])
    np.testing.assert_array_equal(result.gaps, [0.5, 0.5])
    np.testing.assert_array_equal(result.pair_differences("female", "male"), [[1, 0], [1, 0]])
    assert result.summary()["max_gap"] == 0.5


def test_tuple_templates_fill_every_part():
    result = counterfactual_scores([("{} said", " {} was right")], GROUPS,
                                   lambda items: [float(p.count("She") + c.count("She"))
                                                  for p, c in items])
    np.testing.assert_array_equal(result.scores[0], [[2, 0], [0, 0]])


def test_embedding_shift_is_cosine_distance():
    # a toy embedding: letter counts; "She ..." vs "He ..." differ by one "S"
    def embed(texts):
        return np.array([[t.count(c) for c in "SHeMaryJohn"] for t in texts], dtype=float)

    shift = counterfactual_shift(["{}"], GROUPS, embed)
    e = embed(["She", "He", "Mary", "John"])
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    np.testing.assert_allclose(shift.across[0, 0], [1 - e[0] @ e[1], 1 - e[2] @ e[3]])
    np.testing.assert_allclose(shift.within[0], [[1 - e[0] @ e[2]], [1 - e[1] @ e[3]]])
    assert shift.pairs == [("female", "male")]


def test_bad_input_is_a_data_error():
    with pytest.raises(DataError, match="same number of terms"):
        counterfactual_scores(TEMPLATES, {"a": ["x"], "b": ["y", "z"]}, len)
    with pytest.raises(DataError, match="no '{}' slot"):
        counterfactual_scores(["no slot"], GROUPS, len)
    with pytest.raises(DataError, match="one number per text"):
        counterfactual_scores(TEMPLATES, GROUPS, lambda texts: [1.0])
