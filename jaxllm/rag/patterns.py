"""Prompting patterns as small functions over a completer: complete(messages) -> reply text.

    llm = completer(lm, max_new_tokens=64)                      # a PretrainedDecoder, greedy
    zero_shot(llm, "Classify the headline as sport or tech.", "Cup final tonight")
    few_shot(llm, task, examples, x, k=3, select="similar", embed=enc.embed)
    answer, reasoning = chain_of_thought(llm, "What is 17 + 25?")
    chain(llm, [("facts", "List the facts in: {text}"), ("summary", "Summarize: {facts}")],
          text=article)                                        # {"facts": ..., "summary": ...}
    refine(llm, "Write a haiku about rain.", check)             # check(reply) -> None or a hint

Examples are (input, output) pairs given as earlier user/assistant turns. A completer is any
callable, so the patterns compose (a few-shot completer inside a chain) and test without a model.
"""

from __future__ import annotations

import random
import re

import numpy as np

from jaxllm.errors import ConfigError

COT = ("Think step by step. Then give the final answer on a last line that starts with "
       "'Answer:'.")


def completer(lm, **generate):
    """A completer from a PretrainedDecoder (prompt.complete's options: max_new_tokens, ...)."""
    from jaxllm.rag.prompt import complete

    return lambda messages: complete(lm, messages, **generate).text


def _messages(task: str, examples, x: str, suffix: str = "") -> list[dict]:
    msgs = [{"role": "system", "content": task}] if task else []
    for inp, out in examples:
        msgs += [{"role": "user", "content": inp}, {"role": "assistant", "content": out}]
    return msgs + [{"role": "user", "content": x + (f"\n\n{suffix}" if suffix else "")}]


def zero_shot(complete, task: str, x: str) -> str:
    return complete(_messages(task, [], x))


def one_shot(complete, task: str, example: tuple[str, str], x: str) -> str:
    return complete(_messages(task, [example], x))


def select_examples(examples, x: str, k: int, select: str = "random", seed: int = 0,
                    embed=None) -> list:
    """k examples: at random (seeded), or the k whose inputs are most similar to x by the
    cosine of embed(texts) (for example a MiniLM encoder's .embed), most similar last (nearest
    the question)."""
    examples = list(examples)
    if not 0 < k <= len(examples):
        raise ConfigError(f"k={k}: choose between 1 and the {len(examples)} examples given")
    if select == "random":
        return random.Random(seed).sample(examples, k)
    if select == "similar":
        if embed is None:
            raise ConfigError("select='similar' needs embed (a function texts -> vectors)")
        vecs = np.asarray(embed([x] + [inp for inp, _ in examples]), np.float64)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        sims = vecs[1:] @ vecs[0]
        order = np.argsort(-sims, kind="stable")[:k]
        return [examples[i] for i in order[::-1]]
    raise ConfigError(f"select={select!r}: choose random or similar")


def few_shot(complete, task: str, examples, x: str, k: int | None = None,
             select: str = "random", seed: int = 0, embed=None) -> str:
    chosen = list(examples) if k is None else select_examples(examples, x, k, select, seed, embed)
    return complete(_messages(task, chosen, x))


def final_answer(reply: str) -> str:
    """The text after the last 'Answer:' (the whole reply, stripped, if there is none)."""
    found = re.findall(r"answer:\s*(.*)", reply, flags=re.IGNORECASE)
    return (found[-1] if found else reply).strip()


def chain_of_thought(complete, question: str, task: str = "") -> tuple[str, str]:
    """(final answer, the whole reasoning)."""
    reply = complete(_messages(task, [], question, COT))
    return final_answer(reply), reply


def hybrid(complete, task: str, examples, x: str) -> tuple[str, str]:
    """Few-shot with chain-of-thought: examples are (input, reasoning ending in 'Answer: ...')."""
    reply = complete(_messages(task, [(inp, out) for inp, out in examples], x, COT))
    return final_answer(reply), reply


def chain(complete, steps: list[tuple[str, str]], **inputs) -> dict[str, str]:
    """Prompt chaining: each step is (name, template); a template names the inputs and earlier
    steps' outputs as {name}. Returns every step's output by name."""
    values = dict(inputs)
    for name, template in steps:
        try:
            prompt = template.format(**values)
        except KeyError as e:
            raise ConfigError(f"step {name!r} uses {{{e.args[0]}}}, which is neither an input "
                              f"nor an earlier step") from None
        values[name] = complete([{"role": "user", "content": prompt}])
    return {name: values[name] for name, _ in steps}


def refine(complete, prompt: str, check, budget: int = 3) -> tuple[str, list[str]]:
    """Iterative refinement: ask, then while check(reply) returns a complaint (None = passes)
    and the budget of revisions lasts, ask the model to revise against it. Returns the last
    reply and every reply in turn."""
    msgs = [{"role": "user", "content": prompt}]
    history = [complete(msgs)]
    for _ in range(budget):
        problem = check(history[-1])
        if problem is None:
            break
        msgs += [{"role": "assistant", "content": history[-1]},
                 {"role": "user", "content": f"Revise your answer: {problem}"}]
        history.append(complete(msgs))
    return history[-1], history
