"""Generate text from a trained run.

  jaxllm generate --run DIR --prompt "ROMEO:" --max-new-tokens 300 --temperature 0.8 --top-k 40
  jaxllm generate --run DIR --prompt "To be" --temperature 0        (greedy)
  jaxllm generate --model smollm2-135m-instruct --chat "What is the capital of France?"
  jaxllm generate --model smollm2-135m-instruct --prompt "Once upon a time" --temperature 0

  jaxllm generate --run runs/sft --chat "What is 37 + 48? Answer with the number only."
  jaxllm generate --model smollm2-135m-instruct --rope-scaling yarn --rope-factor 4 --prompt ...

--rope-scaling linear|ntk|yarn with --rope-factor F reads F times the model's context (RoPE
models; jaxllm/models/rope.py), with the same weights.
  jaxllm generate --run DIR --prompt "To be" --num-beams 4       (beam search)
  jaxllm generate --run runs/dates --prompt "March 3rd, 1997"    (an encoder-decoder run: the
                                                                  prompt is the source)
  jaxllm generate --run runs/bbc-topics --prompt "Shares rose."  (a sequence-head run: prints
                     the classes of the prompt, likeliest first, with their probabilities)

--model takes a pretrained model name (jaxllm.pretrained) or an exported directory; --chat wraps
the message in the model's (or run's) chat template and prints only the answer.

Samples are printed one after another, separated by a line of dashes.
"""

from __future__ import annotations

import argparse
import dataclasses

from jaxllm.cli import cluster
from jaxllm.cli.progress import status


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory (from jaxllm train)")
    src.add_argument("--model", help="pretrained model name or exported directory")
    text = p.add_mutually_exclusive_group(required=True)
    text.add_argument("--prompt", help="text to continue")
    text.add_argument("--chat", metavar="MESSAGE", help="a user message for a chat model")
    p.add_argument("--max-new-tokens", type=int,
                   help="default 200 (an encoder-decoder: its data.target_len or model.max_len)")
    p.add_argument("--temperature", type=float,
                   help="0 is greedy (default: 1.0 for --prompt; 0 for --chat, as "
                        "jaxllm.pretrained's chat())")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest (0: off)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop a sample at this text, which must be one token (repeatable)")
    p.add_argument("--num-beams", type=int, default=1,
                   help="beam search with this many beams (1: sampling, or greedy at "
                        "--temperature 0)")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam search ranks sum(log p) / length ** this (Hugging Face's)")
    p.add_argument("--no-early-stopping", action="store_true",
                   help="beam search: go on past num_beams finished hypotheses while a "
                        "running one could still win (Hugging Face's early_stopping=False)")
    p.add_argument("--step", type=int, help="checkpoint step to load (default: the latest)")
    p.add_argument("--no-cache", action="store_true", help="recompute the context every token")
    p.add_argument("--rope-scaling", choices=("linear", "ntk", "yarn"),
                   help="extend a RoPE model's context by --rope-factor (default: as trained)")
    p.add_argument("--rope-factor", type=float,
                   help="new context / trained context with --rope-scaling (default 2)")
    cluster.add_arguments(p)


def run(args) -> int:
    from jaxllm.data.chat import encode_prompt
    from jaxllm.errors import DataError
    from jaxllm.infer import generate
    from jaxllm.text.chat import ANSWER_END
    from jaxllm.train import load_run

    if args.temperature is None:  # a chat answer is greedy, a continuation sampled
        args.temperature = 0.0 if args.chat else 1.0
    if args.num_samples < 1:
        raise DataError(f"--num-samples={args.num_samples}: must be at least 1")
    if args.rope_factor is not None and not args.rope_scaling:
        raise DataError(f"--rope-factor {args.rope_factor} scales RoPE only with --rope-scaling "
                        f"linear, ntk or yarn; add one or drop --rope-factor")
    if args.rope_scaling and args.rope_factor is None:
        args.rope_factor = 2.0
    if args.rope_scaling:
        from jaxllm.models.rope import check_factor

        check_factor(args.rope_factor)  # before a run or model is read
    if args.num_beams < 1:  # before a run or model is read, whichever the source
        raise DataError(f"--num-beams {args.num_beams}: must be at least 1 (1 is no beam "
                        f"search: sampling, or greedy at --temperature 0)")
    if args.num_beams > 1 and args.num_samples > 1:
        raise DataError(f"--num-samples={args.num_samples}: beam search gives one answer; "
                        f"drop --num-samples or --num-beams")
    beams = {"num_beams": args.num_beams, "length_penalty": args.length_penalty,
             "early_stopping": not args.no_early_stopping}
    if args.model:
        return _run_pretrained(args, beams)
    loaded = load_run(args.run, step=args.step)
    if args.rope_scaling:
        from jaxllm import models
        from jaxllm.models.rope import extend_context

        cfg = extend_context(loaded.config.model, args.rope_scaling, args.rope_factor)
        loaded = dataclasses.replace(loaded, config=dataclasses.replace(loaded.config, model=cfg),
                                     model=models.build(cfg))
    if loaded.config.model.kind == "seq2seq":
        return _run_seq2seq(args, loaded, beams)
    if loaded.config.model.head == "sequence":
        return _run_classifier(args, loaded)
    if args.max_new_tokens is None:
        args.max_new_tokens = 200
    if loaded.config.model.kind != "decoder":
        raise DataError(f"{args.run} holds an encoder (model.kind={loaded.config.model.kind}); "
                        f"generate needs a decoder run")
    tok = loaded.tokenizer
    stops = []
    if args.chat:  # the run's chat template (plain ChatML without one), stop at <|im_end|>
        prompt = encode_prompt(tok, args.chat)
        end = tok.encode(ANSWER_END)
        stops += end if len(end) == 1 else []
    else:
        prompt = tok.encode(args.prompt)
    for text in args.stop:
        ids = tok.encode(text)
        if len(ids) != 1:
            raise DataError(f"--stop {text!r} is {len(ids)} tokens for this tokenizer; it must be "
                            f"exactly one")
        stops += ids
    outs = generate(loaded.model, loaded.params, [prompt] * args.num_samples,
                    max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                    top_k=args.top_k, top_p=args.top_p, stop_tokens=stops, seed=args.seed,
                    use_cache=not args.no_cache, vocab_size=tok.vocab_size, **beams)
    for i, out in enumerate(outs):
        if i:
            print("-" * 40)
        print(tok.decode(out).split(ANSWER_END)[0] if args.chat else args.prompt + tok.decode(out))
    return 0


def _run_seq2seq(args, loaded, beams) -> int:
    """An encoder-decoder run: the prompt is the source; prints the target."""
    from jaxllm.data.pairs import target_length
    from jaxllm.errors import DataError
    from jaxllm.infer.seq2seq import seq2seq_generate
    from jaxllm.objectives.seq2seq import seq2seq_ids

    if args.chat or args.stop:
        raise DataError(f"{args.run} holds an encoder-decoder: give the source as --prompt "
                        f"(it has no chat template; the target ends at its end token)")
    tok = loaded.tokenizer
    start, end = seq2seq_ids(tok.vocab_size)
    outs = seq2seq_generate(
        loaded.model, loaded.params, [tok.encode(args.prompt)] * args.num_samples,
        start_id=start, end_id=end, max_new_tokens=args.max_new_tokens or
        target_length(loaded.config), temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, seed=args.seed, vocab_size=end + 1, **beams)
    for i, out in enumerate(outs):
        if i:
            print("-" * 40)
        print(tok.decode(out))
    return 0


def _run_classifier(args, loaded) -> int:
    """A sequence-head run (bbc-topics, or one on a user's labelled texts): the prompt is a text
    to classify, cut to the run's rows (model.max_len tokens, as it was trained and evaluated
    on); prints every class (by the names saved with the run: task_inputs.run_classes) with its
    probability, likeliest first. The decoding options do not apply."""
    import numpy as np

    from jaxllm.data.labeled import encode_texts
    from jaxllm.errors import DataError
    from jaxllm.train.task_inputs import predict, run_classes

    if args.chat or args.stop or args.num_beams > 1 or args.num_samples > 1:
        raise DataError(f"{args.run} holds a classifier (model.head=sequence): give the text "
                        f"as --prompt, without --chat, --stop, --num-beams or --num-samples")
    rows = encode_texts(loaded.tokenizer, [args.prompt], loaded.config.model.max_len)
    logits = np.asarray(predict(loaded.model, loaded.params, rows, batch_size=1)["logits"][0],
                        np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    classes = run_classes(loaded)
    print(", ".join(f"{classes[i]} {p[i]:.4f}" for i in np.argsort(-p, kind="stable")))
    return 0


def _run_pretrained(args, beams) -> int:
    from jaxllm import pretrained
    from jaxllm.errors import DataError

    if args.max_new_tokens is None:
        args.max_new_tokens = 200
    status("generate", f"loading {args.model}")
    m = pretrained.load(args.model)
    if args.rope_scaling:
        m = m.with_context(args.rope_scaling, args.rope_factor)
    if m.config.kind != "decoder":
        raise DataError(f"--model {args.model} is an encoder; generate needs a decoder such as "
                        f"smollm2-135m-instruct")
    if m.tokenizer is None:
        raise DataError(f"--model {args.model} has no tokenizer to encode the prompt with")
    kw = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
              top_p=args.top_p, use_cache=not args.no_cache, **beams)
    if args.stop:
        kw["stop_tokens"] = [m.tokenizer.token_to_id(t) for t in args.stop]
        if None in kw["stop_tokens"]:
            raise DataError(f"--stop {args.stop}: each must be one token of the vocabulary")
    for i in range(args.num_samples):
        if i:
            print("-" * 40)
        if args.chat:
            print(m.chat(args.chat, seed=args.seed + i, **kw))
        else:
            print(args.prompt + m.generate(args.prompt, seed=args.seed + i, **kw))
    return 0
