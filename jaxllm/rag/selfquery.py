"""Self-querying: the model turns a request into {"query": ..., "filter": {...}} over the index's
metadata, decoded under a JSON-schema constraint so that the output always parses and names only
real fields and values.

    sq = self_query(lm, index, "sports stories about injuries")
    sq.query, sq.filter        # "injuries", {"category": "sport"}  (when the model gets it)
    index.search(sq.query, filter=sq.filter)

The schema: "query" a string, "filter" an object with one property per categorical metadata
field (2 to max_values distinct values; chunk bookkeeping such as doc_id and position left
out), each an enum of its values or null (no condition). Anything that goes wrong (no such
field, a budget too small, an empty query) falls back to the request itself and no filter;
the reason is kept in `note`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from jaxllm.errors import JaxllmError
from jaxllm.infer import Constraint, token_texts
from jaxllm.rag.prompt import complete

BOOKKEEPING = ("doc_id", "title", "position", "start", "end")
_TEXTS: dict[int, tuple] = {}  # id(tokenizer) -> (tokenizer, token_texts): built once each


@dataclass
class SelfQuery:
    query: str
    filter: dict = field(default_factory=dict)
    raw: str = ""  # the model's JSON
    note: str = ""  # why it fell back, if it did


def metadata_fields(index, max_values: int = 30) -> dict[str, list]:
    """Categorical metadata fields -> their sorted distinct values."""
    out = {}
    for name, column in index.columns().items():
        if name in BOOKKEEPING:
            continue
        values = {v for v in column if v is not None}
        usable = all(isinstance(v, (int, bool)) or (isinstance(v, str) and v and not (
            set(v) & set('"\\')) and v.isprintable()) for v in values)
        if usable and 2 <= len(values) <= max_values:
            out[name] = sorted(values, key=lambda v: (str(type(v)), v))
    return out


def query_schema(fields: dict[str, list]) -> dict:
    return {"type": "object", "properties": {
        "query": {"type": "string"},
        "filter": {"type": "object", "properties": {
            name: {"enum": [None, *values]} for name, values in fields.items()}}}}


def messages(request: str, fields: dict[str, list]) -> list[dict]:
    """Instructions naming the fields and values, one worked example, then the request."""
    listing = "; ".join(f"{f} (one of: {', '.join(map(str, v))})" for f, v in fields.items())
    first, values = next(iter(fields.items()))
    example = {"query": "record profits", "filter": {f: (values[0] if f == first else None)
                                                     for f in fields}}
    system = ("Turn the user's request into JSON: a short search query, and a filter over these "
              f"metadata fields: {listing}. Use null for a field the request does not mention.")
    return [{"role": "system", "content": system},
            {"role": "user", "content": f"{values[0]} stories about record profits"},
            {"role": "assistant", "content": json.dumps(example)},
            {"role": "user", "content": request}]


def self_query(lm, index, request: str, *, fields: dict[str, list] | None = None,
               max_new_tokens: int | None = None) -> SelfQuery:
    """The request as a structured query (see the module docstring); never raises for what the
    model produces. max_new_tokens: by default 32 more than the shortest valid JSON needs."""
    fields = metadata_fields(index) if fields is None else fields
    if not fields:
        return SelfQuery(request, note="the index has no categorical metadata fields")
    tok = lm.tokenizer
    if id(tok) not in _TEXTS:
        _TEXTS[id(tok)] = (tok, token_texts(tok))
    try:
        constraint = Constraint.from_schema(query_schema(fields), _TEXTS[id(tok)][1])
        budget = constraint.min_tokens + 32 if max_new_tokens is None else max_new_tokens
        reply = complete(lm, messages(request, fields), max_new_tokens=budget,
                         constraint=constraint)
        raw = lm.tokenizer.decode(reply.ids)
        data = json.loads(raw)
    except (JaxllmError, ValueError) as e:
        return SelfQuery(request, note=f"no structured query: {e}")
    chosen = {k: v for k, v in data["filter"].items() if v is not None}
    query = " ".join(data["query"].split()) or request
    return SelfQuery(query, chosen, raw, "" if chosen else "no filter named")
