"""Deterministic, resumable batches of token ids.

The data is `list[np.ndarray[int32]]`, one array per document. A batch is a pure function of
(data, seed, step): `it.batch(step)` has no hidden state, so a run resumed at step s sees exactly
the batches it would have seen, and `state()`/`restore()` only need to carry the step.

`it.batch(step, rows)` gives only some rows of that batch (a process of a multi-host run loads
the rows its devices hold): the random numbers are drawn for the whole batch, so the rows are
bitwise those of the whole batch, and only the selected rows' tokens are gathered.

Two samplers:

- "windows" (nanoGPT's get_batch): the documents are joined into one token stream, with the
  caller's `separator` tokens between consecutive documents, and each row is a random window of
  seq_len + 1 tokens: inputs = w[:-1], targets = w[1:]. For text documents pass
  separator=tokenizer.encode_array("\\n"): the stream is then exactly the tokens of the
  "\\n"-joined text (corpus_text), i.e. the same stream a nanoGPT script trains on.
- "packed": each epoch shuffles the documents, concatenates them and cuts the result into rows of
  seq_len + 1 tokens; a document that does not fit continues in the next row as a new segment.
  Rows carry segment ids, per-segment positions and a loss mask so attention and loss never cross
  a document boundary. Every token of every document appears exactly once per epoch, in order.
  (The separator is not used: segments already mark the boundaries.)

`eval_batches` gives a fixed list of sampled batches (a cheap, noisy estimate, the same at every
evaluation); `sequential_batches` covers a stream once with non-overlapping windows (the exact
loss over the whole validation split).
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxllm.errors import DataError

SAMPLINGS = ("windows", "packed")
PAD_ID = 0  # token id written into padding; always masked out by loss_mask / segment_ids == 0


def _as_docs(docs_tokens: Sequence[Any], name: str) -> list[np.ndarray]:
    docs = []
    for k, doc in enumerate(docs_tokens):
        arr = np.asarray(doc)
        if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
            raise DataError(f"{name} document {k} must be a 1-D array of token ids, got shape "
                            f"{arr.shape} dtype {arr.dtype}")
        docs.append(arr.astype(np.int32, copy=False))
    if not docs or not any(d.size for d in docs):
        raise DataError(f"the {name} split has no tokens ({len(docs)} documents, all empty); "
                        f"check data.corpus and data.val_fraction")
    return docs


def join_tokens(
    docs: Sequence[np.ndarray], separator: Sequence[int] | np.ndarray = ()
) -> np.ndarray:
    """The documents as one int32 stream, with `separator` between consecutive ones."""
    sep = np.asarray(separator, dtype=np.int32).reshape(-1)
    parts: list[np.ndarray] = []
    for k, doc in enumerate(docs):
        if k and sep.size:
            parts.append(sep)
        parts.append(np.asarray(doc, dtype=np.int32))
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def _check_positive(**kwargs: int) -> None:
    for key, value in kwargs.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DataError(f"{key}={value!r} is not valid; it must be a positive integer")


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed={seed!r} is not valid; it must be an integer >= 0")
    return int(seed)


class StepBatches:
    """Iteration and resumption for a pure `batch(step)`: the text batches below and the image
    batches of data/images.py.

    A subclass defines `batch(step)`, sets `step`, `name`, `_fingerprint` (a JSON-able dict identifying the data) and
    names in IDENTITY the settings that decide the batch sequence; `state()` records them and
    `restore()` refuses a state saved with other data or settings, so a resumed run is bitwise
    the uninterrupted one or fails clearly."""

    IDENTITY: tuple[str, ...] = ()
    step: int
    name: str
    _fingerprint: dict
    rows: np.ndarray | None = None  # the rows next() gives (None: all; see check_rows)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        out = self.batch(self.step, self.rows)
        self.step += 1
        return out

    def state(self) -> dict[str, Any]:
        """JSON-able state: the step, and what identifies the batch sequence (checked by restore)"""
        return {"step": self.step, **{k: getattr(self, k) for k in self.IDENTITY},
                "data": dict(self._fingerprint)}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a saved state(); DataError if it describes another batch sequence."""
        if not isinstance(state, dict) or "step" not in state:
            raise DataError(f"batch iterator state must be a dict made by "
                            f"{type(self).__name__}.state()")
        if state.get("data") != self._fingerprint:
            raise DataError(f"the run's {self.name} data changed since this state was saved "
                            f"(saved {state.get('data')}, now {self._fingerprint}); resume with "
                            f"the same data, split and tokenizer, or start a new run")
        for key in self.IDENTITY:
            if state.get(key) != getattr(self, key):
                raise DataError(f"the saved batch iterator has {key}={state.get(key)!r} but this "
                                f"run has {key}={getattr(self, key)!r}; resume with the same "
                                f"setting or start a new run")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise DataError(f"batch iterator state has step={step!r}; it must be an integer >= 0")
        self.step = step


def check_rows(rows, batch_size: int) -> np.ndarray | None:
    """rows as sorted unique int64 row numbers of a batch (None: every row)."""
    if rows is None:
        return None
    out = np.unique(np.asarray(rows, dtype=np.int64).reshape(-1))
    if out.size == 0 or out[0] < 0 or out[-1] >= batch_size:
        raise DataError(f"rows {np.asarray(rows).tolist()} of a batch of {batch_size}: must be "
                        f"one or more row numbers in 0..{batch_size - 1}")
    return out


class BatchIterator(StepBatches):
    """Batches of `batch_size` rows of `seq_len` tokens from one split; `batch(step)` is pure.

    Keys (all [batch_size, seq_len]):
      windows: inputs, targets (int32)
      packed:  inputs, targets, segment_ids, positions (int32), loss_mask (float32)
    """

    IDENTITY = ("seed", "sampling", "batch_size", "seq_len")

    def __init__(
        self,
        docs_tokens: Sequence[np.ndarray],
        batch_size: int,
        seq_len: int,
        seed: int,
        sampling: str = "windows",
        separator: Sequence[int] | np.ndarray = (),
        name: str = "train",
    ):
        if sampling not in SAMPLINGS:
            raise DataError(f"data.sampling={sampling!r} is not valid; choose one of "
                            f"{', '.join(SAMPLINGS)}")
        _check_positive(batch_size=batch_size, seq_len=seq_len)
        self.docs = _as_docs(docs_tokens, name)
        self.batch_size, self.seq_len = int(batch_size), int(seq_len)
        self.seed = _check_seed(seed)
        self.sampling = sampling
        self.name = name
        self.step = 0
        self.separator = np.asarray(separator, dtype=np.int32).reshape(-1)
        lengths = np.array([d.size for d in self.docs], dtype=np.int64)
        self._lengths = lengths
        self.n_tokens = int(lengths.sum())
        row = self.seq_len + 1
        if sampling == "windows":
            self.stream = join_tokens(self.docs, self.separator)
            if self.stream.size < row:
                raise DataError(
                    f"the {name} split has {self.stream.size} tokens; a window needs {row} "
                    f"(seq_len + 1 = model.max_len + 1): lower model.max_len, or give the {name} "
                    f"split more text (data.val_fraction, a larger corpus)")
        else:
            # rows per epoch: every token once, the last row padded
            self.rows_per_epoch = -(-self.n_tokens // row)
            self._epochs: OrderedDict[int, tuple[np.ndarray, ...]] = OrderedDict()
        crc = 0
        for d in self.docs:
            crc = zlib.crc32(d.tobytes(), crc)
        self._fingerprint = {"n_docs": len(self.docs), "n_tokens": self.n_tokens, "crc32": crc}

    # --- the pure part -------------------------------------------------------------------------

    def batch(self, step: int, rows=None) -> dict[str, np.ndarray]:
        """The batch at `step`, a function of (data, seed, step) only, or its `rows` (row
        numbers of the whole batch, in increasing order)."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise DataError(f"step={step!r} is not valid; it must be an integer >= 0")
        rows = check_rows(rows, self.batch_size)
        if rows is None:
            rows = np.arange(self.batch_size)
        if self.sampling == "windows":
            return self._window_batch(int(step), rows)
        return self._packed_batch(int(step), rows)

    def _window_batch(self, step: int, rows: np.ndarray) -> dict[str, np.ndarray]:
        # nanoGPT: ix = torch.randint(len(data) - block_size, (batch_size,))
        rng = np.random.default_rng([self.seed, step])
        starts = rng.integers(0, self.stream.size - self.seq_len, size=self.batch_size)[rows]
        idx = starts[:, None] + np.arange(self.seq_len + 1)  # (R, T+1)
        w = self.stream[idx]
        return {"inputs": w[:, :-1], "targets": w[:, 1:]}

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tokens, segment ids, positions), each [rows_per_epoch, seq_len + 1], of one epoch.

        Cached: the two most recent epochs (a batch can straddle an epoch boundary).
        """
        if epoch in self._epochs:
            self._epochs.move_to_end(epoch)
            return self._epochs[epoch]
        row = self.seq_len + 1
        n_rows = self.rows_per_epoch
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.docs))
        tokens = np.full(n_rows * row, PAD_ID, dtype=np.int32)
        tokens[: self.n_tokens] = np.concatenate([self.docs[i] for i in order])
        doc_of = np.full(n_rows * row, -1, dtype=np.int64)  # -1 = padding
        doc_of[: self.n_tokens] = np.repeat(np.arange(len(order)), self._lengths[order])
        tokens, doc_of = tokens.reshape(n_rows, row), doc_of.reshape(n_rows, row)  # (R, T+1)
        # a segment starts at column 0 and wherever the document changes along the row
        starts = np.ones_like(doc_of, dtype=bool)
        starts[:, 1:] = doc_of[:, 1:] != doc_of[:, :-1]
        segment_ids = np.cumsum(starts, axis=1).astype(np.int32)  # 1..n within each row
        cols = np.broadcast_to(np.arange(row), doc_of.shape)
        seg_start = np.maximum.accumulate(np.where(starts, cols, 0), axis=1)
        positions = (cols - seg_start).astype(np.int32)  # restarts at 0 in each segment
        padding = doc_of < 0
        segment_ids[padding] = 0
        positions[padding] = 0
        self._epochs[epoch] = (tokens, segment_ids, positions)
        while len(self._epochs) > 2:
            self._epochs.popitem(last=False)
        return self._epochs[epoch]

    def _packed_batch(self, step: int, rows: np.ndarray) -> dict[str, np.ndarray]:
        rows = self.batch_size * step + rows  # row numbers in the stream of epochs
        epochs, within = np.divmod(rows, self.rows_per_epoch)
        tok = np.empty((len(rows), self.seq_len + 1), np.int32)
        seg, pos = np.empty_like(tok), np.empty_like(tok)
        for e in np.unique(epochs):
            sel = epochs == e
            t, s, p = self._epoch(int(e))
            tok[sel], seg[sel], pos[sel] = t[within[sel]], s[within[sel]], p[within[sel]]
        # target t is predicted from input t only inside one segment, never into padding
        loss_mask = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] != 0)
        return {
            "inputs": tok[:, :-1],
            "targets": tok[:, 1:],
            "segment_ids": seg[:, :-1],
            "positions": pos[:, :-1],
            "loss_mask": loss_mask.astype(np.float32),
        }


def eval_batches(
    docs_tokens: Sequence[np.ndarray],
    n_batches: int,
    batch_size: int,
    seq_len: int,
    seed: int,
    sampling: str = "windows",
    separator: Sequence[int] | np.ndarray = (),
    name: str = "validation",
) -> list[dict[str, np.ndarray]]:
    """A fixed list of n_batches sampled batches: the same list at every call (and evaluation)."""
    _check_positive(n_batches=n_batches)
    it = BatchIterator(docs_tokens, batch_size, seq_len, seed, sampling, separator, name)
    return [it.batch(k) for k in range(n_batches)]


def sequential_batches(
    docs_tokens: Sequence[np.ndarray],
    batch_size: int,
    seq_len: int,
    separator: Sequence[int] | np.ndarray = (),
    name: str = "validation",
) -> list[dict[str, np.ndarray]]:
    """Non-overlapping windows covering the joined stream once: each token after the first is a
    target exactly once. Keys inputs, targets (int32), loss_mask (float32), all
    [batch_size, seq_len]; the tail (and the last batch's missing rows) is padding with
    loss_mask 0, so the masked mean loss over all batches is the exact loss of the stream.
    """
    _check_positive(batch_size=batch_size, seq_len=seq_len)
    stream = join_tokens(_as_docs(docs_tokens, name), separator)
    if stream.size < 2:
        raise DataError(f"the {name} split has {stream.size} token; a next-token loss needs at "
                        f"least 2")
    n_targets = stream.size - 1
    n_rows = -(-n_targets // seq_len)
    n_batches = -(-n_rows // batch_size)
    # row r: inputs stream[r*T : r*T + T], targets stream[r*T + 1 : r*T + T + 1]
    flat = np.full(n_batches * batch_size * seq_len + 1, PAD_ID, dtype=np.int32)
    flat[: stream.size] = stream
    valid = np.zeros(n_batches * batch_size * seq_len, dtype=np.float32)
    valid[:n_targets] = 1.0
    shape = (n_batches, batch_size, seq_len)
    inputs = flat[:-1].reshape(shape)
    targets = flat[1:].reshape(shape)
    loss_mask = valid.reshape(shape)
    return [{"inputs": inputs[b], "targets": targets[b], "loss_mask": loss_mask[b]}
            for b in range(n_batches)]
