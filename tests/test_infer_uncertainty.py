"""Per-token log-probabilities and entropies from generate, and the sequence uncertainty scores
over them, against numpy computations from the logits (generate's own, and an independent
forward pass of the numpy reference decoder)."""

import numpy as np
import pytest

from helpers import GPT, noisy_params
from jaxllm.errors import DataError
from jaxllm.infer import generate
from jaxllm.infer.uncertainty import agreement, max_entropy, mean_nll
from jaxllm.models.decoder import Decoder
from reference import decoder_logits

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3, 5, 8, 9, 7]]


def log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_log_probs_and_entropies_equal_numpy_from_the_logits():
    """Sampled rows (temperature 0.7, top-k 20, a stop token that cuts two rows): each token's
    log-probability and each step's entropy under the model's own softmax, equal to numpy's
    log-softmax of the returned logits and of the numpy reference decoder run over the
    prompt + generated tokens (which fits the context of 16 for 8 new tokens)."""
    model, params = Decoder(GPT), noisy_params(GPT)
    ids, logits, logp, ent = generate(model, params, PROMPTS, max_new_tokens=8, seed=0,
                                      temperature=0.7, top_k=20, return_logits=True,
                                      return_scores=True, stop_tokens=(7,))
    assert [len(x) for x in logp] == [len(x) for x in ids] == [len(x) for x in ent] == [4, 8, 6]
    for prompt, row, lg, lp, en in zip(PROMPTS, ids, logits, logp, ent):
        want = log_softmax(lg)
        np.testing.assert_allclose(lp, want[np.arange(len(row)), row], atol=1e-5)
        np.testing.assert_allclose(en, -(np.exp(want) * want).sum(-1), atol=1e-5)
        ref = log_softmax(decoder_logits(GPT, params, np.asarray([prompt + row]))[0])
        steps = ref[len(prompt) - 1: len(prompt) - 1 + len(row)]
        np.testing.assert_allclose(lp, steps[np.arange(len(row)), row], atol=1e-4)
        assert mean_nll(lp) == pytest.approx(-steps[np.arange(len(row)), row].mean(), abs=1e-4)
        assert max_entropy(en) == pytest.approx((-(np.exp(steps) * steps).sum(-1)).max(), abs=1e-4)


def test_padding_prompts_to_a_bucket_changes_no_token_or_score():
    model, params = Decoder(GPT), noisy_params(GPT)
    plain = generate(model, params, PROMPTS, max_new_tokens=6, seed=0, temperature=0.7,
                     return_scores=True)
    padded = generate(model, params, PROMPTS, max_new_tokens=6, seed=0, temperature=0.7,
                      return_scores=True, pad_to=16)  # 7 -> 10 slots (16 - 6 new tokens)
    assert padded[0] == plain[0]
    for a, b in zip(padded[1] + padded[2], plain[1] + plain[2]):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_sequence_scores_by_hand():
    assert mean_nll(np.log([0.5, 0.25])) == pytest.approx((np.log(2) + np.log(4)) / 2)
    assert max_entropy([0.1, 0.9, 0.3]) == pytest.approx(0.9)
    assert mean_nll([]) == 0.0 and max_entropy([]) == 0.0
    assert agreement(["Paris", "paris.", " PARIS ", "Lyon"]) == 0.75
    assert agreement(["a", "b", "c"]) == pytest.approx(1 / 3)
    with pytest.raises(DataError, match="at least one answer"):
        agreement([])
