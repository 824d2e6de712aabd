"""Independent pure-numpy forwards of the two pretrained models, written from the file formats.

They share no code with jaxllm: the Llama forward reads the GGUF tensors under their GGUF names
with Q and K still permuted and rotates adjacent pairs (x[2i], x[2i+1]) as llama.cpp does, so it
also checks jaxllm's un-permutation; the BERT forward reads the Hugging Face tensor names of
model.safetensors. Both loop over layers and heads with explicit softmax.
"""

from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf)


# --- Llama from GGUF -------------------------------------------------------------------------

def _rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _rope_pairs(x, pos, theta):
    """llama.cpp's normal RoPE: adjacent pairs (2i, 2i+1) rotated by pos * theta^(-2i/H).
    x (T, H), pos (T,)."""
    H = x.shape[-1]
    freqs = theta ** (-np.arange(0, H, 2, dtype=np.float64) / H)  # (H/2,)
    ang = pos[:, None].astype(np.float64) * freqs[None]
    c, s = np.cos(ang), np.sin(ang)
    a, b = x[:, 0::2], x[:, 1::2]
    out = np.empty_like(x)
    out[:, 0::2] = a * c - b * s
    out[:, 1::2] = a * s + b * c
    return out


class LlamaGGUF:
    """Incremental (KV-cached) Llama forward over GGUF-named float32 tensors (float64 would
    double the memory traffic of this 135M model for no gain at the 1e-3 tolerance)."""

    def __init__(self, meta, tensors):
        self.t = {k: np.asarray(v, np.float32) for k, v in tensors.items()}
        self.L = int(meta["llama.block_count"])
        self.N = int(meta["llama.attention.head_count"])
        self.K = int(meta["llama.attention.head_count_kv"])
        self.theta = float(meta["llama.rope.freq_base"])
        self.eps = float(meta["llama.attention.layer_norm_rms_epsilon"])
        self.D = int(meta["llama.embedding_length"])
        self.H = self.D // self.N

    def forward(self, ids, cache=None):
        """Logits (T, V) of new token ids given a cache from earlier calls; returns (logits, cache)."""
        t, N, K, H = self.t, self.N, self.K, self.H
        start = 0 if cache is None else cache[0][0].shape[0]
        cache = cache if cache is not None else [(None, None)] * self.L
        T = len(ids)
        pos = np.arange(start, start + T)
        x = t["token_embd.weight"][np.asarray(ids)]  # (T, D)
        new_cache = []
        for layer in range(self.L):
            p = f"blk.{layer}."
            h = _rms(x, t[p + "attn_norm.weight"], self.eps)
            q = (h @ t[p + "attn_q.weight"].T).reshape(T, N, H)
            k = (h @ t[p + "attn_k.weight"].T).reshape(T, K, H)
            v = (h @ t[p + "attn_v.weight"].T).reshape(T, K, H)
            q = np.stack([_rope_pairs(q[:, n], pos, self.theta) for n in range(N)], 1)
            k = np.stack([_rope_pairs(k[:, n], pos, self.theta) for n in range(K)], 1)
            ck, cv = cache[layer]
            if ck is not None:
                k, v = np.concatenate([ck, k]), np.concatenate([cv, v])
            new_cache.append((k, v))
            S = k.shape[0]
            allowed = np.arange(S)[None, :] <= pos[:, None]  # (T, S) causal
            heads = np.zeros((T, N, H))
            for n in range(N):
                kv = n // (N // K)
                s = q[:, n] @ k[:, kv].T / math.sqrt(H)
                s = np.where(allowed, s, -np.inf)
                w = np.exp(s - s.max(-1, keepdims=True))
                heads[:, n] = (w / w.sum(-1, keepdims=True)) @ v[:, kv]
            x = x + heads.reshape(T, N * H) @ t[p + "attn_output.weight"].T
            h = _rms(x, t[p + "ffn_norm.weight"], self.eps)
            g = h @ t[p + "ffn_gate.weight"].T
            u = h @ t[p + "ffn_up.weight"].T
            x = x + (g / (1 + np.exp(-g)) * u) @ t[p + "ffn_down.weight"].T
        x = _rms(x, t["output_norm.weight"], self.eps)
        head = t["output.weight"] if "output.weight" in t else t["token_embd.weight"]
        return x @ head.T, new_cache

    def greedy(self, ids, n):
        logits, cache = self.forward(ids)
        out = []
        for _ in range(n):
            tok = int(np.argmax(logits[-1]))
            out.append(tok)
            logits, cache = self.forward([tok], cache)
        return out


# --- BERT from Hugging Face safetensors ------------------------------------------------------

def _ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def bert_hidden(tensors, hf_cfg, ids, types=None):
    """Last hidden states (T, D) of one unpadded sequence of ids, float64."""
    t = {k: np.asarray(v, np.float64) for k, v in tensors.items()}
    pre = "bert." if any(k.startswith("bert.") for k in t) else ""
    eps, N = hf_cfg["layer_norm_eps"], hf_cfg["num_attention_heads"]
    T = len(ids)
    types = np.zeros(T, int) if types is None else np.asarray(types)
    e = pre + "embeddings."
    x = (t[e + "word_embeddings.weight"][np.asarray(ids)] + t[e + "position_embeddings.weight"][:T]
         + t[e + "token_type_embeddings.weight"][types])
    x = _ln(x, t[e + "LayerNorm.weight"], t[e + "LayerNorm.bias"], eps)
    D = x.shape[-1]
    H = D // N

    def lin(h, name):
        return h @ t[name + ".weight"].T + t[name + ".bias"]

    for i in range(hf_cfg["num_hidden_layers"]):
        p = f"{pre}encoder.layer.{i}."
        q = lin(x, p + "attention.self.query").reshape(T, N, H)
        k = lin(x, p + "attention.self.key").reshape(T, N, H)
        v = lin(x, p + "attention.self.value").reshape(T, N, H)
        heads = np.zeros((T, N, H))
        for n in range(N):
            s = q[:, n] @ k[:, n].T / math.sqrt(H)
            w = np.exp(s - s.max(-1, keepdims=True))
            heads[:, n] = (w / w.sum(-1, keepdims=True)) @ v[:, n]
        a = lin(heads.reshape(T, D), p + "attention.output.dense")
        x = _ln(x + a, t[p + "attention.output.LayerNorm.weight"],
                t[p + "attention.output.LayerNorm.bias"], eps)
        u = lin(x, p + "intermediate.dense")
        u = 0.5 * u * (1 + _erf(u / math.sqrt(2)))
        x = _ln(x + lin(u, p + "output.dense"), t[p + "output.LayerNorm.weight"],
                t[p + "output.LayerNorm.bias"], eps)
    return x


def sentence_embedding(tensors, hf_cfg, ids):
    """sentence-transformers' all-MiniLM-L6-v2 pipeline: mean pooling, then L2 normalisation."""
    m = bert_hidden(tensors, hf_cfg, ids).mean(0)
    return m / max(np.linalg.norm(m), 1e-12)
