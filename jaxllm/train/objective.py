"""Which objective a run trains, chosen by model.kind (the model itself: jaxllm.models.build).

    model, loss_fn = model_and_objective(cfg, tokenizer_vocab)

"decoder": next-token cross-entropy. "encoder": masked-LM (and next-sentence prediction when
train.nsp_weight > 0). "vit": classification cross-entropy. "clip": symmetric InfoNCE (its
vocabulary is the caption tokenizer's). An encoder's vocabulary is the tokenizer's plus two ids
above it, [MASK] = V and [CLS] = V + 1, which the char/byte tokenizers lack.
"""

from __future__ import annotations

from jaxllm import config as config_lib
from jaxllm import models
from jaxllm.objectives.causal_lm import causal_lm_loss
from jaxllm.objectives.classification import classifier_loss
from jaxllm.objectives.contrastive import clip_loss
from jaxllm.objectives.mlm import mlm_loss

ENCODER_SPECIAL_TOKENS = 2  # [MASK], [CLS]


def model_vocab(cfg: config_lib.Config, tokenizer_vocab: int) -> int:
    """The number of token ids the model needs for a tokenizer of tokenizer_vocab ids."""
    return tokenizer_vocab + (ENCODER_SPECIAL_TOKENS if cfg.model.kind == "encoder" else 0)


def model_and_objective(cfg: config_lib.Config, tokenizer_vocab: int):
    """(model, loss_fn(params, batch, rng) -> (loss, sums))."""
    model = models.build(cfg.model)
    kind = cfg.model.kind
    if kind == "vit":
        return model, classifier_loss(model)
    if kind == "clip":
        return model, clip_loss(model)
    if kind == "encoder":
        return model, mlm_loss(model, mask_id=tokenizer_vocab, cls_id=tokenizer_vocab + 1,
                               vocab_size=tokenizer_vocab, rate=cfg.train.mlm_rate,
                               nsp_weight=cfg.train.nsp_weight)
    return model, causal_lm_loss(model, cfg.train.z_loss)
