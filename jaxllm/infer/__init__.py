"""Inference: KV-cache decoding with greedy, temperature, top-k and top-p sampling."""

from jaxllm.infer.generate import generate, sample_logits

__all__ = ["generate", "sample_logits"]
