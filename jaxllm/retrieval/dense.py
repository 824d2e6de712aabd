"""Dense retrieval: exact top-k over stored vectors, as one jitted product + `lax.top_k`.

    index = DenseIndex(vectors, metric="cosine")               # (N, D) float32
    hits = index.search(query_vectors, k=10)                    # one Hits(ids, scores) per query
    hits = index.search(query_vectors, k=10, mesh=mesh)         # vectors sharded over "data"
    small = index.quantized()                                   # int8 codes, one step per vector

Metrics: "cosine" (vectors and queries L2-normalised, score = cosine similarity), "dot" (raw
inner product) and "l2" (score = minus the squared Euclidean distance, so that higher is better;
squared, because the square root of |q|^2 - 2 q.v + |v|^2 near 0 would magnify its rounding).

On a mesh, the vectors are split along the mesh's `data` axis (rows padded to a multiple of its
size): each device scores its rows and keeps its own top k, the k x devices candidates are
gathered and the top k of those is the answer. `lax.top_k` puts the lower index first among
equal scores, and the gathered candidates are in device (so row) order, so the result equals
the single-device one, ties included (a score may differ in its last bit: XLA picks its
product kernel by shape). Queries are padded to a few batch sizes (BATCHES) so that
a handful of programs are compiled whatever the number of queries.

The int8 index (`quantized`) stores each vector as int8 codes times one float step
(jaxllm.transforms.quantize_array, symmetric absmax per row): a quarter of the memory; scores are
computed from the dequantized rows.
"""

from __future__ import annotations

import functools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxllm.errors import ConfigError
from jaxllm.retrieval.sparse import Hits
from jaxllm.transforms.quantize import quantize_array

METRICS = ("cosine", "dot", "l2")
BATCHES = (8, 32, 128)  # query batch sizes compiled; larger query sets go in batches of 128
AXIS = "data"


def _normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1)).astype(np.float32)


def _scores(rows, step, sq_norms, valid, queries, *, metric):
    """Scores (n, Q) of queries (Q, D) against rows (n, D) (int8 codes x step, or float), the
    invalid rows at -inf. Rows-major (rows @ queries.T): XLA:CPU runs this product about 3x
    faster than queries @ rows.T (experiments/dense_speed.py)."""
    # step * (codes . q) = (step * codes) . q: scale the scores, not the (n, D) rows
    s = jnp.dot(rows.astype(jnp.float32), queries.T,
                precision=jax.lax.Precision.HIGHEST) * step[:, None]  # (n, Q)
    if metric == "l2":
        q2 = jnp.sum(queries * queries, axis=-1)
        s = -jnp.maximum(q2[None, :] - 2 * s + sq_norms[:, None], 0.0)
    return jnp.where(valid[:, None], s, -jnp.inf)


def _top_k(scores_nq, k):
    """Top k per query of (n, Q) scores: values (Q, k), row indices (Q, k)."""
    return jax.lax.top_k(scores_nq.T, k)


def _local_top_k(rows, step, sq_norms, valid, queries, *, k, metric):
    s = _scores(rows, step, sq_norms, valid, queries, metric=metric)
    # keep the product's own layout: fused with the transpose, XLA picks the slow product
    return _top_k(jax.lax.optimization_barrier(s), k)


_jit_scores = jax.jit(_scores, static_argnames="metric")
_jit_top_k = jax.jit(_top_k, static_argnames="k")


def _search_one(rows, step, sq_norms, valid, queries, *, k, metric):
    # two programs: the product alone, then the selection (faster than one on XLA:CPU)
    return _jit_top_k(_jit_scores(rows, step, sq_norms, valid, queries, metric=metric), k=k)


@functools.lru_cache(maxsize=32)
def _search_sharded(mesh, k_local, k, metric):
    """The same search with rows split over the mesh's `data` axis: top k_local per device,
    then the top k of the gathered candidates (their order: device by device, i.e. by row)."""

    def local(rows, step, sq_norms, valid, queries):
        vals, idx = _local_top_k(rows, step, sq_norms, valid, queries, k=k_local, metric=metric)
        idx = idx + jax.lax.axis_index(AXIS) * rows.shape[0]  # global row numbers
        vals = jax.lax.all_gather(vals, AXIS, axis=1, tiled=True)  # (Q, devices * k)
        idx = jax.lax.all_gather(idx, AXIS, axis=1, tiled=True)
        best, pos = jax.lax.top_k(vals, k)
        return best, jnp.take_along_axis(idx, pos, axis=1)

    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(AXIS), P(AXIS), P(AXIS), P(AXIS),
                                                              P()),
                                 out_specs=(P(), P()), check_vma=False))


class DenseIndex:
    """Vectors of numbered documents 0..n-1, searched exactly."""

    def __init__(self, vectors, metric: str = "cosine", *, codes=None, step=None):
        if metric not in METRICS:
            raise ConfigError(f"dense metric={metric!r} is not one of {', '.join(METRICS)}")
        self.metric = metric
        if codes is not None:  # int8 rows and their steps (see `quantized`)
            self.rows = np.asarray(codes, np.int8)
            self.step = np.asarray(step, np.float32)
        else:
            vectors = np.asarray(vectors, np.float32)
            if vectors.ndim != 2:
                raise ConfigError(f"dense vectors must be (n, dim), got shape {vectors.shape}")
            self.rows = _normalize(vectors) if metric == "cosine" else vectors
            self.step = np.ones(len(vectors), np.float32)
        self._cache = {}

    @property
    def n(self) -> int:
        return self.rows.shape[0]

    @property
    def dim(self) -> int:
        return self.rows.shape[1]

    @property
    def is_quantized(self) -> bool:
        return self.rows.dtype == np.int8

    def vectors(self) -> np.ndarray:
        """(n, dim) float32 (dequantized for an int8 index)."""
        return self.rows.astype(np.float32) * self.step[:, None]

    def quantized(self) -> DenseIndex:
        """The same index with int8 rows (symmetric absmax, one step per row)."""
        qa = quantize_array(jnp.asarray(self.vectors()), method="int8", n_in=1, lead=1)
        return DenseIndex(None, self.metric, codes=np.asarray(qa.q).reshape(self.n, self.dim),
                          step=np.asarray(qa.scale).reshape(self.n))

    def add(self, vectors) -> None:
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ConfigError(f"added vectors have shape {vectors.shape}; the index holds "
                              f"dimension {self.dim}")
        new = DenseIndex(vectors, self.metric)
        if self.is_quantized:
            new = new.quantized()
        self.rows = np.concatenate([self.rows, new.rows])
        self.step = np.concatenate([self.step, new.step])
        self._cache.clear()

    def delete(self, doc_ids) -> None:
        alive = np.ones(self.n, bool)
        alive[np.asarray(doc_ids, np.int64)] = False
        self.rows, self.step = self.rows[alive], self.step[alive]
        self._cache.clear()

    def _device_arrays(self, mesh):
        """rows, step, squared norms and the valid mask, padded and placed (once per mesh)."""
        key = id(mesh)
        if key not in self._cache:
            shards = 1 if mesh is None else mesh.shape[AXIS]
            n_pad = -(-max(self.n, 1) // shards) * shards
            pad = n_pad - self.n
            rows = np.pad(self.rows, ((0, pad), (0, 0)))
            step = np.pad(self.step, (0, pad))
            sq = np.pad(np.sum(self.vectors() ** 2, axis=1), (0, pad)).astype(np.float32)
            valid = np.arange(n_pad) < self.n
            arrays = (rows, step, sq, valid)
            if mesh is not None:
                arrays = tuple(jax.device_put(a, NamedSharding(mesh, P(AXIS))) for a in arrays)
            else:
                arrays = tuple(jax.device_put(a) for a in arrays)
            self._cache = {key: (mesh, arrays)}
        return self._cache[key][1]

    def search(self, queries, k: int = 10, *, allowed: np.ndarray | None = None,
               mesh: jax.sharding.Mesh | None = None) -> list[Hits]:
        """Top-k rows for each query vector (Q, dim); with `allowed` (bool (n,)) only rows where
        it is True (so fewer than k when fewer are allowed)."""
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k={k!r} must be a positive integer")
        queries = np.asarray(queries, np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ConfigError(f"query vectors have shape {queries.shape}; the index holds "
                              f"dimension {self.dim} (embedded by another encoder?)")
        if mesh is not None and AXIS not in mesh.shape:
            raise ConfigError(f"the mesh has no {AXIS!r} axis (axes: {', '.join(mesh.shape)})")
        if self.metric == "cosine":
            queries = _normalize(queries)
        rows, step, sq, valid = self._device_arrays(mesh)
        if allowed is not None:
            allowed = np.asarray(allowed, bool)
            if allowed.shape != (self.n,):
                raise ConfigError(f"allowed mask has shape {allowed.shape}, expected ({self.n},)")
            mask = np.zeros(valid.shape, bool)
            mask[:self.n] = allowed
            valid = mask if mesh is None else jax.device_put(mask, valid.sharding)
        k_run = int(min(k, rows.shape[0]))
        if mesh is not None:
            k_local = int(min(k, rows.shape[0] // mesh.shape[AXIS]))
            fn = _search_sharded(mesh, k_local, k_run, self.metric)
        else:
            fn = partial(_search_one, k=k_run, metric=self.metric)
        out = []
        for s in range(0, len(queries), BATCHES[-1]):
            chunk = queries[s: s + BATCHES[-1]]
            size = next(b for b in BATCHES if b >= len(chunk))
            padded = np.zeros((size, self.dim), np.float32)
            padded[:len(chunk)] = chunk
            vals, idx = (np.asarray(a) for a in fn(rows, step, sq, valid, padded))
            for v, i in zip(vals[:len(chunk)], idx[:len(chunk)]):
                keep = np.isfinite(v)
                out.append(Hits(i[keep][:k].astype(np.int64), v[keep][:k]))
        return out
