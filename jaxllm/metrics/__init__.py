"""Evaluation metrics.

- ir.py: hit rate, MRR, nDCG, recall, precision and MAP at k from TREC-style run/qrels
  dictionaries, equal to pytrec_eval (trec_eval).
"""

from jaxllm.metrics.ir import evaluate, evaluate_per_query

__all__ = ["evaluate", "evaluate_per_query"]
