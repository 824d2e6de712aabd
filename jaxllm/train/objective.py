"""Which model and objective a run trains, chosen by model.kind.

    model, init, loss_fn = model_and_objective(cfg, tokenizer_vocab)

"decoder": `Decoder` + next-token cross-entropy. "encoder": `Encoder` + masked-LM (and
next-sentence prediction when train.nsp_weight > 0). "vit": `ViT` + classification
cross-entropy. "clip": `CLIP` + symmetric InfoNCE (its vocabulary is the caption tokenizer's). An encoder's vocabulary is the tokenizer's
plus two ids above it, [MASK] = V and [CLS] = V + 1, which the char/byte tokenizers lack.
"""

from __future__ import annotations

import importlib

from jaxllm import config as config_lib

ENCODER_SPECIAL_TOKENS = 2  # [MASK], [CLS]


def model_vocab(cfg: config_lib.Config, tokenizer_vocab: int) -> int:
    """The number of token ids the model needs for a tokenizer of tokenizer_vocab ids."""
    return tokenizer_vocab + (ENCODER_SPECIAL_TOKENS if cfg.model.kind == "encoder" else 0)


def init_function(kind: str):
    """init_params(model_cfg, rng) -> (params, logical axes) of a model kind."""
    return importlib.import_module(f"jaxllm.models.{kind}").init_params  # models/<kind>.py


def model_and_objective(cfg: config_lib.Config, tokenizer_vocab: int):
    """(model, init_params(model_cfg, rng) -> (params, axes), loss_fn(params, batch, rng))."""
    if cfg.model.kind == "vit":
        from jaxllm.models.vit import ViT, classifier_loss, init_params

        model = ViT(cfg.model)
        return model, init_params, classifier_loss(model)
    if cfg.model.kind == "clip":
        from jaxllm.models.clip import CLIP, init_params
        from jaxllm.objectives.contrastive import clip_loss

        model = CLIP(cfg.model)
        return model, init_params, clip_loss(model)
    if cfg.model.kind == "encoder":
        from jaxllm.models.encoder import Encoder, init_params
        from jaxllm.objectives.mlm import mlm_loss

        model = Encoder(cfg.model)
        loss_fn = mlm_loss(model, mask_id=tokenizer_vocab, cls_id=tokenizer_vocab + 1,
                           vocab_size=tokenizer_vocab, rate=cfg.train.mlm_rate,
                           nsp_weight=cfg.train.nsp_weight)
        return model, init_params, loss_fn
    from jaxllm.models.decoder import Decoder, init_params
    from jaxllm.objectives.causal_lm import causal_lm_loss

    model = Decoder(cfg.model)
    return model, init_params, causal_lm_loss(model, cfg.train.z_loss)
