#!/usr/bin/env python3
"""The default preset (what `make demo` trains) against the PyTorch peer on the same data,
config and number of steps.

1. Writes the Shakespeare corpus exactly as jaxllm joins it (experiments/out/shakespeare.txt), so
   the peer's split (first 90% of the characters train, last 10% validation) is jaxllm's
   data.split=position, val_fraction=0.1.
2. Runs `jaxllm train --preset shakespeare-char` (4 layers, 4 heads, d=128, context 64, batch 12,
   2000 steps, AdamW lr 1e-3 warm-up 100 + cosine to 1e-4) and `jaxllm eval` on the whole
   validation split, timing the training.
3. Runs ../shared/peers/02_train_torch_gpt.py with the same model size, batch, context, steps and
   peak lr (its schedule is constant, its loss is the mean over 20 random validation windows).

Usage: python experiments/demo_vs_peer.py [--peer-python ~/.venv-peers/bin/python] [--steps 2000]
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER = HERE.parent.parent / "shared" / "peers" / "02_train_torch_gpt.py"


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer-python", default=os.path.expanduser("~/.venv-peers/bin/python"))
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from jaxllm.data import corpus_text, load_documents
    corpus = out / "shakespeare.txt"
    corpus.write_text(corpus_text(load_documents("shakespeare")), encoding="utf-8")

    run = out / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    jaxllm = [sys.executable, "-m", "jaxllm.cli.main"]
    t0 = time.perf_counter()
    subprocess.run(jaxllm + ["train", "--preset", "shakespeare-char", "--steps", str(args.steps),
                             "--out", str(run), "--no-progress"],
                   capture_output=True, text=True, check=True)
    train_s = time.perf_counter() - t0
    evaluation = subprocess.run(jaxllm + ["eval", "--run", str(run)], capture_output=True,
                                text=True, check=True)
    full_val = float(re.search(r"loss ([0-9.]+)", evaluation.stdout).group(1))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val20 = [r for r in rows if "val_loss" in r][-1]["val_loss"]
    speeds = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r]

    t0 = time.perf_counter()
    peer = subprocess.run([args.peer_python, str(PEER), "--corpus", str(corpus), "--n-layer", "4",
                           "--n-head", "4", "--d-model", "128", "--context", "64", "--batch",
                           "12", "--steps", str(args.steps), "--lr", "1e-3", "--eval-at",
                           f"0,{args.steps}"], capture_output=True, text=True, check=True)
    peer_s = time.perf_counter() - t0
    p = last_json(peer.stdout)
    peer_val = p["val_loss"][str(args.steps)]

    print("| | jaxllm shakespeare-char | PyTorch peer (eager) |")
    print("|---|---|---|")
    print(f"| validation loss, 20 sampled batches of 12 x 64 | {val20:.4f} | {peer_val:.4f} |")
    print(f"| validation loss, whole validation split | {full_val:.4f} | - |")
    print(f"| training wall time (s), incl. start-up | {train_s:.0f} | {peer_s:.0f} |")
    print(f"| tokens/s (median of log windows / of steps) | {sorted(speeds)[len(speeds) // 2]:,.0f}"
          f" | {p['tokens_per_s_median']:,.0f} |")
    print(json.dumps({"bench": "demo_vs_peer", "steps": args.steps, "run": str(run),
                      "jaxllm_val_loss_20_batches": val20, "jaxllm_val_loss_full": full_val,
                      "jaxllm_train_wall_s": round(train_s, 1), "peer_val_loss": peer_val,
                      "peer_wall_s": round(peer_s, 1), "peer": p}))


if __name__ == "__main__":
    main()
