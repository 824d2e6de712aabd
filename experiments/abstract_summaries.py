"""What a model-written abstract index of BBC News would cost here: SmolLM2-135M-Instruct's
summary time per article, measured on a few articles, and the whole corpus extrapolated.

    python experiments/abstract_summaries.py [--articles 5] [--append]

Each article (cut to its first --words words) is summarised in the chat template, greedy,
at most --new-tokens tokens. An index takes the summaries as `Index.build(..., abstracts=
{doc_id: summary})`; the default abstract is the lead paragraph, which costs nothing.
"""

from __future__ import annotations

import argparse
import time

from rag_planted import append  # RESULTS.md's header: command, CPU, versions, load

PROMPT = "Summarise this news article in one or two sentences.\n\n{article}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=5)
    ap.add_argument("--words", type=int, default=300)
    ap.add_argument("--new-tokens", type=int, default=60)
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()

    from jaxllm.platform import configure_cpu

    configure_cpu()
    from jaxllm import pretrained
    from jaxllm.retrieval import load_corpus
    from jaxllm.retrieval.index import lead_paragraph

    lm = pretrained.load("smollm2-135m-instruct")
    docs = load_corpus("bbc")
    step = len(docs) // args.articles  # spread over the five categories
    picked = [docs[i * step] for i in range(args.articles)]
    ask = lambda d: [{"role": "user", "content": PROMPT.format(
        article=" ".join(d.text.split()[:args.words]))}]
    rows, times = [], []
    for d in picked:  # each prompt length compiles once: the first call, then a timed one
        start = time.perf_counter()
        lm.chat(ask(d), max_new_tokens=args.new_tokens)
        first = time.perf_counter() - start
        start = time.perf_counter()
        summary = lm.chat(ask(d), max_new_tokens=args.new_tokens)
        times.append(time.perf_counter() - start)
        summary = " ".join(summary.split()).replace("|", "/")
        rows.append(f"| {d.id} | {first:.1f} | {times[-1]:.1f} | {summary} | "
                    f"{lead_paragraph(d.text)[:160].replace('|', '/')}... |")
    per = sum(times) / len(times)
    out = ("| article | s (first call, compiles) | s (compiled) | SmolLM2 summary | lead paragraph "
           "(the default abstract) |\n|---|---|---|---|---|\n" + "\n".join(rows))
    out += (f"\n\nMean {per:.1f} s per article once compiled: the {len(docs):,} articles would "
            f"take about {per * len(docs) / 3600:.1f} h on this machine (one at a time).")
    print(out)
    if args.append:
        append("Model-written abstracts: SmolLM2 summary time per BBC article", out)


if __name__ == "__main__":
    main()
