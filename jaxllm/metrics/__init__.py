"""Evaluation metrics: generation (BLEU, chrF, ROUGE), classification, fairness.

Generation metrics equal sacrebleu 2.6 and rouge-score 0.1.2; fairness metrics equal fairlearn.
"""

from jaxllm.metrics.bleu import BLEUScore, corpus_bleu, sentence_bleu, sentence_bleu_scores
from jaxllm.metrics.chrf import CHRFScore, corpus_chrf, sentence_chrf, sentence_chrf_scores
from jaxllm.metrics.rouge import RougeScore, rouge
