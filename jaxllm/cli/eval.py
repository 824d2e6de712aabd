"""Evaluate a trained run: loss, perplexity, token accuracy (ViT: test accuracy; CLIP: zero-shot).

  jaxllm eval --run DIR               every validation token once (exact)
  jaxllm eval --run DIR --batches 20  the run's fixed sampled batches (the training-time estimate)
  jaxllm eval --run DIR               a chat or post-training run: its validation metrics (SFT:
                                      held-out answers' loss; reward, DPO: pair accuracy; PPO,
                                      GRPO: greedy reward on held-out prompts)
  jaxllm eval --run DIR               a ViT run: accuracy on the test split; a CLIP run: zero-shot
                                      test accuracy with held-out caption templates, and
                                      image->text / text->image recall@1 and @5
  jaxllm eval --run DIR [--split validation]
                                      an encoder with a task head (bbc-topics, bbc-tags,
                                      bbc-planted): accuracy and macro-F1 (sequence, token) or
                                      exact match and F1 (span) on the test split of its corpus
                                      (or the one named)
  jaxllm eval --run DIR [--num-beams 4] [--split validation]
                                      an encoder-decoder run: teacher-forced loss on the
                                      validation pairs; exact match, BLEU and ROUGE of the
                                      decoded test split (dates: held-out templates) or of the
                                      split named
  jaxllm eval --model smollm2-135m-instruct --data shakespeare [--max-tokens 16384]
                                      a pretrained decoder's perplexity on a corpus's validation
                                      split, in consecutive windows of --window tokens
  jaxllm eval --run DIR --max-tokens 16385 [--window 512] [--data CORPUS]
                                      a decoder run scored the same way, on its own corpus
                                      unless --data is given (the default for a run made from a
                                      pretrained model: jaxllm quantize --model, --init-from NAME)
"""

from __future__ import annotations

import argparse

from jaxllm.cli import cluster
from jaxllm.cli.progress import on_terminal, status


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory (from jaxllm train)")
    src.add_argument("--model", help="pretrained decoder name or exported directory")
    p.add_argument("--data", help="--model: corpus (default shakespeare); --run with "
                                  "--max-tokens/--window: instead of the run's own")
    p.add_argument("--max-tokens", type=int, help="score only the first N tokens of the "
                                                  "validation text, in windows")
    p.add_argument("--window", type=int, help="tokens per window (default 512, at most the "
                                              "model's context)")
    p.add_argument("--batches", type=int, help="sampled batches instead of the whole split")
    p.add_argument("--step", type=int, help="checkpoint step to load (default: the latest)")
    p.add_argument("--num-beams", type=int, default=1,
                   help="encoder-decoder: decode with beam search (1: greedy)")
    p.add_argument("--examples", type=int, help="encoder-decoder: decode only the first N "
                                                "pairs of the split")
    p.add_argument("--split", choices=("validation", "test"),
                   help="task-head and encoder-decoder runs: the split scored (default test)")
    p.add_argument("--retrieval", type=int, default=1000,
                   help="CLIP: test images (and captions) in the retrieval benchmark")
    cluster.add_arguments(p)


def run(args) -> int:
    from jaxllm.data import build_data, eval_batches, sequential_batches
    from jaxllm.errors import DataError
    from jaxllm.train import evaluate, load_run, make_eval_step
    from jaxllm.train.objective import model_and_objective

    if args.model:
        if args.num_beams != 1 or args.examples is not None:
            raise DataError("--num-beams/--examples decode an encoder-decoder run's pairs; a "
                            "pretrained model is scored by perplexity: drop them")
        return _run_pretrained(args)
    loaded = load_run(args.run, step=args.step)
    cfg = loaded.config
    if args.split and not (cfg.model.head or cfg.model.kind == "seq2seq"):
        raise DataError(f"--split {args.split}: only task-head and encoder-decoder runs are "
                        f"scored on a chosen split; drop --split")
    if (args.num_beams != 1 or args.examples is not None) and cfg.model.kind != "seq2seq":
        raise DataError(f"--num-beams/--examples decode an encoder-decoder run's pairs; "
                        f"{args.run} holds a {cfg.model.kind} (model.kind): drop them")
    if cfg.model.kind in ("vit", "clip"):
        return _run_vision(args, loaded)
    if cfg.model.head:
        from jaxllm.train.task_inputs import evaluate_task
        r = evaluate_task(loaded, args.split or "test")
        where = f"{loaded.run.path} step {loaded.step}, {cfg.data.corpus} {r['split']} split"
        if cfg.model.head == "span":
            print(f"{where} ({r['texts']:,} questions): exact match {r['exact_match']:.4f}, "
                  f"F1 {r['f1']:.4f}")
            return 0
        what = "texts" if cfg.model.head == "sequence" else \
            f"texts, {r['labelled']:,} tagged tokens"
        print(f"{where} ({r['texts']:,} {what}, {len(r['classes'])} classes): accuracy "
              f"{r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f}")
        return 0
    if cfg.model.kind == "seq2seq":
        return _run_seq2seq(args, loaded)
    from jaxllm.train.align_inputs import data_file
    if cfg.train.objective != "lm" or data_file(cfg.data.corpus):  # chat / post-training
        from jaxllm.train.loop import evaluate_run
        m = evaluate_run(loaded)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if k != "tokens")
        print(f"{loaded.run.path} step {loaded.step} ({cfg.train.objective}, held-out "
              f"{cfg.data.validation or cfg.data.corpus}): {shown}")
        return 0
    from jaxllm.train.params import pretrained_name
    # A run from a pretrained model (jaxllm quantize --model, train --init-from NAME) is scored
    # in windows by default: its context (8192 for SmolLM2) is too long for whole-split batches.
    from_pretrained = args.batches is None and pretrained_name(cfg.train.init_from)
    if (args.max_tokens is not None or args.window is not None or args.data is not None
            or from_pretrained):
        if cfg.model.kind != "decoder":
            raise DataError("--max-tokens/--window/--data score a decoder run in windows; "
                            "drop them for an encoder run")
        from jaxllm.pretrained import PretrainedDecoder
        lm = PretrainedDecoder(cfg.model, loaded.params, loaded.tokenizer, str(loaded.run.path))
        dc = cfg.data  # the run's split of its corpus (defaults for another --data)
        split = (dc.split, dc.val_fraction, dc.text_key) if args.data in (None, dc.corpus) else ()
        return _windowed(args, lm, args.data or dc.corpus, f"{loaded.run.path} step {loaded.step}",
                         split)
    dc, t = cfg.data, cfg.train
    data = build_data(dc.corpus, dc.tokenizer, dc.split, dc.val_fraction, dc.text_key,
                      loaded.tokenizer)
    batch = t.batch_size // cfg.optim.grad_accum
    if args.batches is not None:
        if args.batches < 1:
            raise DataError(f"--batches={args.batches}: must be at least 1")
        batches = eval_batches(data.validation, args.batches, batch, cfg.model.max_len,
                               t.seed + 1, dc.sampling, data.separator)
        what = f"{args.batches} sampled batches"
    else:
        batches = sequential_batches(data.validation, max(batch, 32), cfg.model.max_len,
                                     data.separator)
        what = "the whole validation split"
    loss_fn = model_and_objective(cfg, loaded.tokenizer.vocab_size)[1]
    eval_step = make_eval_step(loss_fn)
    m = evaluate(eval_step, loaded.params, batches, progress=on_terminal())
    print(f"{loaded.run.path} step {loaded.step}, {what} ({m['tokens']:,.0f} tokens): "
          f"loss {m['loss']:.4f}, perplexity {m['perplexity']:.3f}, accuracy {m['accuracy']:.4f}")
    return 0


def _run_seq2seq(args, loaded) -> int:
    from jaxllm.data import fixed_rows
    from jaxllm.data.pairs import encode_pairs, load_pairs, target_length
    from jaxllm.errors import DataError
    from jaxllm.infer.seq2seq import evaluate_pairs
    from jaxllm.objectives.seq2seq import seq2seq_ids
    from jaxllm.train import evaluate, make_eval_step
    from jaxllm.train.objective import model_and_objective

    cfg, tok = loaded.config, loaded.tokenizer
    if args.examples is not None and args.examples < 1:
        raise DataError(f"--examples={args.examples}: must be at least 1")
    splits = load_pairs(cfg.data.corpus)
    width = target_length(cfg)
    rows = encode_pairs(tok, splits.validation, cfg.model.max_len, seq2seq_ids(tok.vocab_size)[1],
                        width)
    batch = cfg.train.batch_size // cfg.optim.grad_accum
    loss_fn = model_and_objective(cfg, tok.vocab_size)[1]
    m = evaluate(make_eval_step(loss_fn), loaded.params, fixed_rows(rows, 1 << 30, batch))
    print(f"{loaded.run.path} step {loaded.step}, {len(splits.validation)} validation pairs: "
          f"loss {m['loss']:.4f}, perplexity {m['perplexity']:.3f}, token accuracy "
          f"{m['accuracy']:.4f}")
    split = args.split or "test"
    pairs = getattr(splits, split)[:args.examples]
    scores, _ = evaluate_pairs(loaded.model, loaded.params, tok, pairs, num_beams=args.num_beams,
                               max_new_tokens=width)
    how = "greedy" if args.num_beams == 1 else f"beam search, {args.num_beams} beams"
    print(f"{len(pairs)} {split} pairs ({how}): exact match {scores['exact_match']:.4f}, BLEU "
          f"{scores['bleu']:.2f}, ROUGE-1/2/L {scores['rouge1']:.4f} / {scores['rouge2']:.4f} "
          f"/ {scores['rougeL']:.4f}")
    return 0


def _run_pretrained(args) -> int:
    from jaxllm import pretrained
    from jaxllm.errors import DataError

    status("eval", f"loading {args.model}")
    m = pretrained.load(args.model)
    if m.config.kind != "decoder" or m.tokenizer is None:
        raise DataError(f"--model {args.model}: eval scores decoders with a tokenizer, such as "
                        f"smollm2-135m-instruct")
    return _windowed(args, m, args.data or "shakespeare", args.model)


def _windowed(args, m, corpus: str, label: str, split: tuple = ()) -> int:
    """Print the perplexity of decoder m (a PretrainedDecoder) on a corpus's validation text."""
    window = 512 if args.window is None else args.window
    r = m.corpus_perplexity(corpus, max_tokens=args.max_tokens, window=window, split=split,
                            progress=on_terminal())
    print(f"{label} on the {corpus} validation split ({r['tokens']:,.0f} tokens, windows "
          f"of {min(window, m.config.max_len)}): loss {r['loss']:.4f}, perplexity "
          f"{r['perplexity']:.3f}")
    return 0


def _run_vision(args, loaded) -> int:
    from jaxllm.data.images import load_images
    from jaxllm.errors import DataError
    from jaxllm.infer import vision

    cfg = loaded.config
    test = load_images(cfg.data.corpus).test
    where = f"{loaded.run.path} step {loaded.step}, {cfg.data.corpus} test split"
    if cfg.model.kind == "vit":
        acc = vision.accuracy(loaded.model, loaded.params, test)
        print(f"{where} ({len(test.labels):,} images): accuracy {acc:.4f}")
        return 0
    if args.retrieval < 2:
        raise DataError(f"--retrieval={args.retrieval}: must be at least 2")
    r = vision.evaluate_clip(loaded.model, loaded.params, loaded.tokenizer, cfg.model.max_len,
                             test, retrieval=args.retrieval)
    print(f"{where} ({r['images']:,} images): zero-shot accuracy {r['zero_shot_heldout']:.4f} "
          f"with held-out templates ({r['zero_shot_train_templates']:.4f} with the training ones)")
    for t, acc in r["per_heldout_template"].items():
        print(f"  held-out template {t!r}: {acc:.4f}")
    print(f"retrieval over {r['retrieval_items']:,} images and held-out captions (a caption of "
          f"the same digit counts): image->text R@1 {r['image_to_text_r1']:.4f} R@5 "
          f"{r['image_to_text_r5']:.4f}; text->image R@1 {r['text_to_image_r1']:.4f} R@5 "
          f"{r['text_to_image_r5']:.4f}")
    return 0
