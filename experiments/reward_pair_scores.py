"""A trained reward model's score margin on each held-out arithmetic and counting pair.

    python experiments/reward_pair_scores.py --run WORK/runs/reward-300 [--seq 72 --held-pairs 80]

The pairs are alignment_smollm2.py reward's held-out ones (preference_pairs(--held-pairs,
seed=1)); for each: the chosen and rejected answers, score(chosen) - score(rejected) and whether
it is right. Prints, per task and per value of the chosen answer (counting), how often the model
is right: a model that has learned an answer's prior (a count of 1 is the commonest) rather than
the task is right exactly where the prior is.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True, help="a reward run directory")
    ap.add_argument("--seq", type=int, default=72)
    ap.add_argument("--held-pairs", type=int, default=80)
    args = ap.parse_args()
    import alignment_smollm2 as A

    from jaxllm.data import preferences

    run = A.load_run(args.run)
    held = [r for r in preferences.preference_pairs(args.held_pairs, seed=1)
            if r["task"] in ("arithmetic", "counting")]
    margin = A.pair_scores(run, held, args.seq) @ np.array([1.0, -1.0])
    groups = defaultdict(list)
    for r, m in zip(held, margin):
        print(f"{r['task']:10s} {r['prompt'][:44]!r:48s} chosen {r['chosen']:>5s} rejected "
              f"{r['rejected']:>5s} margin {m:+.3f} {'right' if m > 0 else 'WRONG'}")
        groups[r["task"]].append(m)
        if r["task"] == "counting":
            groups[f"counting, chosen = {r['chosen']}"].append(m)
    print("\n| pairs | n | right | mean abs margin |\n|---|---|---|---|")
    for g, ms in sorted(groups.items()):
        ms = np.array(ms)
        print(f"| {g} | {len(ms)} | {int((ms > 0).sum())} | {np.abs(ms).mean():.3f} |")


if __name__ == "__main__":
    main()
