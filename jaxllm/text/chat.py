"""Chat templates: a list of messages -> the prompt string a chat model was trained on.

Models store their template as Jinja source (GGUF `tokenizer.chat_template`, HF
tokenizer_config.json). jaxllm renders the ChatML family natively instead of evaluating Jinja:
it recognises ChatML by its `<|im_start|>` markers and reads the default system prompt the
template inserts when the conversation has none (SmolLM2: "You are a helpful AI assistant named
SmolLM, trained by Hugging Face"). Tests hold the result equal to jinja2's rendering.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from jaxllm.errors import DataError

_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system(?:\n|\\n)(.*?)<\|im_end\|>", re.DOTALL)


def apply_chat_template(template: str | None, messages: Sequence[dict],
                        add_generation_prompt: bool = True) -> str:
    if not template:
        raise DataError("this tokenizer has no chat template; load a chat model's tokenizer "
                        "(for example 'smollm2-135m-instruct')")
    if "<|im_start|>" not in template or "<|im_end|>" not in template:
        raise DataError("the tokenizer's chat template is not ChatML (<|im_start|>role ... "
                        "<|im_end|>); jaxllm renders only ChatML templates")
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise DataError(f"message {i} must be a dict with str 'role' and 'content', got {m!r}")
    match = _DEFAULT_SYSTEM.search(template)
    out = []
    if messages and messages[0]["role"] != "system" and match is not None:
        out.append(f"<|im_start|>system\n{match.group(1)}<|im_end|>\n")
    for m in messages:
        out.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


# A ChatML template with no default system prompt: what tokenizers without a chat template of
# their own (char, byte, a trained BPE) are rendered with, so that any run can train on chats.
PLAIN_CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
ANSWER_END = "<|im_end|>"


def chat_segments(template: str | None, messages: Sequence[dict]) -> list[tuple[str, bool]]:
    """A whole conversation rendered as consecutive (text, is_answer) pieces: each assistant
    message's content and its closing <|im_end|> is an answer (what supervised fine-tuning
    trains on); everything else (system and user turns, role headers, newlines) is prompt.
    The pieces joined are apply_chat_template(template, messages, add_generation_prompt=False);
    a template of None renders PLAIN_CHATML."""
    template = template or PLAIN_CHATML
    full = apply_chat_template(template, messages, add_generation_prompt=False)
    pieces, done = [], 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(apply_chat_template(template, messages[:i], add_generation_prompt=True))
        end = start + len(m["content"]) + len(ANSWER_END)
        if full[start:end] != m["content"] + ANSWER_END:  # ChatML renders prefixes as prefixes
            raise DataError(f"message {i}: the chat template does not render the assistant "
                            f"turn as <|im_start|>assistant\\n...<|im_end|>")
        pieces += [(full[done:start], False), (full[start:end], True)]
        done = end
    pieces.append((full[done:], False))
    return [(text, answer) for text, answer in pieces if text]
