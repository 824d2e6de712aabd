"""The two real pretrained models against independent numpy forwards on the same weights:
SmolLM2-135M-Instruct (GGUF, Q/K permuted, pairwise RoPE in the reference) and all-MiniLM-L6-v2
(safetensors). The weights are loaded once per session; the asset packages are installed by
`make test`, so these tests never skip."""

import numpy as np
import pytest

from jaxllm import pretrained
from reference_pretrained import LlamaGGUF, sentence_embedding

PROMPTS = ["The capital of France is Paris, and the capital of Germany is",
           "To be, or not to be, that is the question: whether 'tis nobler in the mind",
           "def fibonacci(n):\n    if n < 2:\n        return n\n    return"]
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="session")
def smol():
    return pretrained.load("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def smol_reference():
    from jaxllm.io.gguf import read_gguf

    meta, tensors = read_gguf(pretrained.package_path("smollm2-135m-instruct"))
    return LlamaGGUF(meta, tensors)


@pytest.fixture(scope="session")
def minilm():
    return pretrained.load("all-minilm-l6-v2")


@pytest.fixture(scope="session")
def minilm_reference():
    import json

    from safetensors.numpy import load_file

    d = pretrained.package_path("all-minilm-l6-v2")
    return load_file(str(d / "model.safetensors")), json.loads((d / "config.json").read_text())


def test_smollm2_config_is_the_published_one(smol):
    c = smol.config
    assert (c.n_layers, c.d_model, c.n_heads, c.kv_heads, c.ff_size, c.vocab_size) == (
        30, 576, 9, 3, 1536, 49152)
    assert c.rope_theta == 1e5 and c.tie_embeddings and c.norm == "rmsnorm" and c.mlp == "swiglu"


def test_smollm2_logits_equal_numpy_reference(smol, smol_reference):
    ids = [smol.tokenizer.encode(p) for p in PROMPTS]
    n = min(len(x) for x in ids)
    assert n >= 12
    prompts = [x[:n] for x in ids]
    got = smol.logits(prompts)  # (3, n, vocab), one batch
    for row, prompt in enumerate(prompts):
        want, _ = smol_reference.forward(prompt)
        diff = np.max(np.abs(got[row] - want))
        assert diff <= 1e-3, f"prompt {row}: max |diff| {diff}"


def test_smollm2_greedy_continuation_equals_numpy_reference(smol, smol_reference):
    tok = smol.tokenizer
    chat = tok.encode(tok.apply_chat_template([{"role": "user", "content": QUESTION}]))
    prompts = [chat, tok.encode(PROMPTS[1])]  # different lengths: left padding
    got = smol.generate(prompts, max_new_tokens=32, temperature=0, stop_tokens=())
    for prompt, out in zip(prompts, got):
        assert out == smol_reference.greedy(prompt, 32)
    assert tok.decode(got[0]).startswith("The capital of France is Paris.")


@pytest.mark.slow
def test_smollm2_sampling_is_the_same_with_and_without_cache(smol):
    """A 60-token prompt and 12 new tokens: the KV cache starts at 64 slots and grows to 72
    (cache_sizes) after 4 tokens; sampling with one seed draws the same tokens as re-running
    the whole window each step, so every step's logits agree."""
    from jaxllm.infer.generate import cache_sizes

    ids = smol.tokenizer.encode(" ".join(PROMPTS))
    prompts = [ids[:60], ids[:25]]  # left padding too
    assert cache_sizes(60, 72) == [64, 72]
    kw = dict(max_new_tokens=12, temperature=1.0, seed=7, stop_tokens=())
    cached = smol.generate(prompts, **kw)
    assert cached == smol.generate(prompts, use_cache=False, **kw)
    assert [len(c) for c in cached] == [12, 12]


def test_smollm2_perplexity_equals_the_reference_cross_entropy(smol, smol_reference):
    ids = smol.tokenizer.encode(" ".join(PROMPTS))[:41]
    got = smol.perplexity(ids, window=20)  # windows [0, 20), [20, 40): 40 predictions
    ce = []
    for start in (0, 20):
        logits, _ = smol_reference.forward(ids[start:start + 20])
        logits = logits.astype(np.float64)
        z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
        ce += list(z - logits[np.arange(20), ids[start + 1:start + 21]])
    assert got["tokens"] == 40
    assert abs(got["loss"] - np.mean(ce)) < 1e-4


SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.",
             "The new movie is awesome, and the actors were brilliant throughout the film.",
             "Anarchism is a political philosophy and movement that is skeptical of authority "
             "and rejects all involuntary, coercive forms of hierarchy."]


def test_minilm_embeddings_equal_numpy_reference(minilm, minilm_reference):
    tensors, hf_cfg = minilm_reference
    got = minilm.embed(SENTENCES, batch_size=2)  # several lengths: padding and two buckets
    ids = minilm.tokenizer.encode_batch(SENTENCES, add_special_tokens=True)
    assert ids[0][0] == 101 and ids[0][-1] == 102  # [CLS] ... [SEP]
    want = np.stack([sentence_embedding(tensors, hf_cfg, x) for x in ids])
    assert got.shape == (4, 384)
    assert np.max(np.abs(got - want)) <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    sims = got @ got.T
    assert sims[0, 1] > 0.5 > max(sims[0, 2], sims[0, 3])


def test_top_level_embed_uses_the_cached_model(minilm):
    import jaxllm

    np.testing.assert_array_equal(jaxllm.embed(SENTENCES[:2]), minilm.embed(SENTENCES[:2]))


def test_minilm_long_text_is_truncated_with_a_warning(minilm, minilm_reference):
    tensors, hf_cfg = minilm_reference
    text = " ".join(SENTENCES * 12)
    long = minilm.tokenizer.encode(text, add_special_tokens=True)
    assert len(long) > 256
    with pytest.warns(UserWarning, match="truncated to 256"):
        got = minilm.embed([text])
    want = sentence_embedding(tensors, hf_cfg, long[:255] + [102])
    assert np.max(np.abs(got[0] - want)) <= 1e-5


def test_prompt_longer_than_the_context_is_an_error(smol):
    from jaxllm.errors import DataError

    with pytest.raises(DataError, match="context"):
        smol.logits(np.ones((1, smol.config.max_len + 1), np.int32))


@pytest.mark.slow
def test_cli_eval_prints_perplexity(smol, capsys):
    # (`generate --chat` is the same PretrainedDecoder.chat the greedy test checks; its own
    # compile would add ~30 s, so the CLI test covers eval only.)
    from jaxllm.cli.main import main

    assert main(["eval", "--model", "smollm2-135m-instruct", "--data", "shakespeare",
                 "--max-tokens", "41", "--window", "20"]) == 0
    out = capsys.readouterr().out
    assert "40 tokens" in out and "perplexity" in out
