"""The evaluation sets: sizes, disjoint articles, and each query rule on a worked example."""

from jaxllm.retrieval.chunking import Document
from jaxllm.retrieval.corpora import chatterbot_documents
from jaxllm.retrieval.evalsets import (
    TYPES,
    bbc_sets,
    bbc_typed_training,
    chatterbot_sets,
)

BODY = ("British hurdler Sarah Claxton is confident she can win her first major medal at "
        "next month's European Indoor Championships in Madrid. The 25-year-old has already "
        "smashed the British record over 60m hurdles twice this season, setting a new mark of "
        "7.96 seconds to win the AAAs title.")


def test_bbc_sets_rules_and_split():
    docs = [Document(f"d{i}", f"{BODY} unique{i} token{i % 3}", "Claxton hunting first major "
                     "medal's chances", {}) for i in range(50)]
    sets = bbc_sets(docs)
    assert [q["id"] for q in sets["known-item"]] == [f"ki{i}" for i in range(0, 50, 5)]
    by_type = {q["type"]: q for q in sets["types"] if q["relevant"] == ["d1"] or
               q["relevant"][0] in {"d2", "d3", "d4", "d6", "d7"}}
    assert set(by_type) == set(TYPES)
    assert by_type["web"]["query"] == "claxton hunting first major"
    assert by_type["misspell"]["query"] == "clxaton hutning frist mjaor"
    assert by_type["concept"]["query"] == ("British hurdler is confident she can win her first "
                                           "major medal at next month's in")
    # "7.96" is word 19 of its sentence: words 13..24, the number as "what"
    assert by_type["fact"]["query"] == ("season, setting a new mark of what seconds to win the "
                                        "AAAs?")
    assert by_type["keyword"]["query"] == "unique4 token1"  # document frequencies 1 and 17
    assert by_type["substring"]["query"] in " ".join(docs[7].text.split())
    # every article serves one set only
    used = [q["relevant"][0] for name in sets for q in sets[name]]
    assert sorted(used) == sorted(d.id for d in docs)
    assert bbc_sets(docs) == sets  # deterministic
    # typed training queries: the train articles only, the six types in turn, the same rules
    typed = bbc_typed_training(docs)
    assert [q["relevant"] for q in typed] == [q["relevant"] for q in sets["train"]]
    assert [q["type"] for q in typed[:7]] == [*TYPES, TYPES[0]]
    assert typed[0]["query"] == "claxton hunting first major"  # web: as above, article d8
    assert typed[4]["query"] == "clxaton hutning frist mjaor"
    assert typed[3]["query"] == "unique12 token0"  # keyword: article d12 (d8, d9, d11, d12...)


def test_chatterbot_sets():
    sets = chatterbot_sets(chatterbot_documents())
    first = sets["qa"][0]
    assert first["query"] == "What is AI?" and first["relevant"] == ["ai/0:1", "ai/1:1"]
    questions = [q["query"] for q in sets["qa"] + sets["train"]]
    assert len(questions) == len(set(questions)) and abs(len(sets["qa"]) - len(sets["train"])) <= 1
