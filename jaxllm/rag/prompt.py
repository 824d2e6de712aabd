"""Prompts: numbered sources in the model's chat template, and text generation from messages.

    messages = sources_messages("Who won?", results)   # system + user message, sources [1]..[n]
    text = render_chat(lm.tokenizer, messages)         # ChatML for SmolLM2; a plain transcript
                                                       # for tokenizers without a template
    reply = complete(lm, messages, max_new_tokens=64)  # text, log-probs, entropies
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from jaxllm.errors import DataError
from jaxllm.infer import generate

ABSTAIN = "I don't know from these sources."
PAD_TO = 128  # prompts are padded to a multiple of this: one compiled generate per bucket
SYSTEM = ("Answer the question using only the numbered sources below. Cite the sources you use "
          "as [1], [2]. If the sources do not contain the answer, reply exactly: " + ABSTAIN)


def sources_messages(question: str, results, system: str = SYSTEM) -> list[dict]:
    """A system message with the instructions and a user message with the numbered sources
    (title first when a source has one) and the question."""
    lines = []
    for n, r in enumerate(results, 1):
        title = r.metadata.get("title")
        body = " ".join(r.text.split())
        lines.append(f"[{n}] {title}: {body}" if title else f"[{n}] {body}")
    sources = "\n".join(lines) if lines else "(no sources)"
    return [{"role": "system", "content": system},
            {"role": "user", "content": f"Sources:\n{sources}\n\nQuestion: {question}"}]


def render_chat(tokenizer, messages: list[dict]) -> str:
    """The prompt text: the tokenizer's chat template (with the assistant's turn opened), or,
    for a tokenizer without one (a byte or character tokenizer), a plain transcript."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(turns + ["Assistant:"])


def cited(text: str, n_sources: int) -> list[int]:
    """The source numbers [k] an answer cites, in order of first citation, 1 <= k <= n."""
    out = []
    for m in re.finditer(r"\[(\d+)\]", text):
        k = int(m.group(1))
        if 1 <= k <= n_sources and k not in out:
            out.append(k)
    return out


@dataclass
class Reply:
    text: str
    ids: list[int]
    log_probs: np.ndarray  # per generated token, under the model's distribution
    entropies: np.ndarray
    first_token_s: float  # seconds from the call to the first token (prefill + first step)
    total_s: float


def complete(lm, messages, *, max_new_tokens: int = 128, temperature: float = 0.0,
             seed: int = 0, on_text=None, constraint=None) -> Reply:
    """Generate the assistant's reply to messages (a list of {role, content}, or a str as one
    user message) with a PretrainedDecoder. on_text(piece) receives the reply's text as it
    is produced (pieces that end inside a multi-byte character wait for the rest)."""
    import time

    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    ids = lm.tokenizer.encode(render_chat(lm.tokenizer, messages))
    if len(ids) + 1 > lm.config.max_len:
        raise DataError(f"the prompt has {len(ids)} tokens but the model's context is "
                        f"{lm.config.max_len}; shorten the question or use fewer sources")
    max_new_tokens = min(max_new_tokens, lm.config.max_len - len(ids))
    stops = set(lm.end_tokens())
    new, shown, stamps = [], [0], []
    start = time.perf_counter()

    def on_token(step, tokens):
        stamps.append(time.perf_counter())
        tok = int(tokens[0])
        if tok in stops or (new and new[-1] in stops):
            new.append(tok)
            return
        new.append(tok)
        if on_text is not None:
            text = lm.tokenizer.decode(new)
            if not text.endswith("\ufffd"):
                on_text(text[shown[0]:])
                shown[0] = len(text)

    out, log_probs, entropies = generate(
        lm.model, lm.params, [ids], max_new_tokens=max_new_tokens, temperature=temperature,
        seed=seed, stop_tokens=tuple(sorted(stops)), return_scores=True, on_token=on_token,
        constraint=constraint, pad_to=PAD_TO)
    total = time.perf_counter() - start
    text = lm.tokenizer.decode(out[0])
    if on_text is not None and len(text) > shown[0]:
        on_text(text[shown[0]:])
    return Reply(text.strip(), out[0], log_probs[0], entropies[0],
                 (stamps[0] - start) if stamps else total, total)
