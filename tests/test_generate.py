"""Generation: greedy decoding equals the numpy reference's step-by-step argmax (batched,
cached, sliding); the KV cache changes no logits on either decode path; the samplers draw
from the distributions they claim, stop tokens stop, bad requests are refused."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CONFIGS, GPT, noisy_params
from reference import decoder_logits

from jaxllm.errors import DataError
from jaxllm.infer import generate, sample_logits
from jaxllm.infer.generate import left_padded, cache_sizes
from jaxllm.models.decoder import Decoder

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3, 5, 8, 9, 7]]
# Most calls share one static shape (these 3 prompts, NEW new tokens) so that they share the
# compiled loops; 7 + 12 tokens run past the context of 16, so the window slides too.
NEW = 12


@functools.partial(jax.jit, static_argnums=0)
def full_forward(cfg, params, tokens):
    return Decoder(cfg).apply({"params": params}, tokens)


# 12 new tokens after the 7-token prompt pass the context of 16 (the window slides); a context
# of 80 makes the cache grow (64, then 80 slots) before it slides. Every phase must continue
# where the last one stopped.
@pytest.mark.parametrize("name, max_len, new", [("gpt", 16, 12), ("llama", 16, 12),
                                                ("smol", 80, 90)])
def test_both_decode_paths_give_the_logits_of_the_full_forward_per_step(name, max_len, new):
    """Sampled tokens (temperature 1, a fixed seed) and the logits each was drawn from, step by
    step: both decode paths with the KV cache against the loop without it and, while the whole
    sequence fits the context, against one plain forward pass over each row's sequence."""
    cfg = dataclasses.replace(CONFIGS[name], max_len=max_len)
    model, params = Decoder(cfg), noisy_params(cfg)
    runs = {path: generate(model, params, PROMPTS, max_new_tokens=new, seed=3, decode_path=path,
                           return_logits=True) for path in ("cpu", "accelerator")}
    tokens, logits = generate(model, params, PROMPTS, max_new_tokens=new, seed=3,
                              use_cache=False, return_logits=True)
    assert [len(t) for t in tokens] == [new] * 3
    steps = max_len - max(map(len, PROMPTS))  # the steps before the window slides
    rows = np.zeros((3, max_len), np.int32)  # right-padded: causal, so nothing leaks back
    for row, (prompt, toks) in enumerate(zip(PROMPTS, tokens)):
        rows[row, :len(prompt) + steps] = prompt + toks[:steps]
    full = np.asarray(full_forward(cfg, params, rows))
    for row, prompt in enumerate(PROMPTS):
        want = full[row, len(prompt) - 1:len(prompt) - 1 + steps]
        np.testing.assert_allclose(logits[row][:steps], want, atol=1e-5, rtol=1e-5)
        for path, (got_tokens, got_logits) in runs.items():
            assert got_tokens[row] == tokens[row], path
            np.testing.assert_allclose(got_logits[row], logits[row], atol=1e-5, rtol=1e-5,
                                       err_msg=path)


def reference_greedy(cfg, params, prompt, n):
    """Greedy decoding by its plainest definition: the argmax of the numpy reference forward
    (tests/reference.py) over the last max_len tokens, one token at a time."""
    seq = list(prompt)
    for _ in range(n):
        window = np.asarray([seq[-cfg.max_len:]])
        seq.append(int(np.argmax(decoder_logits(cfg, params, window)[0, -1])))
    return seq[len(prompt):]


@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_greedy_equals_step_by_step_argmax_of_numpy_reference(name):
    """Prompts of different lengths in one batch (left padding), the KV cache, then the sliding
    window past the context: each row equals that prompt decoded alone by the reference."""
    cfg = CONFIGS[name]
    model, params = Decoder(cfg), noisy_params(cfg)
    got = generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=0)
    assert got == [reference_greedy(cfg, params, p, NEW) for p in PROMPTS]


def test_other_params_are_not_decoded_with_the_previous_calls_weights():
    """The CPU decode path keeps its copy of the weights of the params it last saw: params of
    the same shapes, or the same params updated in place of their leaves, must not reuse it."""
    model = Decoder(GPT)
    first, second = noisy_params(GPT, seed=1), noisy_params(GPT, seed=2)
    want = [reference_greedy(GPT, second, p, NEW) for p in PROMPTS]
    generate(model, first, PROMPTS, max_new_tokens=NEW, temperature=0)
    assert generate(model, second, PROMPTS, max_new_tokens=NEW, temperature=0) == want
    edited = jax.tree_util.tree_map(lambda x: x, second)
    edited["blocks"] = first["blocks"]
    assert generate(model, edited, PROMPTS, max_new_tokens=NEW, temperature=0) != want


def test_ids_past_the_tokenizers_vocabulary_are_never_generated():
    """A mesh pads the model's vocabulary (37 rows here) beyond the tokenizer's (say 20): the
    padding rows are never drawn, even when their logits are the largest."""
    model, params = Decoder(GPT), noisy_params(GPT)
    emb = params["embed"]["embedding"]
    params = dict(params, embed={"embedding": emb.at[20:].multiply(50.0)})  # padding favoured
    free = generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=0.5, seed=0)
    assert max(max(o) for o in free) >= 20
    for temperature in (0, 0.5):
        out = generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=temperature,
                       vocab_size=20)
        assert all(0 <= t < 20 for o in out for t in o)


def test_sampling_is_reproducible_per_seed():
    model, params = Decoder(GPT), noisy_params(GPT)
    a = generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=0.5, seed=1)
    assert a == generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=0.5, seed=1)
    assert a != generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=0.5, seed=2)


def test_top_k_one_and_tiny_top_p_are_greedy():
    model, params = Decoder(GPT), noisy_params(GPT)
    greedy = generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=0)
    assert generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=0.5, top_k=1,
                    seed=3) == greedy
    assert generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=0.5, top_p=1e-6,
                    seed=3) == greedy


def empirical(logits, n=40000, **kw):
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    draw = jax.jit(jax.vmap(lambda k: sample_logits(logits[None], k, **kw)[0]))
    return np.bincount(np.asarray(draw(keys)), minlength=logits.shape[-1]) / n


LOGITS = jnp.log(jnp.array([0.05, 0.4, 0.1, 0.25, 0.2]))


def test_temperature_sampling_follows_softmax():
    np.testing.assert_allclose(empirical(LOGITS), [0.05, 0.4, 0.1, 0.25, 0.2], atol=0.01)
    hot = np.asarray(jax.nn.softmax(LOGITS / 2.0))
    np.testing.assert_allclose(empirical(LOGITS, temperature=2.0), hot, atol=0.01)


def test_top_k_keeps_the_k_likeliest_renormalised():
    got = empirical(LOGITS, top_k=2)
    np.testing.assert_allclose(got, [0, 0.4 / 0.65, 0, 0.25 / 0.65, 0], atol=0.01)


def test_top_p_keeps_the_smallest_set_reaching_p():
    # sorted: 0.4, 0.25, 0.2, 0.1, 0.05; p = 0.6 needs 0.4 + 0.25
    got = empirical(LOGITS, top_p=0.6)
    np.testing.assert_allclose(got, [0, 0.4 / 0.65, 0, 0.25 / 0.65, 0], atol=0.01)
    got = empirical(LOGITS, top_p=0.7)  # 0.4 + 0.25 < 0.7: 0.2 joins
    np.testing.assert_allclose(got, [0, 0.4 / 0.85, 0, 0.25 / 0.85, 0.2 / 0.85], atol=0.01)


def test_stop_tokens_cut_each_row():
    model, params = Decoder(GPT), noisy_params(GPT)
    free = generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=0)
    stop = free[0][3]
    cut = generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=0, stop_tokens=[stop])
    for f, c in zip(free, cut):
        assert c == (f[:f.index(stop)] if stop in f else f)


@pytest.mark.parametrize("kwargs, match", [
    ({"prompts": [[]]}, "empty"),
    ({"prompts": [list(range(17))]}, "context is 16"),
    ({"prompts": [[1, 99]]}, "outside the vocabulary"),
    ({"temperature": -1}, "temperature"),
    ({"top_k": 100}, "top_k"),
    ({"top_p": 0.0}, "top_p"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"vocab_size": 38}, "vocab_size=38"),
    ({"decode_path": "gpu"}, "decode_path='gpu'"),
])
def test_bad_requests_are_refused(kwargs, match):
    model, params = Decoder(GPT), noisy_params(GPT)
    args = {"prompts": [[1, 2]], "max_new_tokens": 3, **kwargs}
    with pytest.raises(DataError, match=match):
        generate(model, params, args.pop("prompts"), **args)


def test_kv_cache_sizes_hold_the_prompt_and_double_up_to_the_window():
    assert cache_sizes(32, 160) == [64, 128, 160]
    assert cache_sizes(63, 1000) == [64, 128, 256, 512, 1000]
    assert cache_sizes(64, 2048) == [128, 256, 512, 1024, 2048]
    assert cache_sizes(5, 16) == [16]  # a window under the first size: one cache
    assert cache_sizes(16, 16) == [16]  # a full context: no cached step, the window slides



def test_left_padding_by_hand():
    """Sampling and beam search pad prompts alike: each ends at the last slot; the width is the
    longest prompt rounded up to pad_to, capped by the limit but never below the longest."""
    tokens, mask = left_padded([[5, 6, 7], [8]], pad_to=4, limit=10)
    np.testing.assert_array_equal(tokens, [[0, 5, 6, 7], [0, 0, 0, 8]])
    np.testing.assert_array_equal(mask, [[0, 1, 1, 1], [0, 0, 0, 1]])
    assert left_padded([[5, 6, 7], [8]], pad_to=8, limit=5)[0].shape == (2, 5)
    assert left_padded([[5, 6, 7], [8]], pad_to=8, limit=2)[0].shape == (2, 3)
    assert left_padded([[5, 6, 7], [8]], pad_to=0, limit=9)[0].shape == (2, 3)
