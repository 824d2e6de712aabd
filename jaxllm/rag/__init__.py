"""Answering over an index: retrieve, rerank, compress, prompt with numbered sources, generate
with citations and uncertainty; self-querying, prompt compression and prompting patterns.

- answer.py: `answer(index, question, ...)` -> `Answer` (each stage a swappable function);
- prompt.py: numbered-source messages, the chat template (or a plain transcript), `complete`
  (generate with streaming, log-probs and entropies), citations;
- compress.py: surprisal-based sentence or token dropping to a target ratio; summaries;
- selfquery.py: a structured query {"query", "filter"} over the index's metadata, decoded
  under a JSON-schema constraint;
- patterns.py: zero-, one-, few-shot, chain-of-thought, hybrid, prompt chaining, refinement;
- judge.py: model-judged faithfulness and relevancy (the arithmetic is in jaxllm.metrics).
"""

from jaxllm.rag.answer import Answer, answer, reranked, retriever
from jaxllm.rag.prompt import ABSTAIN, complete, render_chat, sources_messages

__all__ = ["ABSTAIN", "Answer", "answer", "complete", "render_chat", "reranked", "retriever",
           "sources_messages"]
