"""Inference: KV-cache decoding with greedy, temperature, top-k and top-p sampling, token
constraints (a regular grammar or a JSON-schema subset), per-token log-probabilities and
entropies, and uncertainty scores over them."""

from jaxllm.infer.constrain import Constraint, token_texts
from jaxllm.infer.generate import generate, sample_logits

__all__ = ["Constraint", "generate", "sample_logits", "token_texts"]
