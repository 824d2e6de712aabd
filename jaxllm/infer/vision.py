"""Using trained ViT and CLIP models: classification, zero-shot classification, retrieval, and
the pictures of them.

    logits = classify(model, params, images)                    # ViT, images uint8 (N, H, W, C)
    img = image_embeddings(model, params, images)               # CLIP, (N, E) unit rows
    cls = class_embeddings(model, params, tok, text_len, ["zero", ...], templates)   # (K, E)
    pred = np.argmax(img @ cls.T, axis=1)                       # zero-shot classification
    sim, pred = zero_shot(model, params, tok, text_len, images, prompts)   # one prompt a class
    acc = accuracy(model, params, split)                        # ViT on a data.images split
    recall_at_k(img @ txt.T, relevant, ks=(1, 5))

Zero-shot with several templates averages each class's prompt embeddings and renormalises
(CLIP's prompt ensembling). Recall@k counts a query as found when any of its k most similar
items is relevant; with captions made from labels, every caption of the image's digit is
relevant (the captions of one digit and template are identical, so the exact pair is not
distinguishable).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import jax
import numpy as np

from jaxllm.data.captions import encode_captions
from jaxllm.data.images import normalize

_BATCH = 500


@partial(jax.jit, static_argnums=0)
def _classify(model, params, images):
    return model.apply({"params": params}, images)["logits"]


@partial(jax.jit, static_argnums=0)
def _encode_image(model, params, images):
    return model.apply({"params": params}, images, method="encode_image")


@partial(jax.jit, static_argnums=0)
def _encode_text(model, params, tokens, eot):
    return model.apply({"params": params}, tokens, eot, method="encode_text")


def _batched(fn, n: int, batch: int = _BATCH) -> np.ndarray:
    """fn(slice) over [0, n) in batches of one size (the last padded), so one compile serves."""
    outs = []
    for start in range(0, n, batch):
        outs.append(np.asarray(fn(start, min(start + batch, n))))
    return np.concatenate(outs)


def _pad(x: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([x, np.repeat(x[-1:], size - len(x), 0)]) if len(x) < size else x


def classify(model, params, images: np.ndarray, batch: int = _BATCH) -> np.ndarray:
    """ViT logits (N, classes) of uint8 images (N, H, W, C)."""
    b = min(batch, len(images))
    return _batched(lambda s, e: _classify(model, params, normalize(_pad(images[s:e], b)))[:e - s],
                    len(images), b)


def image_embeddings(model, params, images: np.ndarray, batch: int = _BATCH) -> np.ndarray:
    """CLIP image embeddings (N, E) of uint8 images (N, H, W, C)."""
    b = min(batch, len(images))
    return _batched(lambda s, e: _encode_image(model, params,
                                               normalize(_pad(images[s:e], b)))[:e - s],
                    len(images), b)


def text_embeddings(model, params, tokenizer, texts: Sequence[str], text_len: int,
                    batch: int = _BATCH) -> np.ndarray:
    """CLIP text embeddings (M, E) of texts."""
    tokens, eot = encode_captions(tokenizer, list(texts), text_len)
    b = min(batch, len(texts))
    return _batched(lambda s, e: _encode_text(model, params, _pad(tokens[s:e], b),
                                              _pad(eot[s:e], b))[:e - s], len(texts), b)


def class_embeddings(model, params, tokenizer, text_len: int, class_texts: Sequence[Sequence[str]]
                     ) -> np.ndarray:
    """(K, E): class k's prompts class_texts[k] (one per template) embedded, averaged and
    renormalised."""
    flat = [t for texts in class_texts for t in texts]
    emb = text_embeddings(model, params, tokenizer, flat, text_len)
    per = len(class_texts[0])
    mean = emb.reshape(len(class_texts), per, -1).mean(1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def recall_at_k(sim: np.ndarray, relevant: np.ndarray, ks=(1, 5)) -> dict[int, float]:
    """Fraction of rows (queries) whose k most similar columns include a relevant one."""
    order = np.argsort(-sim, axis=1, kind="stable")
    hits = np.take_along_axis(relevant, order, axis=1)
    return {k: float(np.mean(hits[:, :k].any(axis=1))) for k in ks}


# --- pictures ----------------------------------------------------------------------------------

def _save(fig, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(path)


def plot_predictions(images: np.ndarray, predicted: Sequence[str], truth: Sequence[str] | None,
                     path: str | Path, title: str = "", cols: int = 8) -> None:
    """A grid of images with their predicted labels (green when right; red, with the truth,
    when wrong)."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend stays as it is

    n = len(images)
    rows = -(-n // cols)
    fig = Figure(figsize=(1.4 * cols, 1.6 * rows + 0.4), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i][..., 0] if images[i].shape[-1] == 1 else images[i], cmap="gray")
        right = truth is None or predicted[i] == truth[i]
        ax.set_title(str(predicted[i]) if right else f"{predicted[i]} (is {truth[i]})",
                     fontsize=9, color="green" if right else "red")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_similarity(sim: np.ndarray, images: np.ndarray, texts: Sequence[str],
                    path: str | Path) -> None:
    """The image-text cosine similarity matrix of a batch: images as row labels, texts as
    column labels, the values written in the cells (CLIP paper, figure of zero-shot)."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend stays as it is

    n, m = sim.shape
    fig = Figure(figsize=(2 + 0.8 * m, 1.5 + 0.7 * n), dpi=100)
    ax = fig.add_axes([0.12, 0.02, 0.86, 0.72])
    ax.imshow(sim, cmap="viridis", aspect="auto")
    for i in range(n):
        for j in range(m):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xticks(range(m))
    ax.set_xticklabels(texts, rotation=60, ha="left", fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    for i in range(n):  # the image beside its row
        ins = ax.inset_axes([-0.09, 1 - (i + 1) / n, 0.08, 1 / n], transform=ax.transAxes)
        ins.imshow(images[i][..., 0], cmap="gray")
        ins.axis("off")
    _save(fig, path)


# --- evaluation --------------------------------------------------------------------------------

def accuracy(model, params, split) -> float:
    """A ViT's classification accuracy on a split (data.images: .images, .labels)."""
    return float(np.mean(np.argmax(classify(model, params, split.images), axis=1)
                         == split.labels))


def zero_shot(model, params, tokenizer, text_len: int, images: np.ndarray,
              prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(similarities (N, K), predicted prompt index (N,)) of a CLIP model's images against one
    prompt per class (`jaxllm zero-shot`)."""
    sim = image_embeddings(model, params, images) @ text_embeddings(
        model, params, tokenizer, prompts, text_len).T
    return sim, np.argmax(sim, axis=1)


def zero_shot_accuracy(model, params, tokenizer, text_len: int, img_emb: np.ndarray,
                       labels: np.ndarray, templates) -> float:
    """Accuracy of classifying image embeddings by the digit prompts of `templates`
    ((template, "word" | "numeral") pairs, ensembled)."""
    from jaxllm.data.captions import fill

    cls = class_embeddings(model, params, tokenizer, text_len,
                           [[fill(t, form, k) for t, form in templates] for k in range(10)])
    return float(np.mean(np.argmax(img_emb @ cls.T, axis=1) == labels))


def evaluate_clip(model, params, tokenizer, text_len: int, split, retrieval: int = 1000,
                  seed: int = 0) -> dict:
    """Zero-shot accuracy on the whole split with the held-out templates (ensembled, and one by
    one) and with the training ones, and image->text / text->image recall@1/@5 over the first
    `retrieval` images, each with one caption from a held-out template."""
    from jaxllm.data.captions import HELDOUT_TEMPLATES, TRAIN_TEMPLATES, captions

    img = image_embeddings(model, params, split.images)
    zs = lambda templates: zero_shot_accuracy(model, params, tokenizer, text_len, img,  # noqa
                                              split.labels, templates)
    out = {"zero_shot_heldout": zs(HELDOUT_TEMPLATES), "zero_shot_train_templates":
           zs(TRAIN_TEMPLATES), "per_heldout_template": {t: zs([(t, f)])
                                                         for t, f in HELDOUT_TEMPLATES},
           "images": len(split.labels)}
    n = min(retrieval, len(split.labels))
    labels = split.labels[:n]
    texts = captions(labels, HELDOUT_TEMPLATES, np.random.default_rng(seed))
    sim = img[:n] @ text_embeddings(model, params, tokenizer, texts, text_len).T  # (n, n)
    relevant = labels[:, None] == labels[None, :]
    i2t, t2i = recall_at_k(sim, relevant), recall_at_k(sim.T, relevant.T)
    out.update({"retrieval_items": n, "image_to_text_r1": i2t[1], "image_to_text_r5": i2t[5],
                "text_to_image_r1": t2i[1], "text_to_image_r5": t2i[5]})
    return out
