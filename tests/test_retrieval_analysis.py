"""Analysis, chunking and the shipped corpora of jaxllm.retrieval."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.errors import ConfigError, DataError
from jaxllm.retrieval.analysis import Analyzer
from jaxllm.retrieval.chunking import Chunking, Document, chunk_documents, chunk_spans
from jaxllm.retrieval.corpora import bbc_documents, chatterbot_documents, load_corpus


@pytest.fixture(scope="module")
def bbc():
    return bbc_documents()


def test_bbc_and_chatterbot_corpora(bbc):
    assert len(bbc) == 2225
    cats = {d.metadata["category"] for d in bbc}
    assert cats == {"business", "entertainment", "politics", "sport", "tech"}
    first = next(d for d in bbc if d.id == "sport/001")
    assert first.title == "Claxton hunting first major medal"
    assert first.text.startswith("British hurdler Sarah Claxton")
    chat = chatterbot_documents()
    ai = [d for d in chat if d.metadata["category"] == "ai" and d.title == "What is AI?"]
    assert len(ai) == 2 and ai[0].text.startswith("Artificial Intelligence is the branch")
    assert 2000 < len(chat) < 2600


def test_analyzer_equals_bm25s_tokenizer(bbc):
    import bm25s
    import Stemmer

    texts = [d.text for d in bbc[::40]] + ["The runners were RUNNING, isn't it?", ""]
    ref = bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"),
                         return_ids=False, show_progress=False)
    ours = Analyzer().analyze(texts)
    assert ours[:-1] == [list(r) for r in ref][:-1]
    assert ours[-1] == []
    plain = Analyzer(stopwords="none", stemmer="none")
    ref = bm25s.tokenize(texts[:5], stopwords=None, return_ids=False, show_progress=False)
    assert plain.analyze(texts[:5]) == [list(r) for r in ref]


def test_analyzer_normalises_and_round_trips():
    a = Analyzer()
    # NFKC folds the "fi" ligature and full-width letters before lowercasing.
    assert a("The \ufb01les of ＡＢＣ") == a("the files of abc") == ["file", "abc"]
    assert Analyzer(normalize="none")("\ufb01les") != ["file"]
    b = Analyzer(stopwords=("files",), stemmer="none")
    assert Analyzer.from_dict(b.to_dict()) == b
    assert b("files and cats") == ["and", "cats"]
    with pytest.raises(ConfigError, match="stemmer='klingon'"):
        Analyzer(stemmer="klingon")
    with pytest.raises(ConfigError, match="stopwords"):
        Analyzer(stopwords="german-ish")
    with pytest.raises(ConfigError, match="unknown analyzer"):
        Analyzer.from_dict({"lowercase": True, "colour": 1})


def test_window_chunks_worked_example():
    text = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"
    spans = chunk_spans(text, Chunking("window", size=4, overlap=1))
    assert [text[a:b] for a, b in spans] == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    spans = chunk_spans(text, Chunking("window", size=4, overlap=2))
    assert [text[a:b] for a, b in spans] == ["w0 w1 w2 w3", "w2 w3 w4 w5", "w4 w5 w6 w7",
                                            "w6 w7 w8 w9"]
    assert chunk_spans("  \n ", Chunking()) == []


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text("abc", min_size=1, max_size=3), min_size=1, max_size=40),
       st.integers(1, 9), st.data())
def test_window_chunks_invariants(words, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    text = " ".join(words)
    spans = chunk_spans(text, Chunking("window", size=size, overlap=overlap))
    chunks = [text[a:b].split(" ") for a, b in spans]
    assert all(len(c) <= size for c in chunks)
    assert chunks[0][0:1] == words[0:1] and chunks[-1][-1] == words[-1]
    # consecutive windows share exactly `overlap` words, and together cover the text once
    rebuilt = list(chunks[0])
    for prev, c in itertools.pairwise(chunks):
        assert len(prev) == size and c[:overlap] == prev[size - overlap:]
        rebuilt += c[overlap:]
    assert rebuilt == words


def test_sentence_and_paragraph_chunks():
    text = "One two three. Four five! Six seven eight nine? Ten.\n\nEleven twelve. Thirteen."
    spans = chunk_spans(text, Chunking("sentences", size=5, overlap=2))
    assert [text[a:b] for a, b in spans] == [
        "One two three. Four five!", "Six seven eight nine? Ten.",
        "Ten.\n\nEleven twelve. Thirteen."]
    spans = chunk_spans(text, Chunking("paragraphs", size=20, overlap=0))
    assert [text[a:b] for a, b in spans] == [text]
    spans = chunk_spans(text, Chunking("paragraphs", size=10, overlap=0))
    assert [text[a:b] for a, b in spans] == [
        "One two three. Four five! Six seven eight nine? Ten.", "Eleven twelve. Thirteen."]
    # a sentence longer than the size is cut in windows
    spans = chunk_spans("a b c d e f g.", Chunking("sentences", size=3, overlap=0))
    assert len(spans) == 3


def test_chunk_metadata_and_per_type():
    docs = [Document("a", "x y z " * 4, "Title A", {"category": "news", "type": "long"}),
            Document("b", "p q r s", "Title B", {"category": "faq", "type": "short"})]
    chunks = chunk_documents(docs, Chunking("window", size=5, overlap=0),
                             per_type={"short": Chunking("none")})
    assert [c.id for c in chunks] == ["a#0", "a#1", "a#2", "b#0"]
    assert chunks[1].metadata == {"doc_id": "a", "title": "Title A", "position": 1, "start": 10,
                                  "end": 19, "category": "news", "type": "long"}
    assert chunks[1].text == docs[0].text[10:19]
    assert chunks[3].text == "p q r s"
    with pytest.raises(DataError, match="reserved"):
        chunk_documents([Document("c", "t", metadata={"position": 3})], Chunking())
    with pytest.raises(DataError, match="twice"):
        chunk_documents([docs[0], docs[0]], Chunking())
    with pytest.raises(ConfigError, match="overlap=4"):
        Chunking("window", size=4, overlap=4)


def test_load_corpus_files(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"id": "x", "text": "hello", "lang": "en"}\n\n'
                                      '{"text": "world"}\n')
    docs = load_corpus(str(tmp_path / "c.jsonl"))
    assert [(d.id, d.text, d.metadata) for d in docs] == [("x", "hello", {"lang": "en"}),
                                                          ("3", "world", {})]
    (tmp_path / "bad.jsonl").write_text('{"title": "no text"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        load_corpus(str(tmp_path / "bad.jsonl"))
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="no documents"):
        load_corpus(str(tmp_path / "d"))
    (tmp_path / "d" / "note.md").write_text("some notes")
    assert [d.id for d in load_corpus(str(tmp_path / "d"))] == ["note.md"]
    with pytest.raises(DataError, match="not one of"):
        load_corpus("nowhere")
