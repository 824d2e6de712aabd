#!/usr/bin/env python3
"""Are jaxllm's Hugging Face exports what `transformers` reads? Each model is exported with
jaxllm (save_hf, or `jaxllm export` for the pretrained models and trained runs), loaded by
`transformers` from the directory alone (experiments/hf_export_peer.py in the peers' venv),
run on the same token ids, and its outputs compared with jaxllm's own forward on the same
parameters.

Models: random tiny GPT-2, Llama (grouped-query attention, untied head), BERT (with the
pretraining heads, exported as BertForPreTraining), BERT with a token head
(BertForTokenClassification) and with a span head (BertForQuestionAnswering), and the three
encoder-decoders (pre-norm learned positions -> Blenderbot, pre-norm sinusoidal -> Pegasus,
post-norm sinusoidal -> Marian), each with every parameter perturbed so that biases and norm
scales matter; SmolLM2-135M-Instruct (Llama) and all-MiniLM-L6-v2 (BertModel) as `jaxllm
export` writes them; with --runs, trained runs (dates-seq2seq, bbc-headlines, bbc-tags,
bbc-planted, bbc-topics, any number in any order) as `jaxllm export --run` writes them; a
bbc-topics run (model.head=sequence) is read by sentence-transformers (`SentenceTransformer(DIR)`,
its forward on the token ids and `encode` of the raw test texts). Encoders and encoder-decoders run on a padded
batch (padding on both sides of an encoder-decoder; only real positions are compared), and
every encoder-decoder also decodes greedily: transformers' `generate` (with the exported
generation_config.json) against jaxllm's (the function `jaxllm generate` calls).

Usage: python experiments/hf_export_transformers.py [--peer-python ~/.venv-peers/bin/python]
           [--runs RUN ...] [--only-runs] [--sources 200]
Prints a markdown table (max |jaxllm - transformers| per output; for "generated", how many of
the greedy outputs are identical) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from jaxllm import models, pretrained
from jaxllm.config import ModelConfig
from jaxllm.io.hf import save_hf, seq2seq_generation

HERE = Path(__file__).resolve().parent

TINY = {
    "gpt2-tiny": ModelConfig(vocab_size=101, max_len=32, n_layers=2, n_heads=4, d_model=64),
    "llama-tiny": ModelConfig(vocab_size=101, max_len=32, n_layers=2, n_heads=4, n_kv_heads=2,
                              d_model=64, positions="rope", rope_theta=10000.0, norm="rmsnorm",
                              mlp="swiglu", use_bias=False, tie_embeddings=False),
    "bert-tiny": ModelConfig(kind="encoder", norm_position="post", type_vocab_size=2,
                             vocab_size=101, max_len=32, n_layers=2, n_heads=4, d_model=64,
                             norm_eps=1e-12),
}
_BERT = {"kind": "encoder", "norm_position": "post", "type_vocab_size": 2, "vocab_size": 101,
         "max_len": 32, "n_layers": 2, "n_heads": 4, "d_model": 64, "norm_eps": 1e-12}
TINY.update({
    "bert-token-tiny": ModelConfig(**_BERT, head="token", num_classes=3),
    "bert-span-tiny": ModelConfig(**_BERT, head="span"),
    **{f"seq2seq-{norm}-{pos}": ModelConfig(kind="seq2seq", vocab_size=101, max_len=32,
                                            n_layers=2, n_heads=4, d_model=64,
                                            norm_position=norm, positions=pos)
       for norm, pos in (("pre", "learned"), ("pre", "sinusoidal"), ("post", "sinusoidal"))},
})
PRETRAINED = ("smollm2-135m-instruct", "all-minilm-l6-v2")
TINY_START, TINY_END = 99, 100  # a tiny encoder-decoder's start and end ids (a 99-id tokenizer)
TEXT = "The capital of France is Paris, and the capital of Germany is"


def perturbed(cfg: ModelConfig, seed: int = 0) -> dict:
    """Initialised params with every leaf plus 0.05 * N(0, 1)."""
    params, _ = models.init_params(cfg, jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda x: np.asarray(x) + 0.05 * rng.normal(size=x.shape).astype(np.float32), params)


def jaxllm_outputs(cfg: ModelConfig, params, entry: dict, heads: bool) -> dict:
    model = models.build(cfg)
    ids = np.asarray(entry["ids"])
    mask = np.asarray(entry["mask"], bool) if "mask" in entry else None
    if cfg.kind == "seq2seq":
        dec, dec_mask = np.asarray(entry["decoder_ids"]), np.asarray(entry["decoder_mask"], bool)
        logits = model.apply({"params": params}, ids, dec, mask, dec_mask)
        return {"logits": np.where(dec_mask[..., None], np.asarray(logits), 0.0)}
    if cfg.kind == "encoder":
        types = np.asarray(entry["types"]) if "types" in entry else None
        out = model.apply({"params": params}, ids, types, mask,
                          heads=("mlm", "nsp") if heads else ())
        if cfg.head:  # a task head: its outputs, at real tokens only (a sequence head: rows)
            out = {k: np.asarray(v) for k, v in out.items() if k != "hidden"}
            keep = np.ones(ids.shape, bool) if mask is None else mask
            return {k: v if cfg.head == "sequence" else
                    np.where(keep.reshape(keep.shape + (1,) * (v.ndim - 2)), v, 0.0)
                    for k, v in out.items()}
        return {k: np.asarray(v) for k, v in out.items()}
    return {"logits": np.asarray(model.apply({"params": params}, ids))}


def padded(rows: list[list[int]], width: int) -> tuple[list, list]:
    """Right-padded ids (0) and their mask."""
    ids = [list(r) + [0] * (width - len(r)) for r in rows]
    return ids, [[1] * len(r) + [0] * (width - len(r)) for r in rows]


def seq2seq_entry(rng, n_source: int, n_target: int, start: int, vocab: int, rows: int = 3,
                  sources=None) -> dict:
    """Sources and targets (start id first) of different lengths, padded on both sides."""
    lengths = [n_source, n_source // 2, 3][:rows]
    sources = sources or [rng.integers(0, start, n).tolist() for n in lengths]
    targets = [[start] + rng.integers(0, start, n - 1).tolist()
               for n in [n_target, n_target - 3, 2][:len(sources)]]
    ids, mask = padded(sources, max(map(len, sources)))
    dec, dec_mask = padded(targets, n_target)
    return {"ids": ids, "mask": mask, "decoder_ids": dec, "decoder_mask": dec_mask}


def seq2seq_greedy(cfg: ModelConfig, params, sources, start: int, end: int, n: int) -> list:
    """jaxllm's greedy targets, as `jaxllm generate` decodes (infer/seq2seq.py)."""
    from jaxllm.infer.seq2seq import seq2seq_generate

    return seq2seq_generate(models.build(cfg), params, sources, start_id=start, end_id=end,
                            max_new_tokens=n, vocab_size=end + 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer-python", default=os.path.expanduser("~/.venv-peers/bin/python"))
    ap.add_argument("--runs", nargs="+", metavar="RUN",
                    help="trained runs to export (encoder-decoders, encoders with a task head)")
    ap.add_argument("--only-runs", action="store_true",
                    help="export and compare the --runs alone (no tiny or pretrained models)")
    ap.add_argument("--sources", type=int, default=200,
                    help="test sources of an encoder-decoder run decoded greedily by both")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hf_export_") as tmp:
        compare(Path(tmp), args.peer_python, args.runs, args.sources, args.only_runs)


def compare(work: Path, peer_python: str, runs=None, n_sources: int = 200,
            only_runs: bool = False) -> None:
    """Export every model into work/, run them with transformers, print the comparison."""
    rng = np.random.default_rng(1)
    ours, manifest = {}, []
    for name, cfg in {} if only_runs else TINY.items():
        params = perturbed(cfg)
        heads = cfg.kind == "encoder" and not cfg.head
        entry = {"name": name, "dir": str(work / name)}
        if cfg.kind == "seq2seq":
            ids, generation = seq2seq_generation(TINY_START, TINY_END, cfg.vocab_size, 12)
            save_hf(work / name, cfg, params, extra_config=ids, generation=generation)
            entry.update(seq2seq_entry(rng, 17, 9, TINY_START, cfg.vocab_size),
                         generate={"max_new_tokens": 12})
            sources = [[t for t, k in zip(r, m) if k] for r, m in zip(entry["ids"],
                                                                       entry["mask"])]
            ours[name] = {**jaxllm_outputs(cfg, params, entry, heads),
                          "generated": seq2seq_greedy(cfg, params, sources, TINY_START,
                                                      TINY_END, 12)}
        else:
            save_hf(work / name, cfg, params, heads=heads)
            entry["ids"] = rng.integers(0, cfg.vocab_size, (2, 17)).tolist()
            if cfg.head:  # a padded batch with both token types
                entry["mask"] = [[1] * 17, [1] * 11 + [0] * 6]
                entry["types"] = [[0] * 8 + [1] * 9, [0] * 5 + [1] * 12]
            ours[name] = jaxllm_outputs(cfg, params, entry, heads)
        manifest.append(entry)
    for name in () if only_runs else PRETRAINED:
        subprocess.run([sys.executable, "-m", "jaxllm.cli.main", "export", "--model", name,
                        "--out", str(work / name)], check=True, capture_output=True)
        m = pretrained.load(name)
        entry = {"name": name, "dir": str(work / name),
                 "ids": [m.tokenizer.encode(TEXT)[:14]]}
        ours[name] = jaxllm_outputs(m.config, m.params, entry, heads=False)
        manifest.append(entry)
    if runs:
        for entry, outputs in run_entries(work, runs, n_sources):
            ours[entry["name"]] = outputs
            manifest.append(entry)
    (work / "manifest.json").write_text(json.dumps(manifest))
    peer = subprocess.run([peer_python, "-P", str(HERE / "hf_export_peer.py"),
                           str(work / "manifest.json")], check=True, capture_output=True,
                          text=True)
    info = json.loads(peer.stdout.strip().splitlines()[-1])

    rows, result = [], {}
    for entry in manifest:
        name = entry["name"]
        theirs = dict(np.load(Path(entry["dir"]) / "transformers.npz"))
        assert set(theirs) == set(ours[name]), (name, sorted(theirs), sorted(ours[name]))
        for key in sorted(theirs):
            if key == "generated":  # greedy outputs: identical sequences, out of how many
                hf = [[int(t) for t in row if t >= 0] for row in theirs[key]]
                same = sum(a == b for a, b in zip(hf, ours[name][key]))
                rows.append(f"| {name} | {info['models'][name]['class']} | greedy generate, "
                            f"{len(hf)} sources | {same}/{len(hf)} identical | |")
                result[f"{name}/generated_identical"] = [same, len(hf)]
                continue
            if "mask" in entry and theirs[key].ndim >= 2 and theirs[key].shape[:2] == \
                    np.shape(entry.get("decoder_mask", entry["mask"])):  # real positions only
                keep = np.asarray(entry.get("decoder_mask", entry["mask"]), bool)
                theirs[key] = np.where(keep.reshape(keep.shape + (1,) * (theirs[key].ndim - 2)),
                                       theirs[key], 0.0)
            diff = float(np.max(np.abs(ours[name][key] - theirs[key])))
            scale = float(np.max(np.abs(theirs[key])))
            rows.append(f"| {name} | {info['models'][name]['class']} | {key} "
                        f"{tuple(theirs[key].shape)} | {diff:.2e} | {scale:.2f} |")
            result[f"{name}/{key}"] = diff
    print("| model | read by transformers as | output (shape) | max abs diff | max abs value |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(json.dumps({**{k: v for k, v in info.items() if k != "models"},
                      "jax": jax.__version__, "max_abs_diff": result}))


def run_entries(work: Path, runs, n_sources: int):
    """(manifest entry, jaxllm's outputs) of each trained run, exported by `jaxllm export`:
    an encoder-decoder run on a padded batch of its first 4 test pairs and greedily on
    n_sources test sources, a task-head run on a padded batch of its first 8 test rows (a
    sequence head also on their texts, which sentence-transformers tokenizes itself)."""
    from jaxllm.data.pairs import load_pairs, target_length
    from jaxllm.objectives.seq2seq import seq2seq_ids, shift_right
    from jaxllm.train import load_run
    from jaxllm.data.labeled import stratified_split
    from jaxllm.train.task_inputs import SPLIT_SEED, labelled_texts, task_splits

    for run in runs:
        name = "run:" + Path(run).name
        out = work / Path(run).name
        subprocess.run([sys.executable, "-m", "jaxllm.cli.main", "export", "--run", run,
                        "--out", str(out)], check=True, capture_output=True)
        loaded = load_run(run)
        cfg = loaded.config
        entry = {"name": name, "dir": str(out)}
        if cfg.model.kind == "seq2seq":
            tok = loaded.tokenizer
            start, end = seq2seq_ids(tok.vocab_size)
            pairs = load_pairs(cfg.data.corpus).test[:n_sources]
            sources = [tok.encode(s)[:cfg.model.max_len] for s, _ in pairs]
            targets = [tok.encode(t) + [end] for _, t in pairs[:4]]
            dec, dec_mask = padded(targets, max(map(len, targets)))
            ids, mask = padded(sources[:4], max(map(len, sources[:4])))
            entry.update(ids=ids, mask=mask, decoder_mask=dec_mask,
                         decoder_ids=np.asarray(shift_right(np.asarray(dec), start)).tolist())
            src, src_mask = padded(sources, max(map(len, sources)))
            n_new = target_length(cfg)
            entry["generate"] = {"max_new_tokens": n_new, "ids": src, "mask": src_mask}
            yield entry, {**jaxllm_outputs(cfg.model, loaded.params, entry, False),
                          "generated": seq2seq_greedy(cfg.model, loaded.params, sources, start,
                                                      end, n_new)}
            continue
        test = task_splits(cfg, loaded.tokenizer, only=("test",)).test
        entry.update(ids=test["tokens"][:8].tolist(), mask=test["mask"][:8].astype(int).tolist())
        if "types" in test:
            entry["types"] = test["types"][:8].tolist()
        outputs = jaxllm_outputs(cfg.model, loaded.params, entry, False)
        if cfg.model.head == "sequence":  # the same rows' texts (task_splits' test split)
            texts, labels, _ = labelled_texts(cfg.data.corpus)
            fraction = cfg.data.val_fraction
            test_rows = stratified_split(labels, (fraction, fraction), SPLIT_SEED)[2]
            entry["texts"] = [texts[i] for i in test_rows[:8]]
            outputs["encode_logits"] = outputs["logits"]
        yield entry, outputs


if __name__ == "__main__":
    main()
