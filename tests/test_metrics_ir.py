"""IR metrics against pytrec_eval (trec_eval 9), on random runs with ties and graded qrels."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.errors import ConfigError
from jaxllm.metrics.ir import evaluate, evaluate_per_query, ranking

# our name -> pytrec_eval's measure and result key
PAIRS = {"hit@1": ("success.1", "success_1"), "hit@5": ("success.5", "success_5"),
         "ndcg@5": ("ndcg_cut.5", "ndcg_cut_5"), "ndcg@10": ("ndcg_cut.10", "ndcg_cut_10"),
         "recall@5": ("recall.5", "recall_5"), "precision@5": ("P.5", "P_5"),
         "map": ("map", "map"), "map@5": ("map_cut.5", "map_cut_5")}

docs = st.sampled_from([f"d{i}" for i in range(12)])
runs = st.dictionaries(st.sampled_from(["q1", "q2", "q3", "q4"]),
                       st.dictionaries(docs, st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.25]),
                                       max_size=10), min_size=1)
qrels_st = st.dictionaries(st.sampled_from(["q1", "q2", "q3", "q5"]),
                           st.dictionaries(docs, st.integers(0, 3), min_size=1, max_size=6),
                           min_size=1)


@settings(max_examples=60, deadline=None)
@given(runs, qrels_st)
def test_equal_to_pytrec_eval(run, qrels):
    import pytrec_eval

    ev = pytrec_eval.RelevanceEvaluator(qrels, {m for m, _ in PAIRS.values()} | {"recip_rank"})
    ref = ev.evaluate(run)
    ours = evaluate_per_query(run, qrels, list(PAIRS))
    assert set(ours) == set(ref)
    for q in ref:
        for name, (_, key) in PAIRS.items():
            assert math.isclose(ours[q][name], ref[q][key], rel_tol=0, abs_tol=1e-9), (q, name)
    # MRR@k is trec_eval's reciprocal rank of the run cut to its top k
    for k in (1, 3):
        cut = {q: {d: run[q][d] for d in ranking(run[q])[:k]} for q in run}
        ref_k = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
        ours_k = evaluate_per_query(run, qrels, [f"mrr@{k}"])
        for q in ref_k:
            assert math.isclose(ours_k[q][f"mrr@{k}"], ref_k[q]["recip_rank"], abs_tol=1e-9)


def test_worked_example_and_means():
    # ties: b and a share 1.0 and rank b, a (ids in descending order)
    run = {"q": {"a": 1.0, "b": 1.0, "c": 0.5}, "empty": {}}
    qrels = {"q": {"a": 2, "c": 1, "z": 1}, "empty": {"x": 1}, "absent": {"y": 1}}
    assert ranking(run["q"]) == ["b", "a", "c"]
    res = evaluate_per_query(run, qrels, ["hit@1", "mrr@10", "precision@2", "recall@3",
                                          "ndcg@3", "map"])
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    idcg = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert res["q"] == pytest.approx({"hit@1": 0, "mrr@10": 0.5, "precision@2": 0.5,
                                      "recall@3": 2 / 3, "ndcg@3": dcg / idcg,
                                      "map": (1 / 2 + 2 / 3) / 3})
    assert set(res) == {"q", "empty"}  # queries of qrels the run answered
    mean = evaluate(run, qrels, ["mrr@10"], missing="zero")
    assert mean["mrr@10"] == pytest.approx(0.5 / 3)  # absent and empty count 0
    with pytest.raises(ConfigError, match="needs a cut-off"):
        evaluate(run, qrels, ["ndcg"])
    with pytest.raises(ConfigError, match="unknown metric 'f1@3'"):
        evaluate(run, qrels, ["f1@3"])
