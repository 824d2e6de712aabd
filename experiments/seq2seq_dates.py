"""The encoder-decoder on the dates task (data/pairs.py): held-out templates, greedy vs beam
search, and a decoder-only model of about the same size trained on source + target.

    .venv/bin/python experiments/seq2seq_dates.py [--steps N] [--set KEY=VALUE ...] [--out DIR]
    .venv/bin/python experiments/seq2seq_dates.py --run DIR    (a trained dates-seq2seq run)

1. trains the dates-seq2seq preset (with the --set overrides) through jaxllm.train, or reads
   the run in --run;
2. trains a decoder-only model with the same optimizer, steps and batch size on rows
   "source <sep> target </s>" (loss on the target and </s> only, as the encoder-decoder's),
   with n_layers chosen so that its parameter count is the closest to the encoder-decoder's;
3. decodes the validation split (training templates) and the test split (held-out templates)
   with each model, greedy and beam search with 4 beams, and prints exact match and BLEU
   (jaxllm.metrics.corpus_bleu, sacrebleu's 13a defaults) as a markdown table and JSON.
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


def train_decoder(cfg, tokenizer, pairs, target_params: int):
    """(model, params, wall seconds, its parameter count): a decoder of cfg's width whose
    layer count gives the parameter count closest to target_params, trained as described."""
    import jax

    from jaxllm import models
    from jaxllm.data import RowBatches
    from jaxllm.objectives.causal_lm import causal_lm_loss
    from jaxllm.optim import TrainState, make_optimizer
    from jaxllm.train.step import make_train_step

    V = tokenizer.vocab_size
    base = replace(cfg.model, kind="decoder", vocab_size=V + 2, max_len=2 * cfg.model.max_len,
                   positions="learned")
    sizes = {n: param_count(models.abstract_params(replace(base, n_layers=n))[0])
             for n in range(1, 4 * cfg.model.n_layers + 1)}
    n_layers = min(sizes, key=lambda n: abs(sizes[n] - target_params))
    mcfg = replace(base, n_layers=n_layers)
    model = models.build(mcfg)
    t = cfg.train
    tx = make_optimizer(cfg.optim, t.steps)
    step = make_train_step(causal_lm_loss(model), tx, seed=t.seed)
    state = TrainState.create(models.init_params(mcfg, jax.random.PRNGKey(t.seed))[0], tx)
    batches = RowBatches(decoder_rows(tokenizer, pairs, mcfg.max_len, V, V + 1), t.batch_size,
                         t.seed)
    start = time.perf_counter()
    for _ in range(t.steps):
        state, metrics = step(state, next(batches))
    float(metrics["loss"])
    return model, state.params, time.perf_counter() - start, sizes[n_layers]


def decoder_outputs(model, params, tokenizer, pairs, num_beams: int) -> list[str]:
    from jaxllm.infer.generate import generate

    V = tokenizer.vocab_size
    out = []
    for i in range(0, len(pairs), 64):
        chunk = pairs[i:i + 64]
        prompts = [tokenizer.encode(s) + [V] for s, _ in chunk]
        ids = generate(model, params, prompts, max_new_tokens=16, temperature=0,
                       stop_tokens=(V + 1,), vocab_size=V + 2, num_beams=num_beams,
                       pad_to=model.cfg.max_len - 16)
        out += [tokenizer.decode([t for t in r if t < V]) for r in ids]
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(p, "runs/seq2seq-dates")
    p.add_argument("--examples", type=int, default=500, help="pairs decoded per split")
    args = p.parse_args(argv)
    configure_cpu()

    from jaxllm.data.pairs import dates_splits
    from jaxllm.infer.seq2seq import evaluate_pairs, score_texts

    loaded, s2s_wall = preset_run("dates-seq2seq", args)
    cfg, tok = loaded.config, loaded.tokenizer
    splits = dates_splits()
    evals = {"validation (training templates)": splits.validation[:args.examples],
             "test (held-out templates)": splits.test[:args.examples]}
    s2s_params = param_count(loaded.params)
    dec_model, dec_params, dec_wall, dec_count = train_decoder(cfg, tok, splits.train, s2s_params)
    rows = []
    for model_name, n_params, wall in (("encoder-decoder", s2s_params, s2s_wall),
                                       (f"decoder-only ({dec_model.cfg.n_layers} layers)",
                                        dec_count, dec_wall)):
        for split, pairs in evals.items():
            for beams in (1, 4):
                if model_name == "encoder-decoder":
                    scores, _ = evaluate_pairs(loaded.model, loaded.params, tok, pairs,
                                               num_beams=beams, max_new_tokens=16)
                else:
                    hyps = decoder_outputs(dec_model, dec_params, tok, pairs, beams)
                    scores = score_texts(hyps, [t for _, t in pairs])
                rows.append({"model": model_name, "params": n_params,
                             "train_s": None if wall is None else round(wall),
                             "split": split, "decoding": "greedy" if beams == 1 else
                             f"beam {beams}", "exact_match": round(scores["exact_match"], 4),
                             "bleu": round(scores["bleu"], 2)})
    print("| model | params | train s | split | decoding | exact match | BLEU |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['params']:,} | {r['train_s']} | {r['split']} | "
              f"{r['decoding']} | {r['exact_match']:.4f} | {r['bleu']:.2f} |")
    Path(args.run or args.out, "results.json").write_text(json.dumps(rows, indent=1))
    print(json.dumps({"steps": cfg.train.steps, "overrides": args.set}))


if __name__ == "__main__":
    main()
