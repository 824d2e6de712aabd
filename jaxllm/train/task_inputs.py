"""What a run with an encoder task head (model.head) reads: labelled texts as fixed-length rows.

    texts, labels, classes = labelled_texts("bbc")
    splits = task_splits(cfg, tokenizer)     # {"train", "validation", "test"}: rows + labels
    fields = task_inputs(cfg, run, resuming) # train.inputs.Inputs(**fields) for the loop
    scores = evaluate_task(loaded)           # jaxllm eval: test accuracy and macro-F1

Corpora: "bbc" (BBC News topics, 5 classes: business, entertainment, politics, sport, tech),
read by jaxllm.retrieval.corpora; a text is the headline, ". ", then the article. The split is
stratified and fixed (`SPLIT_SEED`, whatever train.seed is, so runs with different seeds are
scored on the same test articles): data.val_fraction of each class for validation and as much
again for test. Rows are model.max_len tokens ([CLS] ... [SEP] with the WordPiece tokenizer
of all-minilm-l6-v2; longer articles are cut).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from jaxllm import config as config_lib
from jaxllm.data import RowBatches, fixed_rows
from jaxllm.data.corpora import BBC_CATEGORIES
from jaxllm.data.labeled import encode_texts, stratified_split
from jaxllm.errors import DataError
from jaxllm.metrics.classification import accuracy, precision_recall_fscore
from jaxllm.retrieval.corpora import bbc_documents
from jaxllm.text import TRAINABLE_KINDS, build_tokenizer
from jaxllm.text import train as train_tokenizer
from jaxllm.train.objective import model_vocab
from jaxllm.train.params import vocab_config
from jaxllm.train.run import RunDir, run_tokenizer

SPLIT_SEED = 0
CORPORA = ("bbc",)  # labelled corpora a model.head=sequence run reads


class TaskSplits(NamedTuple):
    tokenizer: object
    classes: tuple[str, ...]
    train: dict  # {"tokens", "mask", "labels"} numpy arrays, one row per text
    validation: dict
    test: dict


def labelled_texts(corpus: str) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """(texts, labels (N,) int32, class names) of a labelled corpus."""
    if corpus != "bbc":
        raise DataError(f"data.corpus={corpus!r}: a model.head=sequence run reads a labelled "
                        f"corpus, one of {', '.join(CORPORA)}")
    classes = tuple(sorted(set(BBC_CATEGORIES.values())))
    docs = bbc_documents()
    texts = [f"{d.title}. {d.text}" for d in docs]
    labels = np.asarray([classes.index(d.metadata["category"]) for d in docs], np.int32)
    return texts, labels, classes


def task_splits(cfg: config_lib.Config, tokenizer=None) -> TaskSplits:
    """The corpus's stratified train/validation/test rows, through `tokenizer` (None: one of
    data.tokenizer's kind built from the train texts)."""
    m, dc = cfg.model, cfg.data
    if m.head != "sequence":
        raise DataError(f"model.head={m.head}: no {m.head}-labelled corpus is shipped; runs "
                        f"train model.head=sequence on {', '.join(CORPORA)} (the {m.head} head "
                        f"and its loss are in the library: jaxllm.objectives.task_loss)")
    texts, labels, classes = labelled_texts(dc.corpus)
    if m.num_classes != len(classes):
        raise DataError(f"model.num_classes={m.num_classes}: data.corpus={dc.corpus} has "
                        f"{len(classes)} classes ({', '.join(classes)}); set it to {len(classes)}")
    parts = stratified_split(labels, (dc.val_fraction, dc.val_fraction), SPLIT_SEED)
    if tokenizer is None:
        train_texts = [texts[i] for i in parts[0]]
        tokenizer = (train_tokenizer(train_texts, dc.vocab_size, kind=dc.tokenizer)
                     if dc.tokenizer in TRAINABLE_KINDS else build_tokenizer(dc.tokenizer, texts))
    rows = encode_texts(tokenizer, texts, m.max_len)
    train, validation, test = ({**{k: v[p] for k, v in rows.items()}, "labels": labels[p]}
                               for p in parts)
    return TaskSplits(tokenizer, classes, train, validation, test)


def task_inputs(cfg: config_lib.Config, run: RunDir, resuming: bool):
    """The fields of train.inputs.Inputs for a task-head run: shuffled rows for training, fixed
    validation batches of shuffled rows (train.eval_batches of them, at most the whole split)."""
    t = cfg.train
    data = task_splits(cfg, run_tokenizer(cfg, run, resuming))
    cfg = vocab_config(cfg, model_vocab(cfg, data.tokenizer.vocab_size), resuming)
    train = RowBatches(data.train, t.batch_size, t.seed)
    # the split's rows are in corpus order (class by class): shuffled once, so that a few
    # validation batches hold every class
    order = np.random.default_rng(SPLIT_SEED).permutation(len(data.validation["labels"]))
    validation = fixed_rows({k: v[order] for k, v in data.validation.items()}, t.eval_batches,
                            t.batch_size // cfg.optim.grad_accum)
    return {"cfg": cfg, "tokenizer": data.tokenizer, "train": train, "validation": validation,
            "unit": "sequences", "per_step": t.batch_size}


def predict(model, params, rows: dict, batch_size: int = 32) -> np.ndarray:
    """Class logits (N, C) of rows {"tokens", "mask"}, in batches of one shape (the last one
    padded with copies of its first row)."""
    apply = jax.jit(lambda p, t, m: model.apply({"params": p}, t, None, m)["logits"])
    n = len(rows["tokens"])
    out = []
    for s in range(0, n, batch_size):
        idx = np.arange(s, s + batch_size)
        idx = np.where(idx < n, idx, s)
        out.append(np.asarray(apply(params, rows["tokens"][idx], rows["mask"][idx])))
    return np.concatenate(out)[:n]


def evaluate_task(loaded, split: str = "test") -> dict:
    """Accuracy and macro-F1 of a trained model.head=sequence run on a split of its corpus
    (loaded: train.run.load_run's result)."""
    data = task_splits(loaded.config, loaded.tokenizer)
    rows = getattr(data, split)
    pred = predict(loaded.model, loaded.params, rows).argmax(-1)
    macro = precision_recall_fscore(rows["labels"], pred, average="macro",
                                    labels=list(range(len(data.classes))))
    return {"texts": len(pred), "accuracy": accuracy(rows["labels"], pred),
            "macro_f1": float(macro[2]), "classes": data.classes}
