"""Corpora as TFDS datasets (array_record, random access, no TensorFlow), and "tfds:NAME" readers.

A registered corpus + a split strategy is prepared once into a TFDS dataset and read back from
disk afterwards; rendering the plays happens only at preparation:

    <data dir>/jaxllm_shakespeare/position-0.1/1.0.0/
        jaxllm_shakespeare-train.array_record-00000-of-00001
        jaxllm_shakespeare-validation.array_record-00000-of-00001
        dataset_info.json, features.json

- builder name "jaxllm_<corpus>": the corpus is part of the dataset's identity;
- config name "<split>-<val_fraction>" (e.g. "position-0.1", "document-0.1"): so is the split;
- version: the corpus's registered version, bumped whenever its rendering changes.
One example per document, features {"title": Text, "text": Text}, in corpus order (shuffling is
disabled, the position split depends on the order). TFDS writes into "incomplete.*" and renames
the folder when done, so an interrupted preparation leaves nothing that looks prepared.

The data dir is $JAXLLM_DATA_DIR, or ~/.cache/jaxllm/tfds. Datasets prepared by anyone else in
that dir (array_record format) are read with corpus="tfds:NAME[/CONFIG][:VERSION]".

The one entry point is `load_split_texts(corpus, split, val_fraction, text_key)`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

from jaxllm.data.corpora import Document, get_corpus, load_documents
from jaxllm.data.splits import SPLITS, check_val_fraction, split_documents
from jaxllm.errors import DataError
from jaxllm.platform import quiet

log = logging.getLogger("jaxllm.data")

TFDS_PREFIX = "tfds:"


def default_data_dir() -> Path:
    """Where prepared datasets live: $JAXLLM_DATA_DIR if set, else ~/.cache/jaxllm/tfds."""
    env = os.environ.get("JAXLLM_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jaxllm" / "tfds"


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
    """Keep TFDS's banners ("Downloading and preparing dataset Unknown size ..."), progress bars
    and absl warnings about half-empty folders out of the user's terminal while jaxllm works
    with TFDS (restored afterwards); errors still propagate."""
    with quiet(logging.ERROR), contextlib.redirect_stdout(io.StringIO()):
        yield


# -----------------------------------------------------------------------------------------------
# builders for registered corpora


@dataclasses.dataclass(eq=False)
class CorpusSplitConfig(tfds.core.BuilderConfig):
    """A split strategy and its validation fraction; name "<split>-<val_fraction>"."""

    split: str = "position"
    val_fraction: float = 0.1


def config_name(split: str, val_fraction: float) -> str:
    return f"{split}-{float(val_fraction)!r}"  # repr: the shortest string that round-trips


class CorpusBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the per-corpus builders made by `corpus_builder`: one example per document."""

    corpus: str = ""  # set on each subclass
    VERSION = tfds.core.Version("1.0.0")

    # TFDS 4.9.10 locates a builder's source file through `importlib_resources` (a backport it
    # only declares for Python < 3.9) whenever the builder lives in an installed package, and
    # fails with ModuleNotFoundError on 3.11. Our builders need no files beside their code, so
    # give TFDS the module path directly.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        # Built directly (not dataset_info_from_configs): the builder lives outside a TFDS dataset
        # package, so there are no metadata files beside it to read.
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"jaxllm corpus {self.corpus!r}, one example per document.",
            features=tfds.features.FeaturesDict(
                {"title": tfds.features.Text(), "text": tfds.features.Text()}
            ),
            disable_shuffling=True,  # keep corpus order: the position split is defined on it
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        cfg = self.builder_config
        docs = load_documents(self.corpus)
        train, validation = split_documents(docs, cfg.split, cfg.val_fraction)
        log.info("preparing corpus %r (%s): %d train / %d validation documents",
                 self.corpus, cfg.name, len(train), len(validation))
        return {"train": self._generate_examples(train),
                "validation": self._generate_examples(validation)}

    def _generate_examples(self, docs: Sequence[Document]) -> Iterator[tuple[int, dict[str, str]]]:
        for i, doc in enumerate(docs):  # integer keys: with shuffling disabled, order = key order
            yield i, {"title": doc.title, "text": doc.text}


_BUILDER_CLASSES: dict[tuple[str, str, str], type[CorpusBuilder]] = {}


def _builder_class(corpus: str, version: str, config: CorpusSplitConfig) -> type[CorpusBuilder]:
    """One builder class per (corpus, version, config), made on first use.

    Each class lists its single config in BUILDER_CONFIGS, so TFDS treats it as a known config
    (no "custom configuration" warning); classes skip TFDS's global registry, so no name clashes.
    """
    key = (corpus, version, config.name)
    if key not in _BUILDER_CLASSES:
        attrs = {
            "name": f"jaxllm_{corpus}",
            "corpus": corpus,
            "VERSION": tfds.core.Version(version),
            "RELEASE_NOTES": {version: f"jaxllm corpus {corpus!r} version {version}"},
            "BUILDER_CONFIGS": [config],
            "__module__": __name__,
        }
        _BUILDER_CLASSES[key] = types.new_class(
            f"Jaxllm_{corpus}", (CorpusBuilder,), {"skip_registration": True},
            lambda ns: ns.update(attrs),
        )
    return _BUILDER_CLASSES[key]


def corpus_builder(corpus: str, split: str = "position", val_fraction: float = 0.1,
                   data_dir: str | os.PathLike | None = None) -> CorpusBuilder:
    """The (possibly not yet prepared) TFDS builder of a registered corpus and split."""
    spec = get_corpus(corpus)  # DataError if unknown; resolves a fallback (shakespeare -> pydoc)
    if split not in SPLITS:
        raise DataError(f"data.split={split!r} is not valid; choose one of {', '.join(SPLITS)}")
    val_fraction = check_val_fraction(val_fraction)
    config = CorpusSplitConfig(
        name=config_name(split, val_fraction), split=split, val_fraction=val_fraction,
        description=f"{split} split, validation fraction {val_fraction}",
    )
    cls = _builder_class(spec.name, spec.version, config)
    with _quiet_tfds():
        return cls(data_dir=os.fspath(data_dir or default_data_dir()), config=config.name,
                   file_format="array_record")


def prepare_corpus(corpus: str, split: str = "position", val_fraction: float = 0.1,
                   data_dir: str | os.PathLike | None = None) -> CorpusBuilder:
    """Prepare the corpus's TFDS dataset if it is not on disk yet; return its builder."""
    builder = corpus_builder(corpus, split, val_fraction, data_dir)
    with _quiet_tfds():
        if not builder.is_prepared():
            log.info("preparing %s into %s", builder.data_dir, builder.data_dir_root)
            try:
                builder.download_and_prepare(
                    download_config=tfds.download.DownloadConfig(try_download_gcs=False))
            except OSError as e:  # read-only or full disk, ...
                raise DataError(f"cannot prepare corpus {corpus!r} in {builder.data_dir_root}: "
                                f"{e}; set JAXLLM_DATA_DIR to a writable directory") from None
    return builder


# -----------------------------------------------------------------------------------------------
# reading


def _read_texts(source: Sequence[Any], key: str, where: str) -> list[str]:
    """All `key` values of a data source, in order, as str (TFDS gives Text features as bytes)."""
    texts = []
    for start in range(0, len(source), 1024):  # batched random-access reads
        for example in source.__getitems__(list(range(start, min(start + 1024, len(source))))):
            value = example[key]
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            elif not isinstance(value, str):
                raise DataError(f"{where}: feature {key!r} holds {type(value).__name__} values, "
                                f"not text; pass the name of a Text feature as data.text_key")
            texts.append(value)
    return texts


def _tfds_builder(name: str, root: Path) -> tfds.core.DatasetBuilder:
    """An already-prepared TFDS dataset's builder, or a DataError saying why there is none."""
    how = (f"prepare it once in Python: tfds.builder({name!r}, data_dir={str(root)!r}, "
           f"file_format='array_record').download_and_prepare(), or set JAXLLM_DATA_DIR to the "
           f"data dir that holds it")
    try:
        with _quiet_tfds():
            builder = tfds.builder(name, data_dir=os.fspath(root))
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"unknown TFDS dataset {name!r}: it is not in the TFDS catalog and not "
                        f"prepared under {root}; check the name, or {how}") from None
    except (ValueError, AssertionError, OSError) as e:  # unknown config or version, bad files
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot open TFDS dataset {name!r} in {root}: {first_line}") from None
    if not builder.is_prepared():
        raise DataError(f"TFDS dataset {name!r} is not prepared in the data dir: looked for "
                        f"{builder.data_dir}; {how}")
    return builder


def load_tfds_texts(name: str, text_key: str = "text") -> tuple[list[str], list[str]]:
    """(train, validation) texts of a prepared TFDS dataset; validation falls back to test."""
    root = default_data_dir()
    builder = _tfds_builder(name, root)
    where = f"TFDS dataset {name!r}"
    features = list(builder.info.features.keys()) if builder.info.features else []
    if text_key not in features:
        raise DataError(f"{where} has no feature {text_key!r}; its features are "
                        f"{', '.join(features) or '(none)'}; set data.text_key to a text feature")
    splits = list(builder.info.splits.keys())
    if "train" not in splits:
        raise DataError(f"{where} has no 'train' split; its splits are {', '.join(splits)}")
    val_split = next((s for s in ("validation", "test") if s in splits), None)
    if val_split is None:
        raise DataError(f"{where} has neither a 'validation' nor a 'test' split (it has "
                        f"{', '.join(splits)}); jaxllm needs one of them for evaluation")
    try:
        with _quiet_tfds():  # what tfds.data_source(name, download=False) does, on this builder
            sources = builder.as_data_source(split=["train", val_split])
    except (NotImplementedError, ValueError) as e:
        raise DataError(f"{where} in {builder.data_dir} cannot be read with random access "
                        f"({str(e).strip().splitlines()[0]}); prepare it with "
                        f"file_format='array_record'") from None
    return (_read_texts(sources[0], text_key, where),
            _read_texts(sources[1], text_key, where))


def load_split_texts(corpus: str, split: str = "position", val_fraction: float = 0.1,
                     text_key: str = "text") -> tuple[list[str], list[str]]:
    """(train document texts, validation document texts) of a corpus.

    corpus: a registered name ("shakespeare", "pydoc", see list_corpora()), prepared on first use
    as a TFDS dataset split by `split`/`val_fraction`; or "tfds:NAME[/CONFIG][:VERSION]", an
    already-prepared TFDS dataset read with its own train and validation (or test) splits and
    its `text_key` feature (split and val_fraction do not apply to it).
    """
    if corpus.startswith(TFDS_PREFIX):
        name = corpus[len(TFDS_PREFIX):]
        if not name:
            raise DataError("data.corpus='tfds:' names no dataset; use 'tfds:NAME', "
                            "e.g. 'tfds:lm1b'")
        return load_tfds_texts(name, text_key)
    builder = prepare_corpus(corpus, split, val_fraction)
    with _quiet_tfds():
        sources = builder.as_data_source(split=["train", "validation"])
    where = f"corpus {corpus!r} at {builder.data_dir}"
    return _read_texts(sources[0], "text", where), _read_texts(sources[1], "text", where)
