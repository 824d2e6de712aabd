"""Model judges for jaxllm.metrics.rag: a yes/no question to the chat model, read as p(yes).

    judge = Judge(lm)
    faithfulness(answer, sources, judge.supported)     # per answer sentence
    relevancy(question, answer, judge.relevant)

p(yes) = sigmoid(log p(yes) - log p(no)) of the first answer token, each side summed over the
spellings of yes / no that are single tokens of the vocabulary ("yes", "Yes", " yes", " Yes"),
that is p(yes) / (p(yes) + p(no)) under the model's softmax. Prompts are left-padded to a
multiple of PAD_TO tokens, so that judging many answers compiles one forward per length bucket.
"""

from __future__ import annotations

import numpy as np

from jaxllm.errors import ConfigError
from jaxllm.infer import generate
from jaxllm.rag.prompt import render_chat

SUPPORTED = ("Is the statement supported by the context? Answer yes or no.\n\n"
             "Context: {context}\n\nStatement: {statement}")
PAD_TO = 64
RELEVANT = ("Does the answer address the question? Answer yes or no.\n\n"
            "Question: {question}\n\nAnswer: {answer}")


class Judge:
    def __init__(self, lm, max_context_tokens: int = 1024):
        self.lm, self.max_context_tokens = lm, max_context_tokens
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

    def p_yes(self, content: str) -> float:
        tok = self.lm.tokenizer
        ids = tok.encode(render_chat(tok, [{"role": "user", "content": content}]))
        _, logits = generate(self.lm.model, self.lm.params, [ids], max_new_tokens=1,
                             temperature=0, return_logits=True, pad_to=PAD_TO)
        x = np.asarray(logits[0][0], np.float64)
        logp = x - x.max() - np.log(np.exp(x - x.max()).sum())
        odds = np.logaddexp.reduce(logp[self.yes]) - np.logaddexp.reduce(logp[self.no])
        return float(1.0 / (1.0 + np.exp(-odds)))

    def _clip(self, text: str) -> str:
        tok = self.lm.tokenizer
        return tok.decode(tok.encode(text)[: self.max_context_tokens])

    def supported(self, statement: str, context: str) -> float:
        return self.p_yes(SUPPORTED.format(context=self._clip(context), statement=statement))

    def relevant(self, question: str, answer: str) -> float:
        return self.p_yes(RELEVANT.format(question=question, answer=answer))
