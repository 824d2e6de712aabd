"""What a run with an encoder task head (model.head) reads: labelled texts as fixed-length rows.

    texts, labels, classes = labelled_texts("bbc")
    splits = task_splits(cfg, tokenizer)     # {"train", "validation", "test"}: rows + labels
    fields = task_inputs(cfg, run, resuming) # train.inputs.Inputs(**fields) for the loop
    scores = evaluate_task(loaded)           # jaxllm eval: the test split's scores

Corpora (CORPORA, by model.head):
  sequence  "bbc": BBC News topics, 5 classes (business, entertainment, politics, sport,
            tech), read by jaxllm.data.corpora.bbc_news; a text is the headline, ". ", then the
            article. Or a user's labelled texts, data.corpus=jsonl:FILE of {"text", "label"}
            lines (data/labeled.py). The classes are the labels, sorted; the run saves their
            names (labels.json, train/run.py) for generate, eval and export (run_classes). The
            split is stratified. Rows are model.max_len tokens ([CLS] ... [SEP] with the
            WordPiece tokenizer of all-minilm-l6-v2; longer texts are cut).
  token     "bbc-tags": BBC News articles with their words tagged O / NAME / NUMBER by a rule
            on their casing (data/tagging.py tag_rows).
  span      "bbc-planted": BBC News articles with two planted "The {kind} code is {code}."
            sentences and a question about one of them (data/tagging.py planted_rows).
The split is fixed (`SPLIT_SEED`, whatever train.seed is, so runs with different seeds are
scored on the same test texts): data.val_fraction of the texts (of each class for "bbc") for
validation and as much again for test.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from jaxllm import config as config_lib
from jaxllm.data import RowBatches, fixed_rows
from jaxllm.data.corpora import BBC_CATEGORIES, bbc_news
from jaxllm.data.labeled import encode_texts, read_labelled_jsonl, stratified_split
from jaxllm.data.pairs import bbc_articles
from jaxllm.data.tagging import TAGS, planted_rows, tag_rows
from jaxllm.data.tokens import data_tokenizer
from jaxllm.errors import DataError
from jaxllm.metrics.classification import accuracy, precision_recall_fscore
from jaxllm.objectives.classification import MAX_ANSWER, NEG, best_span
from jaxllm.train.objective import model_vocab
from jaxllm.train.params import vocab_config
from jaxllm.train.run import RunDir, run_tokenizer

SPLIT_SEED = 0
CORPORA = {"sequence": "bbc", "token": "bbc-tags", "span": "bbc-planted"}  # by model.head
FILE_PREFIX = "jsonl:"  # data.corpus=jsonl:FILE: a sequence head's labelled texts
BBC_TOPICS = tuple(sorted(set(BBC_CATEGORIES.values())))  # a sequence head's classes on "bbc"

SPLITS = ("train", "validation", "test")


def head_classes(head: str) -> tuple[str, ...]:
    """The class names of a token head's tags (data/tagging.py's TAGS); none of a span head. A
    sequence head's are its data's (labelled_texts), saved with the run: run_classes."""
    return TAGS if head == "token" else ()


def run_classes(loaded) -> tuple[str, ...]:
    """The class names of a loaded run's head (train.run.load_run's result), in the order of
    its logits. A sequence head's are those saved with the run at training (LoadedRun.classes);
    a run trained before they were saved has the BBC topics when it read data.corpus=bbc, else
    LABEL_0, LABEL_1, ... (what the exports name unnamed classes). Others: head_classes."""
    m = loaded.config.model
    if m.head != "sequence":
        return head_classes(m.head)
    if loaded.classes:
        return tuple(loaded.classes)
    if loaded.config.data.corpus == CORPORA["sequence"] and m.num_classes == len(BBC_TOPICS):
        return BBC_TOPICS
    return tuple(f"LABEL_{i}" for i in range(m.num_classes))


def labelled_file(corpus: str) -> str | None:
    """The path of data.corpus=jsonl:FILE (or FILE.jsonl), None for a corpus name."""
    if corpus.startswith(FILE_PREFIX):
        return corpus[len(FILE_PREFIX):]
    return corpus if corpus.endswith(".jsonl") else None


class TaskSplits(NamedTuple):
    tokenizer: object
    classes: tuple[str, ...]
    train: dict | None  # {"tokens", "mask", "labels"} numpy arrays, one row per text; None
    validation: dict | None  # for a split not asked for (task_splits' `only`)
    test: dict | None


def labelled_texts(corpus: str) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """(texts, labels (N,) int32, class names) of a labelled corpus: "bbc" or jsonl:FILE (the
    class names are the file's labels, sorted)."""
    path = labelled_file(corpus)
    if path is not None:
        texts, names = read_labelled_jsonl(path)
    elif corpus == CORPORA["sequence"]:
        news = bbc_news()
        texts = [f"{headline}. {body}" for _, _, headline, body in news]
        names = [label for label, *_ in news]
    else:
        raise DataError(f"data.corpus={corpus!r}: a model.head=sequence run reads labelled "
                        f"texts: {CORPORA['sequence']}, or your own as data.corpus="
                        f"{FILE_PREFIX}FILE, one {{\"text\": ..., \"label\": ...}} per line")
    classes = tuple(sorted(set(names)))
    index = {c: i for i, c in enumerate(classes)}
    return texts, np.asarray([index[n] for n in names], np.int32), classes


def task_splits(cfg: config_lib.Config, tokenizer=None, only: tuple[str, ...] = SPLITS
                ) -> TaskSplits:
    """The corpus's train/validation/test rows, through `tokenizer` (None: one of
    data.tokenizer's kind built from the train texts); the splits not in `only` are None (not
    encoded)."""
    m, dc = cfg.model, cfg.data
    if m.head != "sequence" and dc.corpus != CORPORA[m.head]:  # a sequence head's: below
        raise DataError(f"data.corpus={dc.corpus!r}: a model.head={m.head} run reads "
                        f"{CORPORA[m.head]}; set data.corpus={CORPORA[m.head]}")
    unknown = set(only) - set(SPLITS)
    if unknown:
        raise DataError(f"split {min(unknown)!r}: choose from {', '.join(SPLITS)}")
    fractions = (dc.val_fraction, dc.val_fraction)
    if m.head == "sequence":
        texts, labels, classes = labelled_texts(dc.corpus)
        parts = stratified_split(labels, fractions, SPLIT_SEED)
    else:  # BBC articles, split at random
        texts = [article for _, _, article in bbc_articles()]
        labels, classes = None, head_classes(m.head)
        parts = stratified_split(np.zeros(len(texts), np.int32), fractions, SPLIT_SEED)
    if m.head != "span" and m.num_classes != len(classes):
        raise DataError(f"model.num_classes={m.num_classes}: data.corpus={dc.corpus} has "
                        f"{len(classes)} classes ({', '.join(classes)}); set it to {len(classes)}")
    tokenizer = data_tokenizer(dc.tokenizer, [texts[i] for i in parts[0]], texts, tokenizer,
                               dc.vocab_size)

    def rows(k: int, p: np.ndarray) -> dict:
        part = [texts[i] for i in p]
        if m.head == "sequence":
            return {**encode_texts(tokenizer, part, m.max_len), "labels": labels[p]}
        if m.head == "token":
            return tag_rows(tokenizer, part, m.max_len)
        # a seed per split: the planted codes of one split are not those of another
        return planted_rows(tokenizer, part, m.max_len, SPLIT_SEED + k)

    return TaskSplits(tokenizer, classes, *(rows(k, p) if name in only else None
                                             for k, (name, p) in enumerate(zip(SPLITS, parts))))


def check_classes(cfg: config_lib.Config, classes: tuple[str, ...], saved, path) -> None:
    """Refuse a sequence-head run's data whose classes are not those saved with the run (its
    labels file edited since training): the logits would name other classes."""
    if cfg.model.head == "sequence" and saved and tuple(saved) != classes:
        raise DataError(f"data.corpus={cfg.data.corpus} now has the classes "
                        f"{', '.join(classes)}; {path} was trained on {', '.join(saved)}: "
                        f"give it the data it was trained on")


def task_inputs(cfg: config_lib.Config, run: RunDir, resuming: bool):
    """The fields of train.inputs.Inputs for a task-head run: shuffled rows for training, fixed
    validation batches of shuffled rows (train.eval_batches of them, at most the whole split)."""
    t = cfg.train
    data = task_splits(cfg, run_tokenizer(cfg, run, resuming))
    if resuming:
        check_classes(cfg, data.classes, run.load_classes(), run.path)
    cfg = vocab_config(cfg, model_vocab(cfg, data.tokenizer.vocab_size), resuming)
    train = RowBatches(data.train, t.batch_size, t.seed)
    # the split's rows are in corpus order (class by class): shuffled once, so that a few
    # validation batches hold every class
    order = np.random.default_rng(SPLIT_SEED).permutation(len(data.validation["tokens"]))
    validation = fixed_rows({k: v[order] for k, v in data.validation.items()}, t.eval_batches,
                            t.batch_size // cfg.optim.grad_accum)
    return {"cfg": cfg, "tokenizer": data.tokenizer, "train": train, "validation": validation,
            "unit": "sequences", "per_step": t.batch_size,
            "classes": data.classes if cfg.model.head == "sequence" else ()}


def predict(model, params, rows: dict, batch_size: int = 32) -> dict[str, np.ndarray]:
    """The task head's outputs (encoder.py: "logits", or "start_logits" and "end_logits") of
    rows {"tokens", "mask", optional "types"}, in batches of one shape (the last one padded
    with copies of its first row)."""
    apply = jax.jit(lambda p, t, y, m: model.apply({"params": p}, t, y, m))
    n = len(rows["tokens"])
    out = []
    for s in range(0, n, batch_size):
        idx = np.arange(s, s + batch_size)
        idx = np.where(idx < n, idx, s)
        types = rows["types"][idx] if "types" in rows else None
        out.append(jax.device_get(apply(params, rows["tokens"][idx], types, rows["mask"][idx])))
    return {k: np.concatenate([o[k] for o in out])[:n] for k in out[0]}


def tag_scores(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> dict:
    """Accuracy and macro-F1 (over classes 0..n_classes-1) of predicted class ids; labels -1
    (untagged positions) are left out."""
    keep = labels >= 0
    labels, pred = labels[keep], pred[keep]
    macro = precision_recall_fscore(labels, pred, average="macro", labels=list(range(n_classes)))
    return {"labelled": len(labels), "accuracy": accuracy(labels, pred),
            "macro_f1": float(macro[2])}


def span_scores(rows: dict, starts: np.ndarray, ends: np.ndarray) -> dict:
    """Exact match (the span is the answer's) and the mean F1 of the spans' tokens against the
    answers' (SQuAD's overlap F1, over WordPiece positions) of predicted spans (N,) of rows."""
    gs, ge = rows["starts"], rows["ends"]
    overlap = np.maximum(0, np.minimum(ends, ge) - np.maximum(starts, gs) + 1)
    f1 = np.where(overlap > 0, 2 * overlap / np.maximum((ends - starts + 1) + (ge - gs + 1), 1),
                  0.0)
    return {"exact_match": float(np.mean((starts == gs) & (ends == ge))),
            "f1": float(np.mean(f1))}


def evaluate_task(loaded, split: str = "test") -> dict:
    """Scores of a trained task-head run on a split of its corpus (loaded: train.run.load_run's
    result), with "split" and "texts" (rows scored): tag_scores of texts (sequence) or of tagged
    tokens (token); span_scores of the best valid span (span). Only that split is encoded."""
    head = loaded.config.model.head
    data = task_splits(loaded.config, loaded.tokenizer, only=(split,))
    check_classes(loaded.config, data.classes, loaded.classes, loaded.run.path)
    rows = getattr(data, split)
    out = predict(loaded.model, loaded.params, rows)
    n = len(rows["tokens"])
    if head == "span":
        start = np.where(rows["mask"], out["start_logits"], NEG)
        end = np.where(rows["mask"], out["end_logits"], NEG)
        s, e, _ = (np.asarray(x) for x in best_span(start, end, rows["context"], MAX_ANSWER))
        return {"split": split, "texts": n, **span_scores(rows, s, e)}
    return {"split": split, "texts": n, "classes": data.classes,
            **tag_scores(rows["labels"], out["logits"].argmax(-1), len(data.classes))}
