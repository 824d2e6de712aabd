"""What the post-training objectives read: chat conversations (SFT), rankings (reward model) and
preference pairs (DPO, with the reference model's log-probabilities); PPO/GRPO prompts are in
train/rollout.py. Each builder returns the fields of a train.inputs.Inputs.

    fields = chat_inputs(cfg, run, resuming)        # data.corpus=csv:FILE or jsonl:FILE chats
    fields = ranking_inputs(cfg, run, resuming)     # train.objective=reward
    fields = preference_inputs(cfg, run, resuming)  # train.objective=dpo

Files: data.corpus names the training file, data.validation a held-out one of the same kind
(else data.val_fraction of the records, drawn with train.seed, is held out). Text is rendered
with the chat template of the run's tokenizer, which is the base model's (train.init_from) or,
for a new model, the byte tokenizer (data.tokenizer=byte).

SFT packs conversations into rows with segment ids (data/batches.py), weighting prompt tokens
by align.prompt_loss_weight; the validation rows weigh them 0, so the validation loss is the
held-out answers' cross-entropy. Pairs and rankings are one example per row, right-padded to
model.max_len. DPO's reference log-probabilities are computed once, from the initial parameters
(LoRA's factors start at zero, so these are the base model's), before the first step, and kept
in the run directory as reference.npz: no second model is held in memory, and a resumed run
reads them back.
"""

from __future__ import annotations

import io
from functools import partial
from pathlib import Path

import jax
import numpy as np

from jaxllm import config as config_lib
from jaxllm.data import BatchIterator, RowBatches, eval_batches, fixed_rows
from jaxllm.data.chat import (encode_answer, encode_chat, encode_prompt, read_chat_jsonl,
                              read_sft_csv)
from jaxllm.data.preferences import read_pairs, read_rankings
from jaxllm.errors import CheckpointError, ConfigError, DataError
from jaxllm.files import atomic_write
from jaxllm.objectives.preference import sequence_logprobs
from jaxllm.text import ByteTokenizer
from jaxllm.train.params import vocab_config
from jaxllm.train.run import RunDir, run_tokenizer

FORMATS = ("csv", "jsonl")
REFERENCE_FILE = "reference.npz"


def data_file(corpus: str) -> tuple[str, Path] | None:
    """(format, path) when data.corpus names a file ("csv:F", "jsonl:F", or F.csv / F.jsonl),
    None for a registered corpus."""
    for fmt in FORMATS:
        if corpus.startswith(fmt + ":"):
            return fmt, Path(corpus[len(fmt) + 1:])
    suffix = Path(corpus).suffix.lstrip(".")
    return (suffix, Path(corpus)) if suffix in FORMATS else None


def split_records(cfg: config_lib.Config, read, kind: str = "jsonl") -> tuple[list, list]:
    """(training, held-out) records of the run's files, read by read(format, path)."""
    dc = cfg.data
    found = data_file(dc.corpus)
    allowed = FORMATS if kind == "chat" else ("jsonl",)
    want = " or ".join(f"{fmt}:FILE" for fmt in allowed)
    if found is None or found[0] not in allowed:
        raise ConfigError(f"data.corpus={dc.corpus!r}: train.objective={cfg.train.objective} "
                          f"reads a file; pass --data {want}")
    held = data_file(dc.validation) if dc.validation else None
    if dc.validation and (held is None or held[0] not in allowed):
        raise ConfigError(f"data.validation={dc.validation!r}: train.objective="
                          f"{cfg.train.objective} holds out a file; set it to {want}")
    records = read(*found)
    if held:
        return records, read(*held)
    if len(records) < 2:
        raise DataError(f"{found[1]} has {len(records)} record; hold-out needs at least 2 (or "
                        f"set data.validation to a held-out file)")
    order = np.random.default_rng(cfg.train.seed).permutation(len(records))
    n_val = max(1, round(dc.val_fraction * len(records)))
    return ([records[i] for i in sorted(order[n_val:])],
            [records[i] for i in sorted(order[:n_val])])


def align_tokenizer(cfg: config_lib.Config, run: RunDir, resuming: bool):
    tokenizer = run_tokenizer(cfg, run, resuming)
    if tokenizer is not None:
        return tokenizer
    if cfg.data.tokenizer != "byte":
        raise ConfigError(f"data.tokenizer={cfg.data.tokenizer!r}: chat and preference files "
                          f"are read with the base model's tokenizer; pass --init-from "
                          f"RUN_OR_MODEL (or set data.tokenizer=byte for a new model)")
    return ByteTokenizer()


# --- SFT ---------------------------------------------------------------------------------------

def _read_chats(cfg):
    return lambda fmt, path: (read_sft_csv(path, cfg.data.columns) if fmt == "csv"
                              else read_chat_jsonl(path))


def chat_inputs(cfg: config_lib.Config, run: RunDir, resuming: bool) -> dict:
    """Packed chat rows, prompt tokens weighted by align.prompt_loss_weight (0 in validation)."""
    tokenizer = align_tokenizer(cfg, run, resuming)
    train, held = split_records(cfg, _read_chats(cfg), "chat")
    cfg = vocab_config(cfg, tokenizer.vocab_size, resuming)
    m, t = cfg.model, cfg.train
    weight = cfg.align.prompt_loss_weight
    enc = [encode_chat(tokenizer, c, weight) for c in train]
    val = [encode_chat(tokenizer, c, 0.0) for c in held]
    batches = BatchIterator([e[0] for e in enc], t.batch_size, m.max_len, t.seed, "packed",
                            name="train", weights=[e[1] for e in enc])
    validation = eval_batches([e[0] for e in val], t.eval_batches,
                              t.batch_size // cfg.optim.grad_accum, m.max_len, t.seed + 1,
                              "packed", name="validation", weights=[e[1] for e in val])
    return dict(cfg=cfg, tokenizer=tokenizer, train=batches, validation=validation,
                unit="tokens", per_step=t.batch_size * m.max_len)


# --- rows of prompt + answer ------------------------------------------------------------------

def prompt_ids(tokenizer, record: dict, max_len: int, room: int, where: str) -> list[int]:
    """A record's prompt ids, refused when fewer than `room` positions of the context remain."""
    ids = encode_prompt(tokenizer, record["prompt"], record.get("system", ""))
    if len(ids) + room > max_len:
        raise DataError(f"{where}: the prompt has {len(ids)} tokens, which with {room} for the "
                        f"answer exceed model.max_len={max_len}; shorten the prompt or raise "
                        f"model.max_len")
    return ids


def pair_rows(tokenizer, records: list[dict], max_len: int, name: str) -> dict:
    """DPO rows: <side>_inputs/_targets/_mask (N, max_len) for chosen and rejected; the mask
    is 1 on targets that are answer tokens (answers cut at the context's end)."""
    n = len(records)
    out = {}
    prompts = [prompt_ids(tokenizer, r, max_len, 1, f"{name} record {i + 1}")
               for i, r in enumerate(records)]
    for side in ("chosen", "rejected"):
        tokens = np.zeros((n, max_len + 1), np.int32)
        mask = np.zeros((n, max_len), np.float32)
        for i, (p, r) in enumerate(zip(prompts, records)):
            seq = (p + encode_answer(tokenizer, r[side]))[:max_len + 1]
            tokens[i, :len(seq)] = seq
            mask[i, len(p) - 1:len(seq) - 1] = 1.0  # target t is token t + 1
        out.update({f"{side}_inputs": tokens[:, :-1], f"{side}_targets": tokens[:, 1:],
                    f"{side}_mask": mask})
    return out


def ranking_rows(tokenizer, records: list[dict], max_len: int, k: int, name: str) -> dict:
    """Reward-model rows: inputs (N, k, max_len) prompt + response, start and last (N, k) the
    index of the response's first and last token, ranks (N, k) (-1 for the missing responses of
    a ranking shorter than k)."""
    n = len(records)
    inputs = np.zeros((n, k, max_len), np.int32)
    start, last = np.ones((n, k), np.int32), np.zeros((n, k), np.int32)
    ranks = np.full((n, k), -1, np.int32)
    for i, r in enumerate(records):
        p = prompt_ids(tokenizer, r, max_len, 1, f"{name} record {i + 1}")
        for j, (response, rank) in enumerate(zip(r["responses"], r["ranks"])):
            seq = (p + encode_answer(tokenizer, response))[:max_len]
            inputs[i, j, :len(seq)] = seq
            start[i, j], last[i, j], ranks[i, j] = len(p), len(seq) - 1, rank
    return {"inputs": inputs, "start": start, "last": last, "ranks": ranks}


def _row_fields(cfg, tokenizer, train_rows, val_rows, unit) -> dict:
    t = cfg.train
    return dict(cfg=cfg, tokenizer=tokenizer, unit=unit, per_step=t.batch_size,
                train=RowBatches(train_rows, t.batch_size, t.seed),
                validation=fixed_rows(val_rows, t.eval_batches,
                                      t.batch_size // cfg.optim.grad_accum))


def _read_jsonl(read):
    return lambda fmt, path: read(path)


def ranking_inputs(cfg: config_lib.Config, run: RunDir, resuming: bool) -> dict:
    """Rankings (or pairs, rankings of 2) for the reward model."""
    tokenizer = align_tokenizer(cfg, run, resuming)
    train, held = split_records(cfg, _read_jsonl(read_rankings))
    cfg = vocab_config(cfg, tokenizer.vocab_size, resuming)
    k = max(len(r["responses"]) for r in train + held)
    rows = [ranking_rows(tokenizer, recs, cfg.model.max_len, k, name)
            for recs, name in ((train, cfg.data.corpus), (held, "validation"))]
    return _row_fields(cfg, tokenizer, *rows, unit="rankings")


def preference_inputs(cfg: config_lib.Config, run: RunDir, resuming: bool) -> dict:
    """Preference pairs for DPO; `start` attaches the reference log-probabilities."""
    tokenizer = align_tokenizer(cfg, run, resuming)
    train, held = split_records(cfg, _read_jsonl(read_pairs))
    cfg = vocab_config(cfg, tokenizer.vocab_size, resuming)
    rows = [pair_rows(tokenizer, recs, cfg.model.max_len, name)
            for recs, name in ((train, cfg.data.corpus), (held, "validation"))]
    fields = _row_fields(cfg, tokenizer, *rows, unit="pairs")
    fields["validation"] = []  # filled by start, once the reference values are known
    micro = cfg.train.batch_size // cfg.optim.grad_accum
    fields["start"] = Reference(run, fields["train"], rows[1], fields["validation"],
                                cfg.train.eval_batches, micro)
    return fields


@partial(jax.jit, static_argnums=0)
def _completion_logps(model, params, batch):
    """Summed answer log-probabilities (N,) of the chosen and rejected rows of a pair batch."""
    out = []
    for side in ("chosen", "rejected"):
        logits = model.apply({"params": params}, batch[f"{side}_inputs"])
        out.append(sequence_logprobs(logits, batch[f"{side}_targets"], batch[f"{side}_mask"])[0])
    return out


def reference_logps(model, params, rows: dict, batch_size: int) -> dict:
    """{"ref_chosen", "ref_rejected"} (N,) float32 of `params` over pair rows, in batches."""
    n = len(rows["chosen_inputs"])
    got = {"ref_chosen": [], "ref_rejected": []}
    for start in range(0, n, batch_size):
        index = np.arange(start, start + batch_size) % n  # the last batch wraps: one shape
        chosen, rejected = jax.device_get(_completion_logps(
            model, params, {k: v[index] for k, v in rows.items()}))
        keep = min(batch_size, n - start)
        got["ref_chosen"].append(chosen[:keep])
        got["ref_rejected"].append(rejected[:keep])
    return {k: np.concatenate(v).astype(np.float32) for k, v in got.items()}


class Reference:
    """DPO's reference: the initial model's answer log-probabilities of every training and
    held-out pair, computed once by start() and saved as the run's reference.npz (read back when
    the run resumes), then served with the pairs as ref_chosen / ref_rejected."""

    def __init__(self, run: RunDir, train: RowBatches, val_rows: dict, validation: list,
                 eval_batches: int, batch_size: int):
        self.path = run.path / REFERENCE_FILE
        self.train, self.val_rows, self.validation = train, val_rows, validation
        self.eval_batches, self.batch_size = eval_batches, batch_size

    def __call__(self, model, params, resuming: bool) -> None:
        if resuming:
            if not self.path.exists():
                raise CheckpointError(f"{self.path} is missing: the reference log-probabilities "
                                      f"of this DPO run are gone; start a new run")
            with np.load(self.path) as f:
                saved = {k: f[k] for k in f.files}
            if len(saved["train_ref_chosen"]) != self.train.n:
                raise CheckpointError(f"{self.path} does not match the run's pairs; start a new "
                                      f"run")
        else:
            saved = {}
            for name, rows in (("train", self.train.arrays), ("val", self.val_rows)):
                for k, v in reference_logps(model, params, rows, self.batch_size).items():
                    saved[f"{name}_{k}"] = v
            buf = io.BytesIO()
            np.savez(buf, **saved)
            atomic_write(self.path, buf.getvalue())
        for k in ("ref_chosen", "ref_rejected"):
            self.train.arrays[k] = saved[f"train_{k}"]
            self.val_rows[k] = saved[f"val_{k}"]
        self.validation[:] = fixed_rows(self.val_rows, self.eval_batches, self.batch_size)
