"""Which objective a run trains, chosen by model.kind (the model itself: jaxllm.models.build).

    model, loss_fn = model_and_objective(cfg, tokenizer_vocab)

"decoder": next-token cross-entropy, or the objective train.objective names: "reward"
(Bradley-Terry over rankings), "dpo" (align.dpo_loss: sigmoid, ipo, hinge), "ppo", "grpo".
"encoder": masked-LM (and next-sentence prediction when train.nsp_weight > 0), or with
model.head the task head's cross-entropy (objectives/classification.py task_loss).
"seq2seq": teacher-forced cross-entropy of the target (its ids <s> = V and </s> = V + 1 sit
above the tokenizer's V ids). "vit":
classification cross-entropy. "clip": symmetric InfoNCE (its vocabulary is the caption
tokenizer's). An encoder's vocabulary is the tokenizer's plus two ids
above it, [MASK] = V and [CLS] = V + 1, which the char/byte tokenizers lack.
"""

from __future__ import annotations

from jaxllm import config as config_lib
from jaxllm import models
from jaxllm.objectives.causal_lm import causal_lm_loss
from jaxllm.objectives.classification import classifier_loss, task_loss
from jaxllm.objectives.contrastive import clip_loss
from jaxllm.objectives.mlm import mlm_loss
from jaxllm.objectives.policy import grpo_objective, ppo_objective
from jaxllm.objectives.preference import dpo_objective, reward_objective
from jaxllm.objectives.seq2seq import seq2seq_ids, seq2seq_loss

ENCODER_SPECIAL_TOKENS = 2  # [MASK], [CLS]
SEQ2SEQ_SPECIAL_TOKENS = 2  # <s> (the decoder's start), </s> (end of the target): seq2seq_ids


def model_vocab(cfg: config_lib.Config, tokenizer_vocab: int) -> int:
    """The number of token ids the model needs for a tokenizer of tokenizer_vocab ids."""
    if cfg.model.kind == "encoder":  # masked-LM adds [MASK], [CLS]; a task head does not
        return tokenizer_vocab + (0 if cfg.model.head else ENCODER_SPECIAL_TOKENS)
    return tokenizer_vocab + (SEQ2SEQ_SPECIAL_TOKENS if cfg.model.kind == "seq2seq" else 0)


def model_and_objective(cfg: config_lib.Config, tokenizer_vocab: int):
    """(model, loss_fn(params, batch, rng) -> (loss, sums))."""
    model = models.build(cfg.model)
    kind = cfg.model.kind
    if kind == "vit":
        return model, classifier_loss(model)
    if kind == "clip":
        return model, clip_loss(model)
    if kind == "encoder" and cfg.model.head:
        return model, task_loss(model, cfg.model.head)
    if kind == "seq2seq":
        return model, seq2seq_loss(model, start_id=seq2seq_ids(tokenizer_vocab)[0],
                                   z_loss=cfg.train.z_loss)
    if kind == "encoder":
        return model, mlm_loss(model, mask_id=tokenizer_vocab, cls_id=tokenizer_vocab + 1,
                               vocab_size=tokenizer_vocab, rate=cfg.train.mlm_rate,
                               nsp_weight=cfg.train.nsp_weight)
    a = cfg.align
    objectives = {
        "lm": lambda: causal_lm_loss(model, cfg.train.z_loss),
        "reward": lambda: reward_objective(model, a.reward_logprob),
        "dpo": lambda: dpo_objective(model, beta=a.beta, kind=a.dpo_loss,
                                     label_smoothing=a.label_smoothing),
        "ppo": lambda: ppo_objective(model, clip=a.clip_eps, value_clip=a.value_clip,
                                     vf_coef=a.vf_coef),
        "grpo": lambda: grpo_objective(model, clip=a.clip_eps, kl_coef=a.kl_coef),
    }
    return model, objectives[cfg.train.objective]()
