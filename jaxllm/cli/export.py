"""Export a trained run or a pretrained model as Hugging Face-layout safetensors.

  jaxllm export --run runs/shakespeare-char-... --format safetensors --out exported/
  jaxllm export --model smollm2-135m-instruct --format safetensors --out smollm2-hf/

Writes config.json (LlamaForCausalLM, GPT2LMHeadModel or BertModel/BertForPreTraining) and
model.safetensors (float32), plus the run's tokenizer.json; `jaxllm.pretrained.load(DIR)` and
`--model DIR` read the directory back.
"""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory (from jaxllm train)")
    src.add_argument("--model", help="a pretrained model name or directory")
    p.add_argument("--format", default="safetensors", choices=["safetensors"])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--step", type=int, help="checkpoint step of --run (default: the latest)")


def run(args) -> int:
    import jax

    from jaxllm.files import check_new_dir
    from jaxllm.io.hf import save_hf

    out = check_new_dir(args.out)  # never into a run (its config.json) or a user's files
    if args.run:
        from jaxllm.train import load_run

        loaded = load_run(args.run, step=args.step)
        cfg, params = loaded.config.model, loaded.params
        save_hf(out, cfg, jax.device_get(params), heads=cfg.kind == "encoder")
        loaded.tokenizer.save(out / "tokenizer.json")
        what = f"{loaded.run.path} step {loaded.step}"
    else:
        from jaxllm import pretrained

        m = pretrained.load(args.model)
        extra = {}
        if args.model in pretrained.REGISTRY:
            extra = {"jaxllm_tokenizer": args.model}
            if m.config.kind == "encoder":
                extra["jaxllm_max_seq_length"] = m.max_seq_length
        save_hf(out, m.config, jax.device_get(m.params), heads=False, extra_config=extra)
        what = args.model
    print(f"exported {what} to {out} (config.json, model.safetensors)")
    return 0
