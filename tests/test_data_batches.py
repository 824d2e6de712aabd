"""Batch iterators: determinism, exact resumption, window/packed/sequential invariants, errors."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.data.batches import (
    PAD_ID,
    BatchIterator,
    eval_batches,
    join_tokens,
    sequential_batches,
)
from jaxllm.errors import DataError
from jaxllm.text import CharTokenizer


def unique_docs(lengths):
    """Documents whose tokens are all distinct and >= 1, so a token tells its document and index."""
    docs, nxt = [], 1
    for n in lengths:
        docs.append(np.arange(nxt, nxt + n, dtype=np.int32))
        nxt += n
    return docs


def token_owner(docs):
    """token -> (document, index in document)."""
    return {int(t): (d, i) for d, doc in enumerate(docs) for i, t in enumerate(doc)}


def assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --- windows -------------------------------------------------------------------------------------


def test_windows_equal_a_nanogpt_reference():
    docs = unique_docs([50, 7, 120])
    sep = np.array([0], np.int32)
    B, T, seed = 6, 16, 3
    it = BatchIterator(docs, B, T, seed, "windows", separator=sep)
    data = np.concatenate([docs[0], sep, docs[1], sep, docs[2]])
    for step in (0, 1, 17):
        # nanoGPT get_batch, with numpy's generator seeded by (seed, step)
        rng = np.random.default_rng([seed, step])
        ix = rng.integers(0, len(data) - T, size=B)
        x = np.stack([data[i:i + T] for i in ix])
        y = np.stack([data[i + 1:i + 1 + T] for i in ix])
        b = it.batch(step)
        assert b["inputs"].dtype == np.int32 and b["inputs"].shape == (B, T)
        np.testing.assert_array_equal(b["inputs"], x)
        np.testing.assert_array_equal(b["targets"], y)


def test_windows_stream_is_the_joined_text():
    texts = ["First Citizen:\nSpeak.\n", "All:\nSpeak, speak.\n", "x"]
    tok = CharTokenizer.train(texts + ["\n"])
    it = BatchIterator([tok.encode_array(t) for t in texts], 2, 4, 0, "windows",
                       separator=tok.encode_array("\n"))
    np.testing.assert_array_equal(it.stream, tok.encode_array("\n".join(texts)))


def test_join_tokens():
    docs = [np.array([1, 2]), np.array([], np.int32), np.array([3])]
    np.testing.assert_array_equal(join_tokens(docs, [9, 9]), [1, 2, 9, 9, 9, 9, 3])
    np.testing.assert_array_equal(join_tokens(docs), [1, 2, 3])


@pytest.mark.parametrize("sampling", ["windows", "packed"])
def test_batches_are_pure_functions_of_seed_and_step(sampling):
    docs = unique_docs([40, 3, 90, 17, 0, 55])
    a = BatchIterator(docs, 4, 8, 7, sampling)
    b = BatchIterator(docs, 4, 8, 7, sampling)
    seen = [next(a) for _ in range(30)]
    for step in (29, 0, 13, 13):
        assert_batches_equal(b.batch(step), seen[step])
    assert a.step == 30 and b.step == 0  # batch() does not move the iterator
    other = BatchIterator(docs, 4, 8, 8, sampling)
    assert not all(np.array_equal(other.batch(s)["inputs"], seen[s]["inputs"]) for s in range(5))


@settings(max_examples=20, deadline=None)
@given(sampling=st.sampled_from(["windows", "packed"]), step=st.integers(0, 40),
       rows=st.lists(st.integers(0, 5), min_size=1, max_size=6))
def test_some_rows_of_a_batch_are_those_rows_of_the_whole_batch(sampling, step, rows):
    """What a process of a multi-host run loads: its rows, bitwise as in the whole batch."""
    it = BatchIterator(unique_docs([30, 5, 17, 40]), 6, 8, 1, sampling)
    whole, part = it.batch(step), it.batch(step, rows)
    assert_batches_equal(part, {k: v[sorted(set(rows))] for k, v in whole.items()})
    it.rows, it.step = rows, step
    assert_batches_equal(next(it), part)
    with pytest.raises(DataError, match="row numbers in 0..5"):
        it.batch(step, [6])


@pytest.mark.parametrize("sampling", ["windows", "packed"])
def test_resume_from_state_gives_the_same_batches(sampling):
    docs = unique_docs([40, 3, 90, 17, 55])
    run = BatchIterator(docs, 5, 8, 1, sampling)
    for _ in range(11):
        next(run)
    state = json.loads(json.dumps(run.state()))  # saved beside a checkpoint as JSON
    assert state["step"] == 11 and state["sampling"] == sampling and state["seed"] == 1
    resumed = BatchIterator(docs, 5, 8, 1, sampling)
    resumed.restore(state)
    for _ in range(40):  # packed: several epochs (rows_per_epoch is 24)
        assert_batches_equal(next(resumed), next(run))


def test_restore_rejects_another_run():
    docs = unique_docs([40, 30])
    state = BatchIterator(docs, 2, 8, 0, "windows").state()
    changed = unique_docs([40, 31])
    with pytest.raises(DataError, match="data changed"):
        BatchIterator(changed, 2, 8, 0, "windows").restore(state)
    same_size = [d + 1000 for d in docs]  # same lengths, other tokens
    with pytest.raises(DataError, match="data changed"):
        BatchIterator(same_size, 2, 8, 0, "windows").restore(state)
    with pytest.raises(DataError, match="sampling='windows'.*sampling='packed'"):
        BatchIterator(docs, 2, 8, 0, "packed").restore(state)
    with pytest.raises(DataError, match="batch_size=2.*batch_size=3"):
        BatchIterator(docs, 3, 8, 0, "windows").restore(state)
    with pytest.raises(DataError, match="state"):
        BatchIterator(docs, 2, 8, 0, "windows").restore({"seed": 0})


# --- packed --------------------------------------------------------------------------------------


def epoch_rows(it, epoch):
    """The rows (seq_len + 1 tokens each) of one epoch, read back through batch()."""
    R, B = it.rows_per_epoch, it.batch_size
    first, last = epoch * R, (epoch + 1) * R
    rows = {}
    for step in range(first // B, -(-last // B)):
        b = it.batch(step)
        for i in range(B):
            r = step * B + i
            if first <= r < last:
                rows[r] = {k: v[i] for k, v in b.items()}
    return [rows[r] for r in range(first, last)]


def check_packed(docs, batch_size, seq_len, seed, epochs=2):
    it = BatchIterator(docs, batch_size, seq_len, seed, "packed")
    owner = token_owner(docs)
    n_tokens = sum(len(d) for d in docs)
    assert it.rows_per_epoch == -(-n_tokens // (seq_len + 1))
    orders = []
    for epoch in range(epochs):
        stream = []
        for row in epoch_rows(it, epoch):
            x, y = row["inputs"], row["targets"]
            seg, pos, mask = row["segment_ids"], row["positions"], row["loss_mask"]
            assert x.dtype == y.dtype == seg.dtype == pos.dtype == np.int32
            assert mask.dtype == np.float32
            full = np.concatenate([x, y[-1:]])  # the row's seq_len + 1 tokens
            np.testing.assert_array_equal(full[1:], y)
            real = full != PAD_ID
            # padding only at the end of a row, and only in the epoch's last row
            assert real.tolist() == sorted(real.tolist(), reverse=True)
            stream.extend(int(t) for t in full[real])
            for t in range(seq_len):
                if x[t] == PAD_ID:
                    assert seg[t] == 0 and pos[t] == 0 and mask[t] == 0
                    continue
                d, k = owner[int(x[t])]
                starts = t == 0 or seg[t - 1] != seg[t]
                assert seg[t] == (1 if t == 0 else seg[t - 1] + starts)
                if starts:
                    assert pos[t] == 0
                    assert t == 0 or owner.get(int(x[t - 1]), (None,))[0] != d
                else:
                    assert pos[t] == pos[t - 1] + 1 and owner[int(x[t - 1])] == (d, k - 1)
                # the loss mask, from the independent token -> document map
                same_doc = y[t] != PAD_ID and owner[int(y[t])] == (d, k + 1)
                assert mask[t] == float(same_doc), (t, x[t], y[t])
        # every token of every document exactly once, each document contiguous and in order
        assert len(stream) == n_tokens == len(set(stream))
        order, i = [], 0
        while i < len(stream):
            d, k = owner[stream[i]]
            assert k == 0
            np.testing.assert_array_equal(stream[i:i + len(docs[d])], docs[d])
            order.append(d)
            i += len(docs[d])
        assert sorted(order) == [d for d in range(len(docs)) if len(docs[d])]
        orders.append(order)
    return orders


def test_packed_invariants():
    docs = unique_docs([5, 30, 1, 0, 12, 64, 9, 2, 17])
    orders = check_packed(docs, batch_size=3, seq_len=8, seed=0, epochs=3)
    assert len({tuple(o) for o in orders}) > 1  # documents are reshuffled every epoch


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=8).filter(any),
    st.integers(1, 5),
    st.integers(1, 12),
    st.integers(0, 2**31),
)
def test_packed_invariants_hypothesis(lengths, batch_size, seq_len, seed):
    check_packed(unique_docs(lengths), batch_size, seq_len, seed)


def test_packed_no_target_crosses_documents():
    docs = unique_docs([3, 3, 3])  # 9 tokens, rows of 5: every row has a boundary
    it = BatchIterator(docs, 2, 4, 0, "packed")
    b = it.batch(0)
    owner = token_owner(docs)
    for x_row, y_row, m_row in zip(b["inputs"], b["targets"], b["loss_mask"]):
        for x, y, m in zip(x_row, y_row, m_row):
            if m:
                assert owner[int(x)][0] == owner[int(y)][0]
    assert b["loss_mask"].sum() < b["loss_mask"].size


# --- eval and sequential batches ----------------------------------------------------------------


@pytest.mark.parametrize("sampling", ["windows", "packed"])
def test_eval_batches_are_fixed(sampling):
    docs = unique_docs([40, 60, 33])
    first = eval_batches(docs, 4, 3, 8, 5, sampling)
    again = eval_batches(docs, 4, 3, 8, 5, sampling)
    assert len(first) == 4
    for a, b in zip(first, again):
        assert_batches_equal(a, b)
    it = BatchIterator(docs, 3, 8, 5, sampling)
    assert_batches_equal(first[2], it.batch(2))


@pytest.mark.parametrize("n_tokens,batch_size,seq_len", [(50, 3, 8), (49, 3, 8), (17, 2, 8),
                                                         (2, 4, 1), (9, 1, 8), (100, 4, 33)])
def test_sequential_batches_cover_the_stream_once(n_tokens, batch_size, seq_len):
    stream = np.arange(1, n_tokens + 1, dtype=np.int32)
    docs = [stream[:n_tokens // 2], stream[n_tokens // 2:]]  # joined without separator
    batches = sequential_batches(docs, batch_size, seq_len)
    inputs, targets, masks = [], [], []
    for b in batches:
        assert b["inputs"].shape == b["targets"].shape == b["loss_mask"].shape == (batch_size,
                                                                                  seq_len)
        inputs.append(b["inputs"].reshape(-1))
        targets.append(b["targets"].reshape(-1))
        masks.append(b["loss_mask"].reshape(-1))
    x, y, m = np.concatenate(inputs), np.concatenate(targets), np.concatenate(masks) > 0
    # each (input, target) pair of the stream exactly once, in order
    np.testing.assert_array_equal(x[m], stream[:-1])
    np.testing.assert_array_equal(y[m], stream[1:])
    assert m.sum() == n_tokens - 1 and not m[n_tokens - 1:].any()
    # as few batches as possible
    assert len(batches) == -(-(-(-(n_tokens - 1) // seq_len)) // batch_size)


def test_sequential_batches_use_the_separator():
    b = sequential_batches([np.array([1, 2]), np.array([3])], 1, 8, separator=[7])[0]
    np.testing.assert_array_equal(b["inputs"][0, :3], [1, 2, 7])
    np.testing.assert_array_equal(b["targets"][0, :3], [2, 7, 3])
    assert b["loss_mask"][0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]


# --- errors --------------------------------------------------------------------------------------


def test_errors():
    docs = unique_docs([10, 20])
    with pytest.raises(DataError, match="no tokens"):
        BatchIterator([], 2, 8, 0)
    with pytest.raises(DataError, match="no tokens"):
        BatchIterator([np.zeros(0, np.int32)], 2, 8, 0)
    with pytest.raises(DataError, match="seq_len=0"):
        BatchIterator(docs, 2, 0, 0)
    with pytest.raises(DataError, match="batch_size=0"):
        BatchIterator(docs, 0, 8, 0)
    with pytest.raises(DataError, match="seed=-1"):
        BatchIterator(docs, 2, 8, -1)
    with pytest.raises(DataError, match="data.sampling='random'.*windows, packed"):
        BatchIterator(docs, 2, 8, 0, "random")
    with pytest.raises(DataError, match="1-D"):
        BatchIterator([np.zeros((2, 2), np.int32)], 2, 8, 0)
    with pytest.raises(DataError, match="step=-1"):
        BatchIterator(docs, 2, 8, 0).batch(-1)
    with pytest.raises(DataError, match="n_batches=0"):
        eval_batches(docs, 0, 2, 8, 0)


def test_short_stream_error_says_what_is_needed():
    docs = [np.arange(50, dtype=np.int32)]
    with pytest.raises(DataError) as e:
        BatchIterator(docs, 2, 64, 0, "windows", name="validation")
    msg = str(e.value)
    assert "validation split has 50 tokens" in msg and "needs 65" in msg
    assert "model.max_len" in msg and "val_fraction" in msg
    BatchIterator(docs, 2, 49, 0, "windows")  # 50 tokens: exactly one window of 49 + 1
    BatchIterator(docs, 2, 64, 0, "packed")  # packing pads instead


def test_encode_pairs_cuts_sources_and_targets_to_their_own_widths():
    from jaxllm.data.pairs import encode_pairs

    tok = CharTokenizer.train(["abcdef"])
    a, b, c, d = (tok.encode(x)[0] for x in "abcd")
    pairs = [("abcdef", "abcde"), ("ab", "a")]
    rows = encode_pairs(tok, pairs, max_len=4, end_id=99, target_len=3)
    np.testing.assert_array_equal(rows["source"], [[a, b, c, d], [a, b, 0, 0]])
    np.testing.assert_array_equal(rows["source_mask"], [[1, 1, 1, 1], [1, 1, 0, 0]])
    np.testing.assert_array_equal(rows["target"], [[a, b, 99], [a, 99, 0]])
    np.testing.assert_array_equal(rows["target_mask"], [[1, 1, 1], [1, 1, 0]])
    same = encode_pairs(tok, pairs, max_len=4, end_id=99)  # target_len defaults to max_len
    np.testing.assert_array_equal(same["target"], [[a, b, c, 99], [a, 99, 0, 0]])
