"""Sequence-level uncertainty from what generate returns (return_scores=True) or from sampling.

    ids, logp, ent = generate(model, params, prompts, return_scores=True, ...)
    mean_nll(logp[0])        # mean negative log-likelihood of the answer's tokens (nats)
    max_entropy(ent[0])      # the largest per-step entropy of the model's distribution (nats)
    agreement(["Paris", "paris.", "Lyon"])   # 2/3: the share of samples equal to the commonest

Higher mean NLL and max entropy, and lower agreement, mean a less certain answer. An empty
answer has mean NLL and max entropy 0 (nothing was uncertain) by this definition.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from jaxllm.errors import DataError


def mean_nll(log_probs) -> float:
    """-mean(log p(token)) over the generated tokens; 0.0 for none."""
    lp = np.asarray(log_probs, np.float64)
    return float(-lp.mean()) if lp.size else 0.0


def max_entropy(entropies) -> float:
    """The largest per-token entropy; 0.0 for none."""
    e = np.asarray(entropies, np.float64)
    return float(e.max()) if e.size else 0.0


def normalize_answer(text: str) -> str:
    """Lowercase, punctuation dropped, whitespace collapsed: how answers are compared."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def agreement(answers: list[str], normalize=normalize_answer) -> float:
    """The fraction of answers equal (after normalize) to the most common one; 1.0 when all
    agree, 1/n when all differ. Needs at least one answer."""
    if not answers:
        raise DataError("agreement needs at least one answer; got an empty list")
    counts = Counter(normalize(a) for a in answers)
    return counts.most_common(1)[0][1] / len(answers)
