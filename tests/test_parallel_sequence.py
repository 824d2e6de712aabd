"""Ring attention (sequence parallelism) against the reference attention, and its errors.

The whole train step on sequence=8, data=2,sequence=4, data=2,sequence=2,tensor=2 and
fsdp=2,sequence=4 against one device, and dropout under ring attention, are in
test_parallel_layouts.py (LAYOUTS, test_dropout_under_ring_attention)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import error_of

from jaxllm.models import attention as attn
from jaxllm.parallel.mesh import make_mesh


@pytest.mark.parametrize("gather", [False, True], ids=["ring", "allgather"])
def test_ring_attention_equals_the_reference(gather):
    """Values and gradients of ring attention (and of its all-gather alternative) over
    data=2,sequence=4 (zig-zag order in, natural order out) equal the reference attention's:
    grouped-query heads (4 over 2), one row packed with three documents and one plain causal
    row."""
    mesh = make_mesh("data=2,sequence=4")
    B, T, N, K, H = 2, 16, 4, 2, 8
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(B, T, h, H)), jnp.float32) for h in (N, K, K))
    seg = jnp.asarray([[1] * 5 + [2] * 8 + [3] * 3, [1] * T], jnp.int32)
    w = jnp.asarray(rng.normal(size=(B, T, N, H)), jnp.float32)
    order = attn.zigzag_order(T, 4)

    def ring(q, k, v):
        y = attn.ring_attention(q[:, order], k[:, order], v[:, order], seg[:, order], mesh,
                                gather=gather)
        return jnp.sum(y[:, np.argsort(order)] * w)

    def reference(q, k, v):
        idx = jnp.arange(T)
        mask = attn.attention_mask(idx, idx, q_segments=seg, kv_segments=seg)
        return jnp.sum(attn.reference_attention(q, k, v, mask=mask) * w)

    got = jax.jit(jax.value_and_grad(ring, (0, 1, 2)))(q, k, v)
    want = jax.value_and_grad(reference, (0, 1, 2))(q, k, v)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for g, r in zip(got[1], want[1]):
        np.testing.assert_allclose(g, r, atol=2e-6)


def test_zigzag_order_pairs_chunk_i_with_chunk_2n_minus_1_minus_i():
    assert attn.zigzag_order(8, 2).tolist() == [0, 1, 6, 7, 2, 3, 4, 5]
    assert sorted(attn.zigzag_order(48, 4)) == list(range(48))


@pytest.mark.parametrize("argv, expected", [
    (["--set", "model.attention=ring"], "model.attention=ring needs a mesh with a sequence axis"),
    (["--mesh", "data=8", "--set", "model.attention=ring"],
     "model.attention=ring needs a mesh with a sequence axis"),
    (["--mesh", "sequence=8", "--set", "model.max_len=24"],
     "model.max_len=24 is not divisible by 2 x sequence=8"),
    (["--mesh", "sequence=8", "--set", "model.max_len=32", "--set", "model.attention=blocked"],
     "model.attention=blocked with the mesh's sequence axis"),
    (["--mesh", "sequence=8", "--set", "model.kind=encoder"],
     "the mesh's sequence axis (sequence=8) serves decoder language modelling"),
])
def test_sequence_axis_errors(argv, expected, capsys, tmp_path):
    line = error_of(["train", "--preset", "shakespeare-char", "--steps", "1", "--out",
                     str(tmp_path / "r"), *argv], capsys)
    assert expected in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("attention, collective", [("auto", "ppermute"), ("ring", "ppermute"),
                                                   ("allgather", "all_gather"),
                                                   ("reference", None)])
def test_the_decoder_attends_by_the_ring_on_a_sequence_mesh(attention, collective):
    """Traced as the train step traces it (activations split over a sequence=8 mesh), the
    decoder passes K/V around the ring (ppermute) with model.attention auto or ring, gathers
    them with allgather; off such a mesh (the layout tests' single device) it does neither."""
    from dataclasses import replace

    from helpers import MESH_CFG

    from jaxllm import models
    from jaxllm.models.decoder import Decoder
    from jaxllm.models.layers import split_activations
    from jaxllm.parallel.layout import Layout

    cfg = replace(MESH_CFG, attention=attention, n_layers=1)
    layout = Layout.build(make_mesh("sequence=8"))
    params = jax.eval_shape(lambda: models.init_params(cfg, jax.random.PRNGKey(0))[0])
    tokens = jax.ShapeDtypeStruct((2, 16), jnp.int32)

    def trace():  # a new function each time: make_jaxpr caches by function
        return str(jax.make_jaxpr(lambda p, t: Decoder(cfg).apply({"params": p}, t))(params,
                                                                                     tokens))

    with split_activations(lambda x: layout.sharding(layout.batch_spec(x.ndim))):
        on_mesh = trace()
    for name in ("ppermute", "all_gather"):
        assert (name in on_mesh) == (name == collective), name
        assert name not in trace()
