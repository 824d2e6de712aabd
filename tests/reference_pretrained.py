"""Independent pure-numpy forwards written from the file formats: the two pretrained models and
the Hugging Face layouts jaxllm exports.

They share no code with jaxllm: the Llama forward reads the GGUF tensors under their GGUF names
with Q and K still permuted and rotates adjacent pairs (x[2i], x[2i+1]) as llama.cpp does, so it
also checks jaxllm's un-permutation; the BERT, Llama, GPT-2 and Blenderbot/Pegasus/Marian
forwards read the Hugging Face tensor names of model.safetensors in their orientation (a Linear
weight is (out, in), a GPT-2 Conv1D weight (in, out) with query, key and value fused) and the
sizes from config.json; the encoder-decoders follow config.json's model_type (norm placement,
final norms, learned positions or Pegasus' and Marian's [sin | cos] halves). All loop over
layers and heads with explicit softmax.
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
            # float32 as the weights: a float64 x would make every product after it convert a
            # whole weight matrix to float64
            heads = np.zeros((T, N, H), np.float32)
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


# --- Llama and GPT-2 from Hugging Face safetensors ---------------------------------------------

def _attend(q, k, v):
    """Causal attention of one sequence: q (T, N, H), k and v (T, K, H) with N/K query heads
    per key/value head (Hugging Face's repeat_kv order) -> (T, N * H)."""
    T, N, H = q.shape
    group = N // k.shape[1]
    out = np.zeros((T, N, H))
    causal = np.tril(np.ones((T, T), bool))
    for n in range(N):
        s = q[:, n] @ k[:, n // group].T / math.sqrt(H)
        s = np.where(causal, s, -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        out[:, n] = (w / w.sum(-1, keepdims=True)) @ v[:, n // group]
    return out.reshape(T, N * H)


def _rotate_half(x, theta):
    """Hugging Face Llama's RoPE: dimension i pairs with i + H/2, angle pos * theta^(-2i/H).
    x (T, heads, H)."""
    T, _, H = x.shape
    ang = np.arange(T)[:, None] * theta ** (-np.arange(0, H, 2) / H)[None]  # (T, H/2)
    c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
    a, b = x[..., :H // 2], x[..., H // 2:]
    return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)


def hf_llama_logits(tensors, hf_cfg, ids):
    """Logits (T, V) of LlamaForCausalLM for one sequence of ids, float64."""
    t = {k: np.asarray(v, np.float64) for k, v in tensors.items()}
    N, K = hf_cfg["num_attention_heads"], hf_cfg["num_key_value_heads"]
    H, eps, theta = hf_cfg["head_dim"], hf_cfg["rms_norm_eps"], hf_cfg["rope_theta"]
    T = len(ids)
    x = t["model.embed_tokens.weight"][np.asarray(ids)]
    for i in range(hf_cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = _rms(x, t[p + "input_layernorm.weight"], eps)
        q = (h @ t[p + "self_attn.q_proj.weight"].T).reshape(T, N, H)
        k = (h @ t[p + "self_attn.k_proj.weight"].T).reshape(T, K, H)
        v = (h @ t[p + "self_attn.v_proj.weight"].T).reshape(T, K, H)
        a = _attend(_rotate_half(q, theta), _rotate_half(k, theta), v)
        x = x + a @ t[p + "self_attn.o_proj.weight"].T
        h = _rms(x, t[p + "post_attention_layernorm.weight"], eps)
        g = h @ t[p + "mlp.gate_proj.weight"].T
        u = h @ t[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ t[p + "mlp.down_proj.weight"].T
    x = _rms(x, t["model.norm.weight"], eps)
    head = t["model.embed_tokens.weight"] if hf_cfg["tie_word_embeddings"] else t["lm_head.weight"]
    return x @ head.T


def hf_gpt2_logits(tensors, hf_cfg, ids):
    """Logits (T, V) of GPT2LMHeadModel (exact GELU, as config.json's "gelu") for one sequence
    of ids, float64."""
    t = {k: np.asarray(v, np.float64) for k, v in tensors.items()}
    N, eps = hf_cfg["n_head"], hf_cfg["layer_norm_epsilon"]
    T = len(ids)
    x = t["transformer.wte.weight"][np.asarray(ids)] + t["transformer.wpe.weight"][:T]
    D = x.shape[-1]
    for i in range(hf_cfg["n_layer"]):
        p = f"transformer.h.{i}."
        h = _ln(x, t[p + "ln_1.weight"], t[p + "ln_1.bias"], eps)
        qkv = h @ t[p + "attn.c_attn.weight"] + t[p + "attn.c_attn.bias"]  # (T, 3D)
        q, k, v = (qkv[:, j * D:(j + 1) * D].reshape(T, N, D // N) for j in range(3))
        x = x + _attend(q, k, v) @ t[p + "attn.c_proj.weight"] + t[p + "attn.c_proj.bias"]
        h = _ln(x, t[p + "ln_2.weight"], t[p + "ln_2.bias"], eps)
        u = h @ t[p + "mlp.c_fc.weight"] + t[p + "mlp.c_fc.bias"]
        u = 0.5 * u * (1 + _erf(u / math.sqrt(2)))
        x = x + u @ t[p + "mlp.c_proj.weight"] + t[p + "mlp.c_proj.bias"]
    x = _ln(x, t["transformer.ln_f.weight"], t["transformer.ln_f.bias"], eps)
    return x @ t["transformer.wte.weight"].T


# --- Blenderbot, Pegasus and Marian from Hugging Face safetensors ------------------------------

def _sinusoid_halves(n, D):
    """Pegasus' and Marian's position table: column j < D/2 is sin(pos / 10000^(2j/D)), column
    D/2 + j the cos of the same angle (halves, not interleaved pairs)."""
    ang = np.arange(n)[:, None] / 10000.0 ** (2 * np.arange(D // 2)[None] / D)
    return np.concatenate([np.sin(ang), np.cos(ang)], axis=1)


def hf_seq2seq_logits(tensors, hf_cfg, source, target_in):
    """Logits (T, V) of BlenderbotForConditionalGeneration, PegasusForConditionalGeneration or
    MarianMTModel (config.json's model_type) for one unpadded source and decoder input, float64.
    Blenderbot and Pegasus are pre-norm with a LayerNorm after each stack; Marian is post-norm
    without; Blenderbot's positions are learned tables, the others' sinusoid halves; the token
    embeddings are scaled by sqrt(d_model) when scale_embedding is set."""
    t = {k: np.asarray(v, np.float64) for k, v in tensors.items()}
    kind, D = hf_cfg["model_type"], hf_cfg["d_model"]
    pre = kind in ("blenderbot", "pegasus")
    N = hf_cfg["encoder_attention_heads"]
    scale = math.sqrt(D) if hf_cfg["scale_embedding"] else 1.0

    def ln(x, name):
        return _ln(x, t[name + ".weight"], t[name + ".bias"], 1e-5)

    def lin(x, name):
        return x @ t[name + ".weight"].T + t[name + ".bias"]

    def embed(ids, side):
        x = t[f"model.{side}.embed_tokens.weight"][np.asarray(ids)] * scale
        if kind == "blenderbot":
            return x + t[f"model.{side}.embed_positions.weight"][:len(ids)]
        return x + _sinusoid_halves(len(ids), D)

    def attend(name, causal):
        def f(x, kv=None):
            kv = x if kv is None else kv
            T, S = len(x), len(kv)
            q = lin(x, name + ".q_proj").reshape(T, N, D // N)
            k = lin(kv, name + ".k_proj").reshape(S, N, D // N)
            v = lin(kv, name + ".v_proj").reshape(S, N, D // N)
            out = np.zeros((T, N, D // N))
            for n in range(N):
                s = q[:, n] @ k[:, n].T / math.sqrt(D // N)
                if causal:
                    s = np.where(np.tril(np.ones((T, S), bool)), s, -np.inf)
                w = np.exp(s - s.max(-1, keepdims=True))
                out[:, n] = (w / w.sum(-1, keepdims=True)) @ v[:, n]
            return lin(out.reshape(T, D), name + ".out_proj")
        return f

    def ffn(p):
        def f(x):
            u = lin(x, p + "fc1")
            return lin(0.5 * u * (1 + _erf(u / math.sqrt(2))), p + "fc2")
        return f

    def branch(x, f, norm):
        return x + f(ln(x, norm)) if pre else ln(x + f(x), norm)

    m = embed(source, "encoder")
    for i in range(hf_cfg["encoder_layers"]):
        p = f"model.encoder.layers.{i}."
        m = branch(m, attend(p + "self_attn", False), p + "self_attn_layer_norm")
        m = branch(m, ffn(p), p + "final_layer_norm")
    if pre:
        m = ln(m, "model.encoder.layer_norm")
    x = embed(target_in, "decoder")
    for i in range(hf_cfg["decoder_layers"]):
        p = f"model.decoder.layers.{i}."
        x = branch(x, attend(p + "self_attn", True), p + "self_attn_layer_norm")
        x = branch(x, lambda h, p=p: attend(p + "encoder_attn", False)(h, m),
                   p + "encoder_attn_layer_norm")
        x = branch(x, ffn(p), p + "final_layer_norm")
    if pre:
        x = ln(x, "model.decoder.layer_norm")
    head = t["model.shared.weight"] if hf_cfg["tie_word_embeddings"] else t["lm_head.weight"]
    return x @ head.T + t["final_logits_bias"][0]
