"""Model judges for jaxllm.metrics.rag: a yes/no question to the chat model, read as p(yes).

    judge = Judge(lm)
    faithfulness(answer, sources, judge.supported)     # per answer sentence
    relevancy(question, answer, judge.relevant)

p(yes) = sigmoid(log p(yes) - log p(no)) of the first answer token, each side summed over the
spellings of yes / no that are single tokens of the vocabulary ("yes", "Yes", " yes", " Yes"),
that is p(yes) / (p(yes) + p(no)) under the model's softmax. Prompts are left-padded to a
multiple of PAD_TO tokens, so that judging many answers compiles one forward per length bucket.

The sentences of one answer are judged against the same context, so their prompts share
everything up to the statement. With prefix_cache (the default) that shared prefix is run once
into a KV cache (infer/prefix.py) and kept while the next statement's prompt starts with it;
each statement then costs a forward over its own few tokens (left-padded to a multiple of
SUFFIX_PAD_TO). The tokens, and so the values, are those of the whole prompt: the prefix is
the whole prompt's leading tokens (the prompt is tokenized whole, and its prefix is cut one
token short of where the statement starts, so that no token spans the cut).
"""

from __future__ import annotations

import numpy as np

from jaxllm.errors import ConfigError
from jaxllm.infer import generate
from jaxllm.infer.prefix import extend, prefill
from jaxllm.rag.prompt import render_chat

SUPPORTED = ("Is the statement supported by the context? Answer yes or no.\n\n"
             "Context: {context}\n\nStatement: {statement}")
PAD_TO = 64
SUFFIX_PAD_TO = 16
RELEVANT = ("Does the answer address the question? Answer yes or no.\n\n"
            "Question: {question}\n\nAnswer: {answer}")


class Judge:
    def __init__(self, lm, max_context_tokens: int = 1024, prefix_cache: bool = True):
        self.lm, self.max_context_tokens = lm, max_context_tokens
        self.prefix_cache, self._prefix = prefix_cache, None
        self.prefills = 0  # prefixes run into a cache so far
        self.yes, self.no = self._single_tokens("yes"), self._single_tokens("no")
        if not self.yes or not self.no:
            raise ConfigError(f"{lm.name}: 'yes'/'no' are not single tokens of its vocabulary")

    def _single_tokens(self, word: str) -> list[int]:
        out = []
        for form in (word, word.capitalize(), " " + word, " " + word.capitalize()):
            ids = self.lm.tokenizer.encode(form)
            if len(ids) == 1 and ids[0] not in out:
                out.append(ids[0])
        return out

    def p_yes(self, content: str, shared: str = "") -> float:
        """p(yes) as the answer to `content`; `shared`: its leading text that the next calls
        repeat (with prefix_cache, run once into a KV cache)."""
        tok = self.lm.tokenizer
        text = render_chat(tok, [{"role": "user", "content": content}])
        ids = tok.encode(text)
        if self.prefix_cache and shared:  # the whole prompt's tokens before the shared text's end
            end = text.index(content) + len(shared)
            cut = min(len(tok.encode(text[:end])) - 1, len(ids) - 1)  # one short: module doc
            if self._prefix is None or self._prefix.ids != tuple(ids[:cut]):
                self._prefix = prefill(self.lm.model, self.lm.params, ids[:cut], pad_to=PAD_TO)
                self.prefills += 1
            logits = extend(self.lm.model, self.lm.params, self._prefix, [ids[cut:]],
                            pad_to=SUFFIX_PAD_TO, last_only=True)[0]
        else:
            _, logits = generate(self.lm.model, self.lm.params, [ids], max_new_tokens=1,
                                 temperature=0, return_logits=True, pad_to=PAD_TO)
            logits = logits[0][0]
        x = np.asarray(logits, np.float64)
        logp = x - x.max() - np.log(np.exp(x - x.max()).sum())
        odds = np.logaddexp.reduce(logp[self.yes]) - np.logaddexp.reduce(logp[self.no])
        return float(1.0 / (1.0 + np.exp(-odds)))

    def _clip(self, text: str) -> str:
        tok = self.lm.tokenizer
        return tok.decode(tok.encode(text)[: self.max_context_tokens])

    def supported(self, statement: str, context: str) -> float:
        context = self._clip(context)
        return self.p_yes(SUPPORTED.format(context=context, statement=statement),
                          shared=SUPPORTED.split("{statement}")[0].format(context=context))

    def relevant(self, question: str, answer: str) -> float:
        return self.p_yes(RELEVANT.format(question=question, answer=answer))
