"""Metadata filters: which chunks a search may return, decided before the top-k is taken.

A filter maps metadata fields to conditions, all of which must hold:

    {"category": "sport"}                        equality
    {"category": ["sport", "tech"]}              one of a set
    {"year": {">=": 2004, "<": 2006}}            a range (also ">", "<=", "==", "!=", "in")

or, as the command line writes them, strings such as "category=sport", "category=sport|tech",
"category!=tech", "year>=2004" (several strings: all must hold). Numbers in strings are compared
as numbers when the field holds numbers. A chunk without the field never matches.

    mask = Filter.parse(["category=sport", "position<2"]).mask(columns)   # bool (n_chunks,)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from jaxllm.errors import ConfigError

OPS = ("==", "!=", ">=", "<=", ">", "<", "in")
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(==|!=|>=|<=|=|>|<)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Filter:
    conditions: tuple  # (field, op, value) with op in OPS; "in" takes a tuple

    @classmethod
    def parse(cls, spec) -> Filter:
        """A Filter from a dict, a "field<op>value" string, a list of those, or None (all)."""
        if spec is None:
            return cls(())
        if isinstance(spec, Filter):
            return spec
        if isinstance(spec, str):
            spec = [spec]
        conditions = []
        if isinstance(spec, dict):
            for field, cond in spec.items():
                if isinstance(cond, dict):
                    for op, value in cond.items():
                        if op not in OPS:
                            raise ConfigError(f"filter on {field!r}: unknown operator {op!r}; "
                                              f"use one of {', '.join(OPS)}")
                        conditions.append((field, op, tuple(value) if op == "in" else value))
                elif isinstance(cond, (list, tuple, set)):
                    conditions.append((field, "in", tuple(cond)))
                else:
                    conditions.append((field, "==", cond))
            return cls(tuple(conditions))
        for s in spec:
            m = _CONDITION.match(s)
            if not m or not m.group(3):
                raise ConfigError(f"filter {s!r} is not FIELD=VALUE, FIELD=A|B, FIELD!=VALUE or "
                                  f"FIELD>=VALUE (also >, <, <=)")
            field, op, value = m.groups()
            op = "==" if op == "=" else op
            if op == "==" and "|" in value:
                conditions.append((field, "in", tuple(value.split("|"))))
            else:
                conditions.append((field, op, value))
        return cls(tuple(conditions))

    def __bool__(self) -> bool:
        return bool(self.conditions)

    def mask(self, columns: dict[str, list]) -> np.ndarray | None:
        """Boolean mask over chunks from metadata columns (field -> one value per chunk, None
        where a chunk lacks the field); None for an empty filter."""
        if not self.conditions:
            return None
        n = len(next(iter(columns.values()))) if columns else 0
        out = np.ones(n, bool)
        for field, op, value in self.conditions:
            if field not in columns:
                raise ConfigError(f"filter field {field!r} is not in the index's metadata; "
                                  f"known fields: {', '.join(sorted(columns))}")
            out &= _condition(field, op, value, columns[field])
        return out


def _typed(field, value, numeric: bool):
    """A filter value in the column's type (strings from the command line become numbers)."""
    if numeric and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"filter on {field!r}: {value!r} is not a number, and the field "
                              f"holds numbers") from None
    if not numeric and not isinstance(value, str):
        return str(value)
    return value


def _condition(field, op, value, column: list) -> np.ndarray:
    present = np.array([v is not None for v in column], bool)
    values = [v for v in column if v is not None]
    numeric = bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                   for v in values)
    col = np.full(len(column), np.nan if numeric else "", object if not numeric else float)
    col[present] = values
    if not numeric:
        col = col.astype(str)
    if op == "in":
        allowed = [_typed(field, v, numeric) for v in value]
        return present & np.isin(col, np.array(allowed, float if numeric else str))
    v = _typed(field, value, numeric)
    if op == "==":
        result = col == v
    elif op == "!=":
        result = col != v
    else:
        if not numeric and not isinstance(v, str):
            raise ConfigError(f"filter on {field!r}: {op} needs a value like the field's")
        result = {">": np.greater, ">=": np.greater_equal, "<": np.less,
                  "<=": np.less_equal}[op](col, v)
    return present & np.asarray(result, bool)
