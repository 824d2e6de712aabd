"""The encoder-decoder on the dates task (data/pairs.py): held-out templates, greedy vs beam
search, and a decoder-only model of about the same size trained on source + target.

    .venv/bin/python experiments/seq2seq_dates.py [--steps N] [--set KEY=VALUE ...] [--out DIR]
    .venv/bin/python experiments/seq2seq_dates.py --run DIR    (a trained dates-seq2seq run)
        [--decoder-steps N [--converged 0.99] [--eval-every 250] [--eval-pairs 100]]

1. trains the dates-seq2seq preset (with the --set overrides) through jaxllm.train, or reads
   the run in --run;
2. trains a decoder-only model with the same optimizer, batch size and seed on rows
   "source <sep> target </s>" (loss on the target and </s> only, as the encoder-decoder's),
   with n_layers chosen so that its parameter count is the closest to the encoder-decoder's:
   - with --decoder-steps N, first a run to convergence: its learning-rate schedule spans N
     steps, and it stops at the first evaluation (every --eval-every steps: greedy exact match
     on the first --eval-pairs validation pairs, training templates) that reaches --converged,
     else after N steps;
   - then (unless --no-equal-steps) a run of the encoder-decoder's steps and schedule;
   each evaluation is printed with the mean training loss since the one before;
3. decodes the validation split (training templates) and the test split (held-out templates)
   with each model, greedy and beam search with 4 beams, and prints exact match and BLEU
   (jaxllm.metrics.corpus_bleu, sacrebleu's 13a defaults) as a markdown table (row by row, as
   each model is done), the decoder-only runs' evaluations, and JSON (results.json in --out).
Training seconds exclude the evaluations during training.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from preset_runs import add_run_args, preset_run

from jaxllm.platform import configure_cpu


def param_count(params) -> int:
    import jax
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def decoder_rows(tokenizer, pairs, width: int, sep: int, end: int) -> dict:
    """Rows source, sep, target, end right-padded to width + 1 tokens: inputs / targets
    shifted by one, the loss on the target and end tokens."""
    n = len(pairs)
    rows = np.zeros((n, width + 1), np.int32)
    weight = np.zeros((n, width + 1), np.float32)
    for i, (s, t) in enumerate(pairs):
        src, tgt = tokenizer.encode(s), tokenizer.encode(t) + [end]
        ids = (src + [sep] + tgt)[:width + 1]
        rows[i, :len(ids)] = ids
        weight[i, len(src) + 1:len(ids)] = 1.0  # the positions that hold target tokens
    return {"inputs": rows[:, :-1], "targets": rows[:, 1:], "loss_mask": weight[:, 1:]}


def decoder_config(cfg, vocab: int, target_params: int):
    """A decoder of cfg's width over vocab + 2 ids (sep, end), learned positions over twice the
    encoder-decoder's context, with the layer count whose parameter count is the closest to
    target_params: (its ModelConfig, its parameter count)."""
    from jaxllm import models

    base = replace(cfg.model, kind="decoder", vocab_size=vocab + 2, max_len=2 * cfg.model.max_len,
                   positions="learned")
    sizes = {n: param_count(models.abstract_params(replace(base, n_layers=n))[0])
             for n in range(1, 4 * cfg.model.n_layers + 1)}
    n_layers = min(sizes, key=lambda n: abs(sizes[n] - target_params))
    return replace(base, n_layers=n_layers), sizes[n_layers]


def train_decoder(cfg, mcfg, tokenizer, pairs, *, steps: int, schedule_steps: int,
                  eval_every: int = 0, evaluate=None, stop_at: float = 2.0):
    """Train the decoder mcfg with cfg's optimizer (its schedule over schedule_steps), seed and
    batch size for at most `steps` steps on rows "source sep target end" of `pairs`, right-padded
    to the longest row (the loss on the target and end only).

    Every eval_every steps: evaluate(model, params) -> a score, printed with the mean training
    loss since the last evaluation; training stops once the score reaches stop_at.
    Returns (model, its last params, the steps it made, [(step, mean loss, score, training
    seconds so far)], training wall seconds without the evaluations)."""
    import jax

    from jaxllm import models
    from jaxllm.data import RowBatches
    from jaxllm.objectives.causal_lm import causal_lm_loss
    from jaxllm.optim import TrainState, make_optimizer
    from jaxllm.train.step import make_train_step

    V = tokenizer.vocab_size
    width = max(len(tokenizer.encode(s)) + len(tokenizer.encode(t)) + 2 for s, t in pairs) - 1
    model = models.build(mcfg)
    t = cfg.train
    tx = make_optimizer(cfg.optim, schedule_steps)
    step_fn = make_train_step(causal_lm_loss(model), tx, seed=t.seed)
    state = TrainState.create(models.init_params(mcfg, jax.random.PRNGKey(t.seed))[0], tx)
    batches = RowBatches(decoder_rows(tokenizer, pairs, width, V, V + 1), t.batch_size, t.seed)
    curve, losses, eval_s = [], [], 0.0
    start = time.perf_counter()
    for i in range(1, steps + 1):
        state, metrics = step_fn(state, next(batches))
        losses.append(metrics["loss"])
        if eval_every and (i % eval_every == 0 or i == steps):
            loss = float(np.mean([float(x) for x in losses]))  # waits for the step
            tick = time.perf_counter()
            score = evaluate(model, state.params)
            eval_s += time.perf_counter() - tick
            train_s = time.perf_counter() - start - eval_s
            curve.append((i, loss, score, train_s))
            print(f"decoder-only step {i}: train loss {loss:.4f}, score {score:.4f}, "
                  f"{train_s:.0f} s training", flush=True)
            losses = []
            if score >= stop_at:
                break
    float(metrics["loss"])
    return model, state.params, i, curve, time.perf_counter() - start - eval_s


def decoder_outputs(model, params, tokenizer, pairs, num_beams: int) -> list[str]:
    from jaxllm.infer.generate import generate

    V = tokenizer.vocab_size
    out = []
    for i in range(0, len(pairs), 64):
        chunk = pairs[i:i + 64]
        prompts = [tokenizer.encode(s) + [V] for s, _ in chunk]
        ids = generate(model, params, prompts, max_new_tokens=16, temperature=0,
                       stop_tokens=(V + 1,), vocab_size=V + 2, num_beams=num_beams,
                       pad_to=model.cfg.max_len // 2)  # the source's context
        out += [tokenizer.decode([t for t in r if t < V]) for r in ids]
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(p, "runs/seq2seq-dates")
    p.add_argument("--examples", type=int, default=500, help="pairs decoded per split")
    p.add_argument("--decoder-steps", type=int, default=0,
                   help="most steps of the decoder-only run to convergence, also its schedule's "
                        "length (0: no such run)")
    p.add_argument("--eval-every", type=int, default=250,
                   help="steps between the decoder-only runs' evaluations")
    p.add_argument("--eval-pairs", type=int, default=100,
                   help="validation pairs (training templates) each evaluation decodes greedily")
    p.add_argument("--no-equal-steps", action="store_true",
                   help="skip the decoder-only run of the encoder-decoder's steps and schedule")
    p.add_argument("--converged", type=float, default=0.99,
                   help="the exact match of an evaluation at which the long run stops")
    args = p.parse_args(argv)
    configure_cpu()

    from jaxllm.data.pairs import dates_splits
    from jaxllm.infer.seq2seq import evaluate_pairs, score_texts

    loaded, s2s_wall = preset_run("dates-seq2seq", args)
    cfg, tok = loaded.config, loaded.tokenizer
    splits = dates_splits()
    evals = {"validation (training templates)": splits.validation[:args.examples],
             "test (held-out templates)": splits.test[:args.examples]}
    probe = splits.validation[:args.eval_pairs]

    def exact_match(model, params):
        hyps = decoder_outputs(model, params, tok, probe, 1)
        return score_texts(hyps, [t for _, t in probe])["exact_match"]

    s2s_params = param_count(loaded.params)
    mcfg, dec_count = decoder_config(cfg, tok.vocab_size, s2s_params)
    steps = cfg.train.steps
    runs = []  # (most steps = the schedule's length, description, exact match to stop at)
    if args.decoder_steps:
        how = f"schedule of {args.decoder_steps} steps, stopped at exact match >= {args.converged}"
        runs.append((args.decoder_steps, how, args.converged))
    if not args.no_equal_steps:
        runs.append((steps, "same steps and schedule", 2.0))
    out = Path(args.out if runs or not args.run else args.run, "results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    print("| model | params | steps | train s | split | decoding | exact match | BLEU |")
    print("|---|---|---|---|---|---|---|---|", flush=True)

    def report(model_name, n_params, made, wall, decode):
        for split, pairs in evals.items():
            for beams in (1, 4):
                scores = decode(pairs, beams)
                r = {"model": model_name, "params": n_params, "steps": made,
                     "train_s": None if wall is None else round(wall), "split": split,
                     "decoding": "greedy" if beams == 1 else f"beam {beams}",
                     "exact_match": round(scores["exact_match"], 4),
                     "bleu": round(scores["bleu"], 2)}
                rows.append(r)
                print(f"| {r['model']} | {r['params']:,} | {r['steps']} | {r['train_s']} | "
                      f"{r['split']} | {r['decoding']} | {r['exact_match']:.4f} | "
                      f"{r['bleu']:.2f} |", flush=True)
        out.write_text(json.dumps({"rows": rows, "curves": curves}, indent=1))

    report("encoder-decoder", s2s_params, steps, s2s_wall,
           lambda pairs, beams: evaluate_pairs(loaded.model, loaded.params, tok, pairs,
                                               num_beams=beams, max_new_tokens=16)[0])
    for budget, how, stop_at in runs:
        print(f"decoder-only ({mcfg.n_layers} layers), {how}", flush=True)
        model, params, made, curve, wall = train_decoder(
            cfg, mcfg, tok, splits.train, steps=budget, schedule_steps=budget,
            eval_every=args.eval_every, evaluate=exact_match, stop_at=stop_at)
        curves[how] = curve

        def decode(pairs, beams, model=model, params=params):
            hyps = decoder_outputs(model, params, tok, pairs, beams)
            return score_texts(hyps, [t for _, t in pairs])

        report(f"decoder-only ({mcfg.n_layers} layers), {how}", dec_count, made, wall, decode)
    for how, curve in curves.items():
        print(f"\ndecoder-only, {how}: greedy exact match on the first {len(probe)} validation "
              "pairs\n\n| step | mean train loss since the last row | exact match | train s |")
        print("|---|---|---|---|")
        for step, loss, score, secs in curve:
            print(f"| {step} | {loss:.4f} | {score:.4f} | {secs:.0f} |")
    print(json.dumps({"steps": steps, "overrides": args.set, "decoder_steps": args.decoder_steps}))

if __name__ == "__main__":
    main()
