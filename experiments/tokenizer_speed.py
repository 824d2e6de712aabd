"""Tokenizer speed: jaxllm (pure Python) against HF tokenizers, tiktoken and sentencepiece.

    flock /tmp/jaxllm-bench.lock .venv/bin/python experiments/tokenizer_speed.py --rounds 3

Runs the jaxllm side (this venv) and the peer side (~/.venv-peers, this same file with
--side peer) alternately, `--rounds` times each, in one sitting, and prints a table of medians
with the per-round ratio jaxllm / peer (the machine is noisy; quote ratios).

Measured on the Shakespeare text jaxllm trains on (4.8 MB, `corpus_text`):
  train bytebpe 8192   jaxllm train(kind="bytebpe")  vs  HF ByteLevelBPETokenizer.train
                       (min_frequency=2, 256-byte alphabet; both use GPT-2's regex)
  train wordpiece 8192 jaxllm train(kind="wordpiece") vs HF BertWordPieceTokenizer.train
  GPT-2 encode, one long string, one thread:  jaxllm encode(text) (word cache cleared first)
                       vs HF ByteLevelBPETokenizer(encoder.json, vocab.bpe).encode(text) with
                       TOKENIZERS_PARALLELISM=false, vs tiktoken encode_ordinary(text)
  GPT-2 encode, batched lines: jaxllm encode_batch(lines) (one thread) vs HF encode_batch
                       (2 threads) vs tiktoken encode_ordinary_batch(num_threads=2)
  WordPiece encode (all-MiniLM-L6-v2 vocab.txt), one string and batched lines
  sentencepiece BPE 8192 (trained on the same text) encode, for reference
The peer side builds its tokenizers from the same official files (no network).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# this file is named like the `tokenizers` package: keep its folder off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]
PEER_PYTHON = Path.home() / ".venv-peers" / "bin" / "python"


def _time(fn, reps=1):
    best = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t)
    return min(best)


def jaxllm_side(args) -> dict:
    from jaxllm.text import load_tokenizer, train
    text = Path(args.text).read_text(encoding="utf-8")
    lines = text.split("\n")
    out = {}
    out["train_bytebpe_s"] = _time(lambda: train([text], 8192, kind="bytebpe"))
    out["train_wordpiece_s"] = _time(lambda: train([text], 8192, kind="wordpiece"))
    gpt2 = load_tokenizer("gpt2")

    def cold(fn):
        def run():
            gpt2._cache.clear()
            fn()
        return run
    out["gpt2_one_string_s"] = _time(cold(lambda: gpt2.encode(text)), 2)
    out["gpt2_batch_s"] = _time(cold(lambda: gpt2.encode_batch(lines)), 2)
    wp = load_tokenizer("all-minilm-l6-v2")

    def cold_wp(fn):
        def run():
            wp._cache.clear()
            fn()
        return run
    out["wp_one_string_s"] = _time(cold_wp(lambda: wp.encode(text)), 2)
    out["wp_batch_s"] = _time(cold_wp(lambda: wp.encode_batch(lines)), 2)
    return out


def peer_side(args) -> dict:
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    import sentencepiece as spm
    import tiktoken
    import tiktoken.load
    from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer
    text = Path(args.text).read_text(encoding="utf-8")
    lines = text.split("\n")
    out = {}

    def train_bbpe():
        ByteLevelBPETokenizer().train([args.text], vocab_size=8192, min_frequency=2,
                                      show_progress=False)

    def train_wp():
        BertWordPieceTokenizer().train([args.text], vocab_size=8192, show_progress=False)
    out["train_bytebpe_s"] = _time(train_bbpe)
    out["train_wordpiece_s"] = _time(train_wp)

    hf = ByteLevelBPETokenizer(args.encoder_json, args.vocab_bpe)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    out["gpt2_one_string_s"] = _time(lambda: hf.encode(text), 2)
    out["gpt2_batch_1thread_s"] = _time(lambda: hf.encode_batch(lines), 2)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    out["gpt2_batch_s"] = _time(lambda: hf.encode_batch(lines), 2)
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(args.vocab_bpe, args.encoder_json)
    tt = tiktoken.Encoding(name="gpt2-offline", pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
                           mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
    out["tiktoken_one_string_s"] = _time(lambda: tt.encode_ordinary(text), 2)
    out["tiktoken_batch_s"] = _time(lambda: tt.encode_ordinary_batch(lines, num_threads=2), 2)

    wp = BertWordPieceTokenizer(args.vocab_txt, lowercase=True)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    out["wp_one_string_s"] = _time(lambda: wp.encode(text, add_special_tokens=False), 2)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    out["wp_batch_s"] = _time(lambda: wp.encode_batch(lines, add_special_tokens=False), 2)

    with tempfile.TemporaryDirectory() as tmp:
        spm.SentencePieceTrainer.train(input=args.text, model_prefix=f"{tmp}/m", vocab_size=8192,
                                       model_type="bpe", character_coverage=1.0, num_threads=2,
                                       minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=f"{tmp}/m.model")
        out["spm_batch_s"] = _time(lambda: sp.encode(lines, num_threads=2), 2)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", choices=["both", "jaxllm", "peer"], default="both")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--text")
    ap.add_argument("--encoder-json")
    ap.add_argument("--vocab-bpe")
    ap.add_argument("--vocab-txt")
    args = ap.parse_args()
    if args.side != "both":
        res = jaxllm_side(args) if args.side == "jaxllm" else peer_side(args)
        print(json.dumps(res))
        return

    from jaxllm.data.corpora import corpus_text, load_documents
    from jaxllm.text import registry
    text = corpus_text(load_documents("shakespeare"))
    nbytes = len(text.encode("utf-8"))
    tmp = tempfile.mkdtemp(prefix="jaxllm-tokbench-")
    path = Path(tmp) / "shakespeare.txt"
    path.write_text(text, encoding="utf-8")
    enc = registry.package_file("gpt2")
    common = ["--text", str(path), "--encoder-json", str(enc), "--vocab-bpe",
              str(enc.with_name("vocab.bpe")), "--vocab-txt",
              str(registry.package_file("all-minilm-l6-v2"))]
    results = {"jaxllm": [], "peer": []}
    for r in range(args.rounds):
        for side, py in (("jaxllm", sys.executable), ("peer", str(PEER_PYTHON))):
            p = subprocess.run([py, __file__, "--side", side, *common], capture_output=True,
                               text=True, check=True)
            results[side].append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {side}: {results[side][-1]}", file=sys.stderr)

    def med(side, key):
        return statistics.median(x[key] for x in results[side])

    def ratio(key_j, key_p):  # jaxllm time / peer time, per round
        rs = [j[key_j] / p[key_p] for j, p in zip(results["jaxllm"], results["peer"])]
        return statistics.median(rs), min(rs), max(rs)

    rows = []

    def row(what, key_j, key_p, peer_name, unit="s"):
        j, p = med("jaxllm", key_j), med("peer", key_p)
        r, lo, hi = ratio(key_j, key_p)
        if unit == "MB/s":
            rows.append((what, f"{nbytes / j / 1e6:.2f}", f"{peer_name} {nbytes / p / 1e6:.2f}",
                         f"{1 / r:.2f} ({1 / hi:.2f}-{1 / lo:.2f})"))
        else:
            rows.append((what, f"{j:.2f}", f"{peer_name} {p:.2f}",
                         f"{r:.2f} ({lo:.2f}-{hi:.2f})"))

    row("train byte-level BPE 8192 (s)", "train_bytebpe_s", "train_bytebpe_s", "HF")
    row("train WordPiece 8192 (s)", "train_wordpiece_s", "train_wordpiece_s", "HF")
    row("GPT-2 encode, one string, 1 thread (MB/s)", "gpt2_one_string_s", "gpt2_one_string_s",
        "HF", "MB/s")
    row("GPT-2 encode, one string (MB/s)", "gpt2_one_string_s", "tiktoken_one_string_s",
        "tiktoken", "MB/s")
    row("GPT-2 encode, lines batched (MB/s; jaxllm 1 thread)", "gpt2_batch_s",
        "gpt2_batch_1thread_s", "HF 1 thread", "MB/s")
    row("GPT-2 encode, lines batched (MB/s; jaxllm 1 thread)", "gpt2_batch_s", "gpt2_batch_s",
        "HF 2 threads", "MB/s")
    row("GPT-2 encode, lines batched (MB/s; jaxllm 1 thread)", "gpt2_batch_s",
        "tiktoken_batch_s", "tiktoken 2 threads", "MB/s")
    row("WordPiece encode, one string, 1 thread (MB/s)", "wp_one_string_s", "wp_one_string_s",
        "HF", "MB/s")
    row("WordPiece encode, lines batched (MB/s; jaxllm 1 thread)", "wp_batch_s", "wp_batch_s",
        "HF 2 threads", "MB/s")
    spm = nbytes / med("peer", "spm_batch_s") / 1e6
    print(f"\nShakespeare {nbytes:,} bytes, {args.rounds} rounds interleaved; medians "
          f"(ratio = jaxllm/peer speed for MB/s rows, jaxllm/peer time for s rows; "
          f"median (min-max) of per-round ratios)\n")
    print("| measure | jaxllm | peer | ratio |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"| sentencepiece BPE 8192 encode, lines, 2 threads (MB/s) | - | spm {spm:.2f} | - |")
    print(json.dumps({"jaxllm": results["jaxllm"], "peer": results["peer"]}))


if __name__ == "__main__":
    main()
