"""Evaluation metrics: generation (BLEU, chrF, ROUGE), classification, fairness, WEAT.

Generation metrics equal sacrebleu 2.6 and rouge-score 0.1.2; group fairness equals fairlearn.
ir.py: hit rate, MRR, nDCG, recall, precision and MAP at k from TREC run/qrels dictionaries,
equal to pytrec_eval (`jaxllm.metrics.ir.evaluate`). weat.py: WEAT score and effect size on
word-vector arrays, equal to responsibly.
rag.py: faithfulness (lexical, model-judged) and relevancy (judged, embedding cosine) of an
answer, AUROC of uncertainty scores.
"""

from jaxllm.metrics.bleu import BLEUScore, corpus_bleu, sentence_bleu, sentence_bleu_scores
from jaxllm.metrics.chrf import CHRFScore, corpus_chrf, sentence_chrf, sentence_chrf_scores
from jaxllm.metrics.classification import (accuracy, confusion_matrix,
                                           expected_calibration_error, precision_recall_fscore)
from jaxllm.metrics.counterfactual import counterfactual_scores, counterfactual_shift
from jaxllm.metrics.fairness import (demographic_parity_difference, demographic_parity_ratio,
                                     equal_opportunity_difference, equal_opportunity_ratio,
                                     equalized_odds_difference, equalized_odds_ratio, group_table)
from jaxllm.metrics.rouge import RougeScore, rouge
from jaxllm.metrics.weat import WeatResult, weat
from jaxllm.metrics import ir  # IR metrics: jaxllm.metrics.ir.evaluate
from jaxllm.metrics import rag  # answers: faithfulness, relevancy, auroc

__all__ = ["BLEUScore", "CHRFScore", "RougeScore", "WeatResult", "accuracy", "confusion_matrix",
           "corpus_bleu", "corpus_chrf", "counterfactual_scores", "counterfactual_shift",
           "demographic_parity_difference", "demographic_parity_ratio",
           "equal_opportunity_difference", "equal_opportunity_ratio", "equalized_odds_difference",
           "equalized_odds_ratio", "expected_calibration_error", "group_table", "ir",
           "precision_recall_fscore", "rag", "rouge", "sentence_bleu", "sentence_bleu_scores",
           "sentence_chrf", "sentence_chrf_scores", "weat"]
