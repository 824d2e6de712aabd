"""What a run reads: its tokenizer, training batches and fixed validation batches.

    inputs = text_inputs(cfg, run, resuming)    # a corpus through the run's tokenizer
    inputs = image_inputs(cfg, run, resuming)   # MNIST / digits images (+ captions for CLIP)
    inputs = run_inputs(cfg, run, resuming)     # the one a run needs (labelled texts for an
                                                # encoder's task head: train/task_inputs.py)
    batch = next(inputs.train)                  # a pure function of (seed, step), resumable

Both return the config completed by the data (model.vocab_size from the tokenizer), so the
model is built for what the data holds. Chat files and the post-training objectives' files are
read by train/align_inputs.py and train/rollout.py (run_inputs picks by train.objective).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from jaxllm import config as config_lib
from jaxllm.data import BatchIterator, RowBatches, build_data, eval_batches, fixed_rows
from jaxllm.data.captions import caption_tokenizer
from jaxllm.data.images import ImageBatches, fixed_batches, load_images
from jaxllm.data.pairs import encode_pairs, load_pairs, target_length
from jaxllm.data.tokens import data_tokenizer
from jaxllm.models.vit import check_images
from jaxllm.objectives.seq2seq import seq2seq_ids
from jaxllm.parallel import distributed
from jaxllm.train import align_inputs, rollout, task_inputs
from jaxllm.train.objective import model_vocab
from jaxllm.train.params import vocab_config, with_vocab
from jaxllm.train.run import RunDir, run_tokenizer

IMAGE_KINDS = ("vit", "clip")
# train.objective -> the builder of its inputs' fields (a chat file for "lm")
ALIGN_BUILDERS = {"lm": align_inputs.chat_inputs, "reward": align_inputs.ranking_inputs,
                  "dpo": align_inputs.preference_inputs, "ppo": rollout.rollout_inputs,
                  "grpo": rollout.rollout_inputs}


class Inputs(NamedTuple):
    cfg: config_lib.Config  # with model.vocab_size set
    tokenizer: Any  # None for a ViT
    train: Any  # BatchIterator or ImageBatches: next(), batch(step), state(), restore()
    validation: list  # fixed batches, the same at every evaluation
    unit: str  # what a batch's rows count: "tokens" (per position), "images" or "sequences"
    per_step: int  # units per optimizer step (an encoder-decoder: source + target positions)
    # Post-training objectives (train/align_inputs.py, train/rollout.py), None otherwise:
    # start(model, params, resuming) once the state exists (reference log-probabilities);
    # rollout(params, batch, step) -> the step's batch (PPO/GRPO sample it from the policy);
    # evaluate(params) -> validation metrics instead of the mean loss over `validation`.
    start: Any = None
    rollout: Any = None
    evaluate: Any = None
    classes: tuple = ()  # a sequence head's class names, saved with the run (labels.json)


def run_inputs(cfg: config_lib.Config, run: RunDir, resuming: bool) -> Inputs:
    """The inputs of a run of cfg.model.kind and cfg.train.objective. On several processes,
    process 0 prepares the corpus's files first while the others wait (hosts may share the data
    directory, and two processes preparing one dataset at once collide), then the others read
    them."""
    if cfg.model.kind in IMAGE_KINDS:
        make = image_inputs
    elif cfg.model.head:
        def make(cfg, run, resuming):
            return Inputs(**task_inputs.task_inputs(cfg, run, resuming))
    elif cfg.model.kind == "seq2seq":
        make = pair_inputs
    elif cfg.train.objective != "lm" or align_inputs.data_file(cfg.data.corpus):
        def make(cfg, run, resuming):
            return Inputs(**ALIGN_BUILDERS[cfg.train.objective](cfg, run, resuming))
    else:
        make = text_inputs
    if jax.process_count() == 1:
        return make(cfg, run, resuming)
    inputs = make(cfg, run, resuming) if distributed.is_primary() else None
    distributed.barrier("jaxllm-data-prepared")
    return inputs if inputs is not None else make(cfg, run, resuming)


def text_inputs(cfg: config_lib.Config, run: RunDir, resuming: bool) -> Inputs:
    """A corpus tokenized by the run's tokenizer: the saved one when resuming, the base's when
    fine-tuning (train.init_from), else one built from the training text."""
    dc, t = cfg.data, cfg.train
    tokenizer = run_tokenizer(cfg, run, resuming)
    data = build_data(dc.corpus, dc.tokenizer, dc.split, dc.val_fraction, dc.text_key, tokenizer,
                      vocab_size=dc.vocab_size)
    cfg = vocab_config(cfg, model_vocab(cfg, data.tokenizer.vocab_size), resuming)
    m = cfg.model
    micro_batch = t.batch_size // cfg.optim.grad_accum
    train = BatchIterator(data.train, t.batch_size, m.max_len, t.seed, dc.sampling,
                          data.separator, "train")
    validation = eval_batches(data.validation, t.eval_batches, micro_batch, m.max_len,
                              t.seed + 1, dc.sampling, data.separator, "validation")
    return Inputs(cfg, data.tokenizer, train, validation, "tokens", t.batch_size * m.max_len)


def image_inputs(cfg: config_lib.Config, run: RunDir, resuming: bool) -> Inputs:
    """Images and labels (a ViT), with a caption per image for CLIP (its word tokenizer)."""
    dc, t, m = cfg.data, cfg.train, cfg.model
    data = load_images(dc.corpus)
    check_images(m, (1, *data.image_shape))
    tokenizer = None
    if m.kind == "clip":
        tokenizer = run.load_tokenizer() if resuming else caption_tokenizer()
        cfg = with_vocab(cfg, tokenizer.vocab_size)
    text = {"tokenizer": tokenizer, "text_len": m.max_len}
    train = ImageBatches(data.train, t.batch_size, t.seed, augment_shift=dc.augment_shift, **text)
    validation = fixed_batches(data.validation, t.eval_batches,
                               t.batch_size // cfg.optim.grad_accum, t.seed + 1, **text)
    return Inputs(cfg, tokenizer, train, validation, "images", t.batch_size)


def pair_inputs(cfg: config_lib.Config, run: RunDir, resuming: bool) -> Inputs:
    """Source-target pairs (data/pairs.py) for an encoder-decoder: rows of the source
    right-padded to model.max_len and of the target (+ </s>) to data.target_len (0:
    model.max_len), in a seeded order per epoch. Its tokens per step are the positions a step
    runs over: the encoder's max_len and the decoder's target length per row, padding
    included (the step computes over it)."""
    dc, t = cfg.data, cfg.train
    splits = load_pairs(dc.corpus)
    tokenizer = data_tokenizer(dc.tokenizer, [x for p in splits.train for x in p],
                               [x for p in splits.validation + splits.test for x in p],
                               run_tokenizer(cfg, run, resuming), dc.vocab_size)
    cfg = vocab_config(cfg, model_vocab(cfg, tokenizer.vocab_size), resuming)
    m = cfg.model
    end = seq2seq_ids(tokenizer.vocab_size)[1]
    width = target_length(cfg)
    train = RowBatches(encode_pairs(tokenizer, splits.train, m.max_len, end, width),
                       t.batch_size, t.seed)
    validation = fixed_rows(encode_pairs(tokenizer, splits.validation, m.max_len, end, width),
                            t.eval_batches, t.batch_size // cfg.optim.grad_accum)
    return Inputs(cfg, tokenizer, train, validation, "tokens", t.batch_size * (m.max_len + width))
