"""Answer a question from a retrieval index with a chat model, citing the sources.

  jaxllm ask bbc.idx "What did the Bank of England do with interest rates?"
  jaxllm ask bbc.idx "Who won the Six Nations?" --mode hybrid --rerank cross -k 4
  jaxllm ask bbc.idx "sports stories about injuries" --self-query --compress 0.5 --verbose

The answer streams as it is generated, then the numbered sources follow (* = cited). --mode,
--alpha, --filter, --rerank and --candidates are `jaxllm search`'s; --compress RATIO keeps that
share of the sources' tokens (the most surprising sentences, or tokens with --compress-level
token); --summarize replaces each source by the model's summary; --self-query lets the model
extract a metadata filter from the question. --min-score S abstains when no source scores S;
--max-nll X abstains when the answer's mean negative log-likelihood exceeds X.
"""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("index")
    p.add_argument("question")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--mode", default="bm25", choices=["bm25", "dense", "hybrid"])
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--filter", action="append", default=None, metavar="COND")
    p.add_argument("--rerank", default=None, choices=["cross", "llm"])
    p.add_argument("--candidates", type=int, default=20)
    p.add_argument("-k", type=int, default=4)
    p.add_argument("--compress", type=float, default=None, metavar="RATIO")
    p.add_argument("--compress-level", default="sentence", choices=["sentence", "token"])
    p.add_argument("--summarize", action="store_true")
    p.add_argument("--self-query", action="store_true")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--min-score", type=float, default=None)
    p.add_argument("--max-nll", type=float, default=None)
    p.add_argument("--verbose", action="store_true", help="scores and time per stage")


def run(args) -> int:
    import sys

    from jaxllm import pretrained
    from jaxllm.rag import answer, reranked
    from jaxllm.rag.compress import compressor, summarizer
    from jaxllm.retrieval import Index

    index = Index.load(args.index)
    lm = pretrained.load(args.model)
    if lm.config.kind == "encoder":
        from jaxllm.errors import ConfigError

        raise ConfigError(f"--model {args.model!r} is an encoder; give a chat model such as "
                          f"smollm2-135m-instruct")
    rerank = compress = None
    if args.rerank:
        from jaxllm.retrieval.rerank import load_reranker

        rerank = reranked(load_reranker(args.rerank, index=index))
    if args.compress is not None:
        compress = compressor(lm, args.compress, args.compress_level)
    elif args.summarize:
        compress = summarizer(lm)

    def show(piece):
        sys.stdout.write(piece)
        sys.stdout.flush()

    a = answer(index, args.question, lm=lm, k=args.k, mode=args.mode, alpha=args.alpha,
               filter=args.filter, rerank=rerank, candidates=args.candidates, compress=compress,
               max_new_tokens=args.max_new_tokens, min_score=args.min_score,
               max_nll=args.max_nll, on_text=show, self_query=args.self_query)
    if a.abstained and a.scores.get("mean_nll") is not None:
        print(f"\n(unsure: mean NLL {a.scores['mean_nll']:.2f} > {args.max_nll}) {a.text}",
              end="")
    print("\n\nSources:")
    for n, r in enumerate(a.sources, 1):
        title = r.metadata.get("title") or r.metadata.get("doc_id")
        print(f"{'*' if n in a.cited else ' '}[{n}] {r.id}  {title}")
    if not a.sources:
        print("  (none found)")
    if args.verbose:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in a.scores.items() if v is not None)
        times = ", ".join(f"{k} {v:.3f}s" for k, v in a.timings.items())
        print(f"\n{scores}\n{times}" + (f"\nfilter {a.filter}" if a.filter else ""))
    return 0
