"""Answering a question over an index: retrieve -> rerank -> compress -> prompt -> generate.

    from jaxllm import rag
    a = rag.answer(index, "Who won the cup final?", mode="hybrid", k=5,
                   on_text=lambda s: print(s, end=""))
    a.text, a.cited, a.sources, a.abstained, a.scores, a.timings

Every stage is a function given as an argument, so any of them can be swapped:

    retrieve(index, question, k) -> [Result]        default: index.search(mode, alpha, filter)
    rerank(question, results) -> [Result]           default: none; `reranked(reranker)` wraps
                                                    an object with .score(query, texts)
    compress(question, results) -> [Result]         default: none; compress.py makes them
    build_prompt(question, results) -> messages     default: prompt.sources_messages
    generate(messages, on_text) -> prompt.Reply     default: prompt.complete with the model

The answer abstains (text = prompt.ABSTAIN, nothing generated) when no source scores at least
`min_score`, and replaces a generated answer by ABSTAIN when its mean negative log-likelihood
(infer/uncertainty.py) exceeds `max_nll`. When the prompt is too long for the model's context,
the lowest-ranked sources are dropped until it fits; a question too long on its own is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from jaxllm.errors import DataError
from jaxllm.infer.uncertainty import max_entropy, mean_nll
from jaxllm.rag.prompt import ABSTAIN, Reply, cited, complete, render_chat, sources_messages

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass
class Answer:
    question: str
    text: str
    sources: list  # the Results numbered [1].. in the prompt
    cited: list[int]  # the numbers the answer cites
    abstained: bool
    scores: dict = field(default_factory=dict)  # mean_nll, max_entropy, top_score
    timings: dict = field(default_factory=dict)  # seconds per stage
    prompt: str = ""
    filter: dict | None = None  # the filter a self-query extracted


def retriever(mode: str = "bm25", alpha: float = 0.5, filter=None, **search):
    """The default retrieve stage: Index.search with these settings."""
    def retrieve(index, question, k):
        return index.search(question, mode=mode, alpha=alpha, filter=filter, k=k, **search)
    return retrieve


def reranked(reranker, keep: int | None = None):
    """A rerank stage from an object with .score(query, texts) (retrieval/rerank.py): the
    results reordered by its scores (stable for ties), the best `keep` kept."""
    def rerank(question, results):
        if not results:
            return results
        scores = [float(s) for s in reranker.score(question, [r.text for r in results])]
        order = sorted(range(len(results)), key=lambda i: (-scores[i], i))
        return [replace(results[i], score=scores[i]) for i in order][:keep]
    return rerank


def fit_context(lm, question, results, build_prompt, max_new_tokens: int):
    """The results (best first) whose prompt leaves max_new_tokens of the model's context:
    the lowest-ranked dropped first. A DataError when even no sources do not fit."""
    budget = lm.config.max_len - max_new_tokens

    def length(rs):
        return len(lm.tokenizer.encode(render_chat(lm.tokenizer, build_prompt(question, rs))))

    results = list(results)
    while length(results) > budget:
        if not results:
            raise DataError(f"the question takes {length([])} tokens of prompt but the model's "
                            f"context of {lm.config.max_len} leaves {budget} after "
                            f"max_new_tokens={max_new_tokens}; shorten the question")
        results.pop()
    return results


def answer(index, question: str, *, lm=None, k: int = 5, mode: str = "bm25",
           alpha: float = 0.5, filter=None, retrieve=None, rerank=None, candidates: int = 20,
           compress=None,
           build_prompt=sources_messages, generate=None, max_new_tokens: int = 128,
           min_score: float | None = None, max_nll: float | None = None,
           on_text=None, self_query: bool = False) -> Answer:
    """Answer a question from an index with a chat model (`lm`: a PretrainedDecoder, by
    default smollm2-135m-instruct); see the module docstring for the stages. self_query: let
    the model extract a metadata filter from the question first (selfquery.py); a filter
    that leaves no results is dropped. With a rerank stage, `candidates` results are
    retrieved and the best k after reranking kept."""
    if not isinstance(question, str) or not question.strip():
        raise DataError("the question is empty; ask something")
    if lm is None:
        from jaxllm import pretrained

        lm = pretrained.load(DEFAULT_MODEL)
    timings = {}
    t = time.perf_counter()
    extracted = None
    if self_query:
        from jaxllm.rag.selfquery import self_query as extract

        sq = extract(lm, index, question)
        extracted = sq.filter or None
        timings["self_query"] = time.perf_counter() - t
        t = time.perf_counter()
    depth, results = (max(k, candidates) if rerank is not None else k), None
    if extracted:  # searched with the model's filter; without it if that leaves nothing
        results = retriever(mode, alpha, _merge(filter, extracted))(index, question, depth)
        extracted = extracted if results else None
    if not results:
        results = (retrieve or retriever(mode, alpha, filter))(index, question, depth)
    timings["retrieve"] = time.perf_counter() - t
    t = time.perf_counter()
    if rerank is not None:
        results = rerank(question, results)[:k]
    timings["rerank"] = time.perf_counter() - t
    t = time.perf_counter()
    if compress is not None:
        results = compress(question, results)
    timings["compress"] = time.perf_counter() - t
    results = fit_context(lm, question, results, build_prompt, max_new_tokens)
    messages = build_prompt(question, results)
    prompt = render_chat(lm.tokenizer, messages)
    top = max((r.score for r in results), default=None)
    scores = {"top_score": top}
    if not results or (min_score is not None and top < min_score):
        if on_text is not None:
            on_text(ABSTAIN)
        return Answer(question, ABSTAIN, results, [], True, scores, timings, prompt, extracted)
    if generate is None:
        def generate(messages, on_text):
            return complete(lm, messages, max_new_tokens=max_new_tokens, on_text=on_text)
    reply: Reply = generate(messages, on_text)
    timings["prefill"] = reply.first_token_s
    timings["decode"] = reply.total_s - reply.first_token_s
    scores |= {"mean_nll": mean_nll(reply.log_probs),
               "max_entropy": max_entropy(reply.entropies)}
    text, abstained = reply.text, reply.text.strip() == ABSTAIN
    if max_nll is not None and scores["mean_nll"] > max_nll:
        text, abstained = ABSTAIN, True
    return Answer(question, text, results, [] if abstained else cited(text, len(results)),
                  abstained, scores, timings, prompt, extracted)


def _merge(given, extracted):
    """The user's filter and a self-query's filter together (the user's wins on a field)."""
    if not extracted:
        return given
    if given is None:
        return extracted
    if isinstance(given, dict):
        return extracted | given
    return [f"{k}={v}" for k, v in extracted.items()] + (
        [given] if isinstance(given, str) else list(given))
