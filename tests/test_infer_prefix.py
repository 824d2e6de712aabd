"""Prefix KV cache: a prefix prefilled once and continued by left-padded suffixes gives the
logits of each whole prompt run in one pass by the numpy reference; samples continuing it are
generate's samples of the prompt repeated; bad requests are refused."""

import numpy as np
import pytest
from helpers import CONFIGS, noisy_params
from reference import decoder_logits

from jaxllm.errors import DataError
from jaxllm.infer import generate
from jaxllm.infer.prefix import extend, prefill, sample
from jaxllm.models.decoder import Decoder

CFG = CONFIGS["smol"]  # RoPE, grouped-query attention; context 16 (test_generate's params)
PREFIX = [3, 1, 4, 1, 5]  # left-padded to 8 slots
SUFFIXES = [[9], [2, 6, 5], [3, 5, 8, 9, 7, 9]]  # left-padded to 8 slots behind it


@pytest.mark.parametrize("path", ["cpu", "accelerator"])
def test_prefix_cache_then_suffixes_equal_the_whole_prompts(path):
    """Every position's logits of each suffix, and the prefix's last logits, against the numpy
    reference forward over prefix + suffix (positions 0.., no padding)."""
    model, params = Decoder(CFG), noisy_params(CFG)
    pre = prefill(model, params, PREFIX, pad_to=8, decode_path=path)
    assert pre.cache.size == 8 and pre.ids == tuple(PREFIX)
    got = extend(model, params, pre, SUFFIXES, pad_to=8)
    last = extend(model, params, pre, SUFFIXES, pad_to=8, last_only=True)
    for suffix, logits, end in zip(SUFFIXES, got, last):
        want = decoder_logits(CFG, params, np.asarray([PREFIX + suffix]))[0]
        np.testing.assert_allclose(np.asarray(pre.logits), want[len(PREFIX) - 1], atol=1e-5)
        assert logits.shape == (len(suffix), CFG.vocab_size)
        np.testing.assert_allclose(logits, want[len(PREFIX):], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(end, want[-1], atol=1e-5, rtol=1e-5)


def test_samples_from_a_prefix_are_generates_samples_of_the_prompt_repeated():
    """Samples (3 rows, temperature 1, one seed) continuing the prefix cache equal generate's
    over the prompt given 3 times (its own prefill per row, the same keys), cut at the stop
    token."""
    model, params = Decoder(CFG), noisy_params(CFG)
    pre = prefill(model, params, PREFIX, pad_to=8)
    want = generate(model, params, [PREFIX] * 3, max_new_tokens=8, seed=2, stop_tokens=(13,))
    got = sample(model, params, pre, 3, max_new_tokens=8, seed=2, stop_tokens=(13,))
    assert got == want
    assert len({tuple(r) for r in got}) == 3 and min(map(len, got)) < 8  # drawn apart, cut


@pytest.mark.parametrize("call, match", [
    (lambda m, p: prefill(m, p, []), "prefix is empty"),
    (lambda m, p: prefill(m, p, [1] * 16), "context is 16"),
    (lambda m, p: prefill(m, p, [1], decode_path="tpu"), "decode_path='tpu'"),
    (lambda m, p: extend(m, p, prefill(m, p, PREFIX, pad_to=8), [[1], []]), "suffix is empty"),
    (lambda m, p: extend(m, p, prefill(m, p, PREFIX, pad_to=8), [[1] * 9]), "leaves 8"),
    (lambda m, p: sample(m, p, prefill(m, p, PREFIX, pad_to=8), 2, max_new_tokens=9),
     "leaves 8"),
    (lambda m, p: sample(m, p, prefill(m, p, PREFIX, pad_to=8), 0, max_new_tokens=4), "n=0"),
])
def test_bad_requests_are_refused(call, match):
    with pytest.raises(DataError, match=match):
        call(Decoder(CFG), noisy_params(CFG))
