"""Hugging Face tokenizer.json <-> PipelineTokenizer: the interchange format.

`from_hf(d)` reads the components jaxllm implements (listed in `_unsupported` errors) and refuses
the rest with one line naming the component, rather than encoding differently from HF.
`to_hf(tok)` writes a file that `tokenizers.Tokenizer.from_file` loads and that encodes the same.

Padding and truncation settings in a file are not applied by `encode` (jaxllm batches and pads
elsewhere); they are kept and written back. (The all-MiniLM-L6-v2 file pads to 128: compare ids
with HF only after `tok.no_padding()`.)
"""

from __future__ import annotations

from typing import Any

from jaxllm.errors import DataError
from jaxllm.text import models
from jaxllm.text.tokenizer import PipelineTokenizer
from jaxllm.text.pretokenize import Bert, ByteLevel, Metaspace, Sequence, SplitNewlines, Whitespace


def _unsupported(what: str, value: Any) -> DataError:
    text = repr(value)
    if len(text) > 120:
        text = text[:117] + "..."
    return DataError(f"tokenizer.json {what} {text} is not supported by jaxllm; supported: "
                     f"BPE/WordPiece/WordLevel/Unigram models, BertNormalizer, ByteLevel, "
                     f"Digits+ByteLevel, Whitespace, Metaspace and BertPreTokenizer")


def _req(d: dict, key: str, what: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise DataError(f"tokenizer.json {what} has no {key!r} entry")
    return d[key]


# --- reading --------------------------------------------------------------------------------


def _read_model(m: Any):
    kind = _req(m, "type", "model") if isinstance(m, dict) else None
    if kind == "BPE" or (kind is None and isinstance(m, dict) and "merges" in m):
        for key in ("continuing_subword_prefix", "end_of_word_suffix", "dropout"):
            if m.get(key) not in (None, ""):
                raise _unsupported(f"BPE {key}", m[key])
        merges = []
        for i, item in enumerate(_req(m, "merges", "BPE model")):
            pair = item.split(" ") if isinstance(item, str) else item
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str)
                                                                      for p in pair)):
                raise DataError(f"tokenizer.json BPE merge #{i} {item!r} is not two tokens")
            merges.append((pair[0], pair[1]))
        return models.BPE(_vocab(m), merges, unk_token=m.get("unk_token"),
                          byte_fallback=bool(m.get("byte_fallback", False)),
                          fuse_unk=bool(m.get("fuse_unk", False)),
                          ignore_merges=bool(m.get("ignore_merges", False)))
    if kind == "WordPiece":
        return models.WordPiece(_vocab(m), m.get("unk_token", "[UNK]"),
                                m.get("continuing_subword_prefix", "##"),
                                int(m.get("max_input_chars_per_word", 100)))
    if kind == "WordLevel":
        return models.WordLevel(_vocab(m), m.get("unk_token", "<unk>"))
    if kind == "Unigram":
        from jaxllm.text.unigram import Unigram
        pieces = _req(m, "vocab", "Unigram model")
        try:
            pieces = [(str(p), float(s)) for p, s in pieces]
        except (TypeError, ValueError):
            raise DataError("tokenizer.json Unigram vocab must be a list of [piece, score] "
                            "pairs") from None
        return Unigram(pieces, unk_id=m.get("unk_id"),
                       byte_fallback=bool(m.get("byte_fallback", False)))
    raise _unsupported("model", kind)


def _vocab(m: dict) -> dict[str, int]:
    vocab = _req(m, "vocab", "model")
    if not isinstance(vocab, dict) or not all(isinstance(k, str) and isinstance(v, int)
                                              for k, v in vocab.items()):
        raise DataError("tokenizer.json model vocab must map token strings to integer ids")
    return vocab


def _read_normalizer(n: Any):
    if n is None:
        return None
    if isinstance(n, dict) and n.get("type") == "BertNormalizer":
        return Bert(lowercase=bool(n.get("lowercase", True)), strip_accents=n.get("strip_accents"),
                    clean_text=bool(n.get("clean_text", True)),
                    handle_chinese_chars=bool(n.get("handle_chinese_chars", True)))
    if isinstance(n, dict) and n.get("type") == "Sequence" and not n.get("normalizers"):
        return None
    raise _unsupported("normalizer", n)


def _read_pre_tokenizer(p: Any):
    t = p.get("type") if isinstance(p, dict) else None
    if t == "ByteLevel":
        if p.get("use_regex", True) is not True:
            raise _unsupported("pre_tokenizer", p)
        return ByteLevel(add_prefix_space=bool(p.get("add_prefix_space", False)))
    if t == "Sequence":
        seq = p.get("pretokenizers") or []
        if (len(seq) == 2 and seq[0].get("type") == "Digits"
                and seq[0].get("individual_digits") is True
                and seq[1].get("type") == "ByteLevel" and seq[1].get("use_regex", True) is True):
            return ByteLevel(add_prefix_space=bool(seq[1].get("add_prefix_space", False)),
                             individual_digits=True)
        if len(seq) == 1:
            return _read_pre_tokenizer(seq[0])
        if len(seq) == 2 and seq[0] == SplitNewlines().to_hf():
            return Sequence([SplitNewlines(), _read_pre_tokenizer(seq[1])])
    if t == "Whitespace":
        return Whitespace()
    if t == "Metaspace":
        scheme = p.get("prepend_scheme")
        if scheme is None:  # files before tokenizers 0.19
            scheme = "always" if p.get("add_prefix_space", True) else "never"
        return Metaspace(p.get("replacement", "▁"), scheme, bool(p.get("split", True)))
    if t == "BertPreTokenizer":
        return Bert()
    raise _unsupported("pre_tokenizer", p)


def _read_decoder(d: Any, pre) -> str:
    t = d.get("type") if isinstance(d, dict) else None
    if d is None:
        return "byte_level" if isinstance(pre, ByteLevel) else "words"
    if t == "ByteLevel":
        return "byte_level"
    if t == "WordPiece":
        return "wordpiece"
    if t == "Metaspace" or (t == "Sequence" and hasattr(pre, "replacement")):
        return "metaspace"
    raise _unsupported("decoder", d)


def _read_template(p: Any, special: dict[str, int]):
    if p is None:
        return None
    t = p.get("type") if isinstance(p, dict) else None
    if t == "ByteLevel":
        return None
    if t == "BertProcessing":
        cls, sep = p["cls"][0], p["sep"][0]
        return [cls, "$A", sep], [cls, "$A", sep, "$B", sep]
    if t == "TemplateProcessing":
        def items(seq):
            out = []
            for item in seq:
                if "SpecialToken" in item:
                    out.append(item["SpecialToken"]["id"])
                elif "Sequence" in item:
                    out.append("$" + item["Sequence"]["id"])
                else:
                    raise _unsupported("post_processor item", item)
            return out
        for name, spec in (p.get("special_tokens") or {}).items():
            if len(spec.get("ids", [])) == 1:
                special.setdefault(name, spec["ids"][0])
        return items(p["single"]), items(p["pair"])
    if t == "Sequence":
        procs = [q for q in p.get("processors", []) if q.get("type") != "ByteLevel"]
        if not procs:
            return None
        if len(procs) == 1:
            return _read_template(procs[0], special)
    raise _unsupported("post_processor", p)


def from_hf(d: Any, chat_template: str | None = None) -> PipelineTokenizer:
    if not isinstance(d, dict) or "model" not in d:
        raise DataError('not a tokenizer.json: expected a JSON object with a "model" entry '
                        '(as Hugging Face tokenizers writes)')
    model = _read_model(d["model"])
    normalizer = _read_normalizer(d.get("normalizer"))
    pre = d.get("pre_tokenizer")
    if pre is None:
        raise _unsupported("pre_tokenizer", None)
    pre = _read_pre_tokenizer(pre)
    special: dict[str, int] = {}
    for tok in d.get("added_tokens") or []:
        try:
            special[tok["content"]] = int(tok["id"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"tokenizer.json added token {tok!r} needs 'content' and 'id'") \
                from None
    template = _read_template(d.get("post_processor"), special)
    extra = {k: d[k] for k in ("truncation", "padding") if d.get(k) is not None}
    return PipelineTokenizer(model, pre, _read_decoder(d.get("decoder"), pre), normalizer,
                             special, template, chat_template=chat_template, hf_extra=extra)


# --- writing --------------------------------------------------------------------------------


def _template_items(seq: list[str]) -> list[dict]:
    out = []
    for item in seq:
        if item in ("$A", "$B"):
            out.append({"Sequence": {"id": item[1], "type_id": 0 if item == "$A" else 1}})
        else:
            out.append({"SpecialToken": {"id": item, "type_id": 0}})
    return out


def to_hf(tok: PipelineTokenizer) -> dict[str, Any]:
    pre = tok.pre_tokenizer
    normalizer = tok.normalizer.to_hf_normalizer() if tok.normalizer is not None else None
    if tok.decoder == "byte_level":
        decoder = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                   "use_regex": True}
    elif tok.decoder == "wordpiece":
        decoder = {"type": "WordPiece", "prefix": tok.model.prefix, "cleanup": True}
    elif tok.decoder == "metaspace":
        steps = [{"type": "Replace", "pattern": {"String": pre.replacement}, "content": " "},
                 {"type": "ByteFallback"}, {"type": "Fuse"}]
        if pre.prepend_scheme != "never":
            steps.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
        decoder = {"type": "Sequence", "decoders": steps}
    else:
        decoder = None
    post = None
    if tok.template is not None:
        single, pair = tok.template
        names = [t for t in [*single, *pair] if t not in ("$A", "$B")]
        post = {"type": "TemplateProcessing", "single": _template_items(single),
                "pair": _template_items(pair),
                "special_tokens": {t: {"id": t, "ids": [tok.special_tokens[t]], "tokens": [t]}
                                   for t in dict.fromkeys(names)}}
    elif tok.byte_level:
        post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                "use_regex": True}
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}
             for t, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])]
    return {"version": "1.0", "truncation": tok.hf_extra.get("truncation"),
            "padding": tok.hf_extra.get("padding"), "added_tokens": added,
            "normalizer": normalizer, "pre_tokenizer": pre.to_hf(), "post_processor": post,
            "decoder": decoder, "model": tok.model.to_hf()}
