"""Self-querying: the schema lists the index's categorical fields and values; whatever the model
samples parses and names only real fields and values; anything that fails falls back to the
request and no filter, never an error; answer(self_query=True) applies the filter."""

import json

from jaxllm.rag import answer
from jaxllm.rag.prompt import Reply
from jaxllm.rag.selfquery import metadata_fields, query_schema, self_query
from jaxllm.retrieval import Document, Index
from retrieval_helpers import DOCS

import numpy as np
import pytest


@pytest.fixture(scope="module")
def index():
    return Index.build(DOCS)


def test_fields_are_the_categorical_metadata(index):
    assert metadata_fields(index) == {"category": ["business", "sport", "tech"],
                                      "year": [2004, 2005]}
    schema = query_schema(metadata_fields(index))
    assert schema["properties"]["filter"]["properties"]["category"]["enum"] == \
        [None, "business", "sport", "tech"]


def test_the_structured_query_uses_only_real_fields_and_values(index, tiny_chat_lm):
    """From a random model (it never wants JSON): still valid, real fields and values."""
    sq = self_query(tiny_chat_lm, index, "sports stories about the cup")
    data = json.loads(sq.raw)  # always parses
    assert set(data) == {"query", "filter"} and set(data["filter"]) == {"category", "year"}
    assert data["filter"]["category"] in (None, "business", "sport", "tech")
    assert data["filter"]["year"] in (None, 2004, 2005)
    assert sq.filter == {k: v for k, v in data["filter"].items() if v is not None}
    assert sq.query


def test_falls_back_to_no_filter(index, tiny_chat_lm):
    sq = self_query(tiny_chat_lm, index, "cup final", max_new_tokens=5)  # budget too small
    assert (sq.query, sq.filter) == ("cup final", {}) and "needs at least" in sq.note
    plain = Index.build([Document("a", "one text"), Document("b", "another text")])
    sq = self_query(tiny_chat_lm, plain, "text")
    assert (sq.query, sq.filter) == ("text", {}) and "no categorical" in sq.note


def test_answer_applies_the_extracted_filter(index, tiny_chat_lm, monkeypatch):
    from jaxllm.rag import selfquery

    def canned(messages, on_text):
        return Reply("ok", [], np.zeros(1), np.zeros(1), 0.0, 0.0)

    monkeypatch.setattr(selfquery, "self_query",
                        lambda lm, idx, q: selfquery.SelfQuery("cup", {"category": "business"}))
    a = answer(index, "the cup final and oil", lm=tiny_chat_lm, self_query=True, generate=canned)
    assert a.filter == {"category": "business"}
    assert {r.metadata["category"] for r in a.sources} == {"business"}
    monkeypatch.setattr(selfquery, "self_query",
                        lambda lm, idx, q: selfquery.SelfQuery("cup", {"category": "tech"}))
    a = answer(index, "the cup final", lm=tiny_chat_lm, self_query=True, generate=canned)
    assert a.filter is None and a.sources[0].id == "s1#0"  # the filter left nothing: dropped
