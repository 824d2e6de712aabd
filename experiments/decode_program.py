"""A fingerprint of the decode program `generate` compiles on this backend, to check that a
refactoring left it unchanged: run it on the code before and after and compare the digests.

XLA dumps every optimized module while `generate` decodes with two tiny models (GPT-2 style, and
Llama style with 6 query heads over 2 kv heads, whose KV cache grows); the module of its jitted
loop (`_generate`) is the decode program. Its text is normalised (metadata and source locations dropped, argument
names dropped and every %name renumbered in order of appearance) and hashed.

    PYTHONPATH=$BEFORE .venv/bin/python $AFTER/experiments/decode_program.py
    PYTHONPATH=$AFTER .venv/bin/python $AFTER/experiments/decode_program.py

Prints one JSON line: the digest and size of each model's program. Uses only the public API.
"""

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

DUMP = tempfile.mkdtemp(prefix="decode_program_")
# before JAX starts: dump the optimized modules as text
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={DUMP} " \
                          "--xla_dump_hlo_as_text --xla_dump_hlo_pass_re=^$"

from jaxllm.platform import configure_cpu  # noqa: E402

configure_cpu()

import jax  # noqa: E402

from jaxllm import models  # noqa: E402
from jaxllm.config import ModelConfig  # noqa: E402
from jaxllm.infer import generate  # noqa: E402
from jaxllm.models.decoder import Decoder  # noqa: E402

CONFIGS = {
    "gpt": ModelConfig(vocab_size=37, max_len=16, n_layers=2, n_heads=4, d_model=32),
    "llama_gqa": ModelConfig(vocab_size=37, max_len=150, n_layers=2, n_heads=6, n_kv_heads=2,
                             d_model=48, positions="rope", norm="rmsnorm", mlp="swiglu",
                             use_bias=False, tie_embeddings=False),
}
PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3, 5, 8, 9, 7]]


def normalised(text: str) -> str:
    text = re.sub(r", metadata=\{[^}]*\}|,? ?stack_frame_id=\d+", "", text)
    body = text[text.index("\n%") if "\n%" in text else 0:]  # drop the file/function tables
    body = re.sub(r"(?m)^(ENTRY .*)$", lambda m: re.sub(r"[\w.\-]+: ", "", m.group(1)), body)
    names: dict[str, str] = {}
    return re.sub(r"%[\w.\-]+", lambda m: names.setdefault(m.group(), f"%v{len(names)}"), body)


def main():
    out = {"backend": jax.default_backend()}
    for name, cfg in CONFIGS.items():
        before = set(Path(DUMP).glob("*jit__generate.*after_optimizations.txt"))
        params, _ = models.init_params(cfg, jax.random.PRNGKey(0))
        generate(Decoder(cfg), params, PROMPTS, max_new_tokens=70 if cfg.max_len > 16 else 6,
                 temperature=0)
        (new,) = set(Path(DUMP).glob("*jit__generate.*after_optimizations.txt")) - before
        program = normalised(new.read_text())
        out[name] = {"sha256": hashlib.sha256(program.encode()).hexdigest()[:16],
                     "lines": program.count("\n")}
    shutil.rmtree(DUMP)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
