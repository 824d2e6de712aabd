"""BBC News headlines from the article: the bbc-headlines encoder-decoder against the
lead-sentence baseline and SmolLM2-135M-Instruct zero-shot, ROUGE-1/2/L (jaxllm.metrics.rouge,
rouge-score's defaults, F-measure, mean over articles).

    jaxllm train --preset bbc-headlines --out runs/bbc-headlines      (or let this script train)
    .venv/bin/python experiments/seq2seq_headlines.py --run runs/bbc-headlines [--examples N]
    .venv/bin/python experiments/seq2seq_headlines.py --baseline-only

The test split is data/pairs.py's (223 articles, seed 0); --examples N scores its first N
articles, the same N for every row. Each row reads the same text of an article: its first
model.max_len tokens of the run's tokenizer (the encoder-decoder's source; the other rows get
that text decoded back). The lead baseline's headline is the first sentence of it (up to the
first ". ", "! " or "? "). The encoder-decoder decodes greedily and with 4 beams, at most
data.target_len tokens. SmolLM2 gets PROMPT through its chat template and answers greedily
with at most 24 new tokens; its headline is the first non-empty line of the answer without a
"Headline:" label, markdown emphasis or surrounding quotes.
"""

from __future__ import annotations

import argparse
import json
import re
import time

from preset_runs import add_run_args, preset_run

from jaxllm.platform import configure_cpu

PROMPT = "Write a short headline for this news article.\n\n{article}"


def lead_sentence(article: str) -> str:
    return re.split(r"(?<=[.!?])\s", article, maxsplit=1)[0]


def clean_answer(answer: str) -> str:
    """A chat model's answer as a bare headline (the rule in the module docstring)."""
    lines = [x.strip() for x in answer.splitlines() if x.strip()]
    line = lines[0] if lines else ""
    line = re.sub(r"^\W*headline\W*:\W*", "", line, flags=re.IGNORECASE)
    return line.strip("*#_ ").strip("\"'“”‘’ ")


def smollm2_headlines(articles: list[str], batch_size: int = 8) -> list[str]:
    from jaxllm import pretrained

    lm = pretrained.load("smollm2-135m-instruct")
    tok = lm.tokenizer
    prompts = [tok.encode(tok.apply_chat_template([{"role": "user", "content":
                                                    PROMPT.format(article=a)}],
                                                  add_generation_prompt=True))
               for a in articles]
    out = []
    for i in range(0, len(prompts), batch_size):
        ids = lm.generate(prompts[i:i + batch_size], max_new_tokens=24, temperature=0,
                          pad_to=64)
        out += [clean_answer(tok.decode(x)) for x in ids]
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(p, "runs/seq2seq-headlines")
    p.add_argument("--examples", type=int, help="score the first N test articles (default all)")
    p.add_argument("--baseline-only", action="store_true",
                   help="only the lead sentence, of each whole article")
    p.add_argument("--no-smollm2", action="store_true")
    args = p.parse_args(argv)
    configure_cpu()

    from jaxllm.data.pairs import bbc_headline_splits, target_length
    from jaxllm.infer.seq2seq import evaluate_pairs, score_texts

    test = bbc_headline_splits().test[:args.examples]
    refs = [t for _, t in test]
    if args.baseline_only:
        rows = [("lead sentence", score_texts([lead_sentence(a) for a, _ in test], refs), None)]
        leads = None
    else:
        loaded, seconds = preset_run("bbc-headlines", args)
        cfg, tok = loaded.config, loaded.tokenizer
        leads = [tok.decode(tok.encode(a)[:cfg.model.max_len]) for a, _ in test]
        rows = [("lead sentence", score_texts([lead_sentence(x) for x in leads], refs), None)]
        trained = f"{cfg.train.steps} steps" + (f", {seconds:.0f} s" if seconds else "")
        for beams in (1, 4):
            start = time.perf_counter()
            scores, hyps = evaluate_pairs(loaded.model, loaded.params, tok, test,
                                          num_beams=beams, max_new_tokens=target_length(cfg))
            how = "greedy" if beams == 1 else "beam 4"
            rows.append((f"encoder-decoder ({trained}), {how}", scores, hyps))
            print(f"{how}: {time.perf_counter() - start:.0f} s", flush=True)
        if not args.no_smollm2:
            start = time.perf_counter()
            hyps = smollm2_headlines(leads)
            rows.append(("SmolLM2-135M-Instruct zero-shot, greedy", score_texts(hyps, refs),
                         hyps))
            print(f"smollm2: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"| headline from | ROUGE-1 | ROUGE-2 | ROUGE-L |  ({len(test)} test articles)")
    print("|---|---|---|---|")
    for name, s, _ in rows:
        print(f"| {name} | {s['rouge1']:.4f} | {s['rouge2']:.4f} | {s['rougeL']:.4f} |")
    for name, _, hyps in rows:
        if hyps:
            print(json.dumps({name: list(zip(hyps[:5], refs[:5]))}, indent=1))
    if leads is not None:
        print(json.dumps({"lead sentence": [lead_sentence(x) for x in leads[:5]]}, indent=1))


if __name__ == "__main__":
    main()
