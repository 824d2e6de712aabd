"""The two real pretrained models against independent numpy forwards on the same weights:
SmolLM2-135M-Instruct (GGUF, Q/K permuted, pairwise RoPE in the reference) and all-MiniLM-L6-v2
(safetensors). The weights are loaded once per session; the asset packages are installed by
`make test`, so these tests never skip."""

import numpy as np
import pytest

from jaxllm import pretrained
from reference_pretrained import LlamaGGUF, sentence_embedding

# Token-id prompts (SmolLM2 vocabulary): the ChatML head of a conversation and plain English.
SMOL_PROMPTS = [
    [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308],
    [504, 3458, 282, 4649, 314, 7042, 30, 378, 3458, 282, 8830, 314],
    [19556, 28, 2107, 1182, 260, 2303, 43, 198, 1205, 442, 1060, 1530],
]


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
    got = smol.logits(SMOL_PROMPTS)  # (3, 12, vocab), one batch
    for row, prompt in enumerate(SMOL_PROMPTS):
        want, _ = smol_reference.forward(prompt)
        diff = np.max(np.abs(got[row] - want))
        assert diff <= 1e-3, f"prompt {row}: max |diff| {diff}"


def test_smollm2_greedy_continuation_equals_numpy_reference(smol, smol_reference):
    prompts = [SMOL_PROMPTS[0], SMOL_PROMPTS[1][:7]]  # different lengths: left padding
    got = smol.generate(prompts, max_new_tokens=32, temperature=0, stop_tokens=())
    for prompt, out in zip(prompts, got):
        assert out == smol_reference.greedy(prompt, 32)


def test_minilm_embeddings_equal_numpy_reference(minilm, minilm_reference):
    tensors, hf_cfg = minilm_reference
    ids = [[101, 7592, 2088, 102], [101, 2023, 2003, 1037, 3231, 6251, 1012, 102],
           [101] + list(range(2000, 2030)) + [102]]  # several lengths: padding and two buckets
    got = minilm.embed_ids(ids, batch_size=2)
    want = np.stack([sentence_embedding(tensors, hf_cfg, x) for x in ids])
    assert got.shape == (3, 384)
    assert np.max(np.abs(got - want)) <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_minilm_long_text_is_truncated_with_a_warning(minilm, minilm_reference):
    tensors, hf_cfg = minilm_reference
    long = [101] + [2000 + i % 500 for i in range(300)] + [102]
    with pytest.warns(UserWarning, match="truncated to 256"):
        got = minilm.embed_ids([long])
    want = sentence_embedding(tensors, hf_cfg, long[:255] + [102])
    assert np.max(np.abs(got[0] - want)) <= 1e-5


def test_prompt_longer_than_the_context_is_an_error(smol):
    from jaxllm.errors import DataError

    with pytest.raises(DataError, match="context"):
        smol.logits(np.ones((1, smol.config.max_len + 1), np.int32))
