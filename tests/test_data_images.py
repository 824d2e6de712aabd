"""Image data: the one-time MNIST conversion (arrays-only unpickler), the digits fixture, the
resumable image batches, caption templates and the word tokenizer."""

import gzip
import os
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.data.captions import (DIGIT_WORDS, EOT_ID, HELDOUT_TEMPLATES, TRAIN_TEMPLATES, UNK_ID,
                                  caption_tokenizer, captions, check_template, class_prompts,
                                  encode_captions)
from jaxllm.data.images import (ImageBatches, convert_mnist, fixed_batches, load_images,
                                normalize, shift_images)
from jaxllm.errors import DataError
from jaxllm.text import load_tokenizer


def _fake_mnist_pickle(path, splits):
    with gzip.open(path, "wb") as f:
        pickle.dump(splits, f, protocol=2)


def test_conversion_keeps_pixels_labels_and_splits(tmp_path):
    rng = np.random.default_rng(0)
    splits = tuple((rng.integers(0, 256, (n, 784)).astype(np.float32) / 256,
                    rng.integers(0, 10, n).astype(np.int64)) for n in (5, 3, 2))
    _fake_mnist_pickle(tmp_path / "m.pkl.gz", splits)
    convert_mnist(tmp_path / "m.pkl.gz", tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        for name, (x, y) in zip(("train", "validation", "test"), splits):
            assert z[f"{name}_images"].dtype == np.uint8
            np.testing.assert_array_equal(z[f"{name}_images"].reshape(len(y), -1), x * 256)
            np.testing.assert_array_equal(z[f"{name}_labels"], y)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_conversion_unpickles_numpy_arrays_only(tmp_path):
    _fake_mnist_pickle(tmp_path / "evil.pkl.gz", ((_Evil(), np.zeros(1)),))
    with pytest.raises(pickle.UnpicklingError, match="not a numpy array part"):
        convert_mnist(tmp_path / "evil.pkl.gz", tmp_path / "evil.npz")
    assert not (tmp_path / "evil.npz").exists()


@pytest.mark.slow
def test_mnist_from_the_package_has_the_shipped_splits():
    data = load_images("mnist")  # converts once into the session's data dir
    assert [len(s.labels) for s in (data.train, data.validation, data.test)] == [50000, 10000,
                                                                                 10000]
    assert data.image_shape == (28, 28, 1) and data.train.images.dtype == np.uint8
    assert list(data.test.labels[:5]) == [7, 2, 1, 0, 4]  # the classic first test digits
    assert np.bincount(data.train.labels).min() > 4400


def test_digits_fixture_and_unknown_dataset():
    data = load_images("digits")
    assert [len(s.labels) for s in (data.train, data.validation, data.test)] == [1297, 250, 250]
    assert data.image_shape == (8, 8, 1) and data.train.images.max() == 255
    with pytest.raises(DataError, match="unknown image dataset 'cifar'"):
        load_images("cifar")


def test_batches_are_pure_cover_each_epoch_once_and_resume():
    split = load_images("digits").train
    it = ImageBatches(split, 100, seed=3)
    per_epoch = [it.indices(s) for s in range(13)]  # 1300 positions: one epoch + 3
    first = np.concatenate(per_epoch)[:1297]
    assert sorted(first) == list(range(1297))
    b5 = it.batch(5)
    for _ in range(5):
        next(it)
    state = it.state()
    again = ImageBatches(split, 100, seed=3)
    again.restore(state)
    got = next(again)
    for k in b5:
        np.testing.assert_array_equal(got[k], b5[k])
    assert not np.array_equal(ImageBatches(split, 100, seed=4).indices(0), it.indices(0))
    with pytest.raises(DataError, match="batch_size=100 but this run has batch_size=50"):
        ImageBatches(split, 50, seed=3).restore(state)
    with pytest.raises(DataError, match="fewer than one batch"):
        ImageBatches(split, 5000, seed=3)


def test_batches_with_captions_use_training_templates_only():
    split = load_images("digits").train
    tok = caption_tokenizer()
    b = ImageBatches(split, 64, seed=0, tokenizer=tok, text_len=10).batch(2)
    assert b["images"].shape == (64, 8, 8, 1) and b["images"].dtype == np.float32
    assert b["images"].min() >= -1 and b["images"].max() <= 1
    train_texts = {t.replace("{}", w) for t, _ in TRAIN_TEMPLATES
                   for w in DIGIT_WORDS + tuple("0123456789")}
    for row, eot, label in zip(b["tokens"], b["eot"], b["labels"]):
        assert row[eot] == EOT_ID and (row[eot + 1:] == 0).all()
        text = tok.decode(row, skip_special_tokens=True)
        assert text in train_texts and (DIGIT_WORDS[label] in text.split()
                                        or str(label) in text.split())
    val = fixed_batches(split, 2, 64, seed=1, tokenizer=tok, text_len=10)
    assert len(val) == 2 and all(len(v["labels"]) == 64 for v in val)
    whole = fixed_batches(split, 0, 500, seed=1)
    assert sum(len(v["labels"]) for v in whole) == 1297


def test_some_rows_of_a_batch_are_those_rows_of_the_whole_batch():
    """A process of a multi-host run reads its rows only; shifts and captions are still drawn
    for the whole batch, so its rows are bitwise the whole batch's."""
    it = ImageBatches(load_images("digits").train, 16, seed=2, tokenizer=caption_tokenizer(),
                      text_len=10, augment_shift=2)
    rows = [1, 2, 3, 9, 15]
    whole, part = it.batch(7), it.batch(7, rows)
    assert whole.keys() == part.keys() == {"images", "labels", "tokens", "eot"}
    for k in whole:
        np.testing.assert_array_equal(part[k], whole[k][rows], err_msg=k)


def test_shift_augmentation_moves_images_within_bounds():
    img = np.zeros((50, 8, 8, 1), np.uint8)
    img[:, 3:5, 3:5] = 255
    out = shift_images(img, np.random.default_rng(0), 2)
    assert out.shape == img.shape and (out.sum((1, 2, 3)) == img.sum((1, 2, 3))).all()
    assert len({o.tobytes() for o in out}) > 5
    np.testing.assert_array_equal(normalize(np.array([0, 255], np.uint8)), [-1.0, 1.0])


def test_caption_tokenizer_round_trip_and_unknown_words(tmp_path):
    tok = caption_tokenizer()
    ids = tok.encode("A photo of the digit Seven", add_special_tokens=True)
    assert ids[-1] == EOT_ID and tok.decode(ids, skip_special_tokens=True) == (
        "a photo of the digit seven")
    assert tok.encode("a sketch of 7")[1] == UNK_ID
    tok.save(tmp_path / "tok.json")  # a HF tokenizer.json; it reads back to the same ids
    again = load_tokenizer(tmp_path / "tok.json")
    assert again.to_hf_dict() == tok.to_hf_dict()
    texts = ["a photo of the digit seven", "a handwritten 7!", "7"]
    tokens, eot = encode_captions(again, texts, 4)  # the first one is cut to fit
    assert list(eot) == [3, 3, 1] and (tokens[np.arange(3), eot] == EOT_ID).all()
    assert tokens[0].tolist() == tok.encode("a photo of", add_special_tokens=True)
    assert tokens[2, 2:].tolist() == [0, 0]  # [PAD]
    # held-out templates bring words training never saw
    held = {w for t, _ in HELDOUT_TEMPLATES for w in t.replace("{}", "").split()}
    assert held - set(tok.get_vocab()) >= {"picture", "figure"}
    with pytest.raises(DataError, match="caption length"):
        encode_captions(tok, texts, 0)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=30), st.lists(st.text(max_size=8), max_size=4))
def test_prompts_need_one_slot_and_non_empty_labels(template, labels):
    good_template = template.count("{}") == 1
    good_labels = bool(labels) and all(s.strip() for s in labels)
    if good_template and good_labels:
        prompts = class_prompts(labels, template)
        assert len(prompts) == len(labels)
        assert all(p == template.replace("{}", s.strip()) for p, s in zip(prompts, labels))
    else:
        with pytest.raises(DataError) as e:
            class_prompts(labels, template)
        assert "\n" not in str(e.value)


def test_captions_fill_words_and_numerals():
    assert captions([7, 3], TRAIN_TEMPLATES[:1]) == ["a photo of the digit seven",
                                                     "a photo of the digit three"]
    assert captions([7], TRAIN_TEMPLATES[1:2]) == ["a handwritten 7"]
    with pytest.raises(DataError, match="must contain one"):
        check_template("a photo of {} and {}")
