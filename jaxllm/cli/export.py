"""Export a trained run or a pretrained model as Hugging Face-layout safetensors, or a LoRA or
quantized run as a plain float run.

  jaxllm export --run runs/shakespeare-char-... --format safetensors --out exported/
  jaxllm export --model smollm2-135m-instruct --format safetensors --out smollm2-hf/
  jaxllm export --run runs/lora --format run --out runs/merged    (LoRA merged: a plain run)

safetensors writes config.json and model.safetensors (float32) in the layout of the
transformers class that computes the same function, plus the run's tokenizer.json:
  decoders        LlamaForCausalLM (rope, rmsnorm, swiglu) or GPT2LMHeadModel
  encoders        BertModel / BertForPreTraining; model.head=token BertForTokenClassification
                  (num_labels, id2label, label2id: bbc-tags' O, NAME, NUMBER), model.head=span
                  BertForQuestionAnswering (bbc-planted)
  encoder-decoder BlenderbotForConditionalGeneration (pre-norm, learned positions:
                  dates-seq2seq, bbc-headlines), PegasusForConditionalGeneration (pre-norm,
                  sinusoidal), MarianMTModel (post-norm, sinusoidal); with a
                  generation_config.json holding the run's start and end token ids and the
                  ids greedy decoding never emits, so transformers' generate decodes as
                  `jaxllm generate` does
model.head=sequence (bbc-topics) has no transformers class (BertForSequenceClassification
reads BERT's tanh pooler, jaxllm's head the pooled hidden states): it is written for
sentence-transformers instead (io/sbert.py): a BertModel directory with modules.json,
1_Pooling/ (mean pooling, or the first token) and 2_Dense/ (the head's linear layer, identity
activation), so `SentenceTransformer(DIR).encode(texts)` returns the class logits (their names:
config.json's id2label).
Refused in one line (export those with --format run): encoder-decoders no transformers class
computes (io/hf.py lists them). ViT and CLIP have no Hugging Face layout here. `jaxllm.pretrained.load(DIR)` and `--model DIR` read a decoder or encoder directory
back; `jaxllm.io.hf.load_hf(DIR)` reads every layout above (an encoder-decoder and the
sentence-transformers directory too).
A LoRA run is exported with its factors merged into the weights, a quantized run dequantized to
float32. `--format run` writes the merged, dequantized parameters as a new run directory that
eval, generate, export and `train --init-from` take like any float run.
"""

from __future__ import annotations

import argparse

from jaxllm.cli.progress import status


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory (from jaxllm train)")
    src.add_argument("--model", help="a pretrained model name or directory")
    p.add_argument("--format", default="safetensors", choices=["safetensors", "run"],
                   help="safetensors (Hugging Face layout, default) or run (a plain jaxllm run: "
                        "LoRA merged, weights dequantized)")
    p.add_argument("--out", required=True, help="output directory (new or empty)")
    p.add_argument("--step", type=int, help="checkpoint step of --run (default: the latest)")


def run(args) -> int:
    import jax

    from jaxllm.errors import ConfigError
    from jaxllm.files import check_new_dir
    from jaxllm.io.hf import architecture, save_hf, seq2seq_generation
    from jaxllm.io.sbert import body_config, save_sbert

    out = check_new_dir(args.out)  # never into a run (its config.json) or a user's files
    if args.model:
        if args.format == "run":
            raise ConfigError("--format run writes a run directory from a run; pass --run DIR "
                              "(a pretrained model exports as --format safetensors)")
        from jaxllm import pretrained

        status("export", f"loading {args.model}")
        m = pretrained.load(args.model)
        extra = {}
        if args.model in pretrained.REGISTRY:
            extra = {"jaxllm_tokenizer": args.model}
            if m.config.kind == "encoder":
                extra["jaxllm_max_seq_length"] = m.max_seq_length
        save_hf(out, m.config, jax.device_get(m.params), heads=False, extra_config=extra)
        print(f"exported {args.model} to {out} (config.json, model.safetensors)")
        return 0

    from jaxllm.data.pairs import target_length
    from jaxllm.objectives.seq2seq import seq2seq_ids
    from jaxllm.train import RunDir, load_run
    from jaxllm.train.run import merge_run
    from jaxllm.train.task_inputs import run_classes
    from jaxllm.transforms import lora

    cfg = RunDir(args.run).load_config()
    sequence_head = cfg.model.kind == "encoder" and cfg.model.head == "sequence"
    if args.format == "safetensors":  # a model without a layout: refused before any loading
        (body_config if sequence_head else architecture)(cfg.model)
    loaded = load_run(args.run, step=args.step)
    what = f"{loaded.run.path} step {loaded.step}"
    changes = (["LoRA factors merged into the weights"] if cfg.train.lora else []) + (
        [f"{cfg.model.weights.split(',')[0].split('=')[-1]} weights dequantized to float32"]
        if cfg.model.weights else [])
    said = f" ({'; '.join(changes)})" if changes else ""
    if args.format == "run":
        merge_run(loaded, out)
        print(f"exported {what} to {out} as a plain run{said}; evaluate with: jaxllm eval --run "
              f"{out}")
        return 0
    params = lora.merge(loaded.params, float_export=True) if changes else loaded.params
    m = loaded.config.model  # the vocabulary size the run was built with
    extra, generation = {}, None
    if m.kind == "seq2seq":  # the run's start and end ids (the two above the tokenizer's) and
        # target length, as `jaxllm generate` decodes
        start, end = seq2seq_ids(loaded.tokenizer.vocab_size)
        extra, generation = seq2seq_generation(start, end, m.vocab_size,
                                               target_length(loaded.config))
    if sequence_head:  # sentence-transformers: BertModel + mean pooling + Dense (io/sbert.py)
        save_sbert(out, m, jax.device_get(params), labels=run_classes(loaded))
        files = "sentence-transformers: modules.json, config.json, model.safetensors, " \
                "1_Pooling/, 2_Dense/, "
    else:
        save_hf(out, m, jax.device_get(params), heads=m.kind == "encoder", extra_config=extra,
                labels=run_classes(loaded), generation=generation)
        files = "config.json, model.safetensors, " + (
            "generation_config.json, " if generation else "")
    loaded.tokenizer.save(out / "tokenizer.json")
    print(f"exported {what} to {out} ({files}tokenizer.json){said}")
    return 0
