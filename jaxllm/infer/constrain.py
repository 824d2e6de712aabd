"""Constrained decoding: a regular grammar or a JSON-schema subset turned into a token mask.

    c = Constraint.from_schema({"type": "object", "properties": {
            "category": {"enum": ["sport", "tech", None]}, "query": {"type": "string"}}},
        token_texts(tokenizer))
    generate(model, params, prompts, constraint=c, stop_tokens=...)   # output always parses
    Constraint.from_regex(r"(yes|no)", token_texts(tokenizer))

How it works, top to bottom:
  1. the grammar as a small regular-expression tree (`parse_regex`, or `schema_regex` for a
     schema: compact JSON, properties in the schema's order, separators ", " and ": ");
  2. a Thompson NFA over characters, determinised lazily (a DFA state is a set of NFA states,
     each step memoised per character);
  3. the token automaton: from each DFA state reachable by whole tokens, one walk of the
     vocabulary's trie gives the state after every token that keeps the text a prefix of some
     match; `table[state, token]` is that state or -1 (not allowed);
  4. `dist[state]`: the fewest tokens from that state to an accepting one. generate allows a
     token only if the state it leads to can still accept within the tokens left, so the output
     is complete (accepted) by max_new_tokens whatever the model prefers.

A stop token may end the output in an accepting state; an accepting state that no token can
extend ends the row by itself. The JSON subset: objects ("properties", all emitted, in order),
"enum" (any JSON scalars), "const", strings (any characters but quote, backslash and control
characters), "number", "integer", "boolean", "null", and "anyOf"/"oneOf" of those.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass

import numpy as np

from jaxllm.errors import ConfigError

UNREACHABLE = 1 << 30  # dist of a state that can never reach an accepting one


# ---- 1. the grammar as a regular-expression tree ----------------------------------------------
# ("lit", text) | ("set", chars, negated) | ("cat", [nodes]) | ("alt", [nodes])
# | ("rep", node, least, most or None)

def lit(text: str):
    return ("lit", text)


def cat(*nodes):
    return ("cat", list(nodes))


def alt(*nodes):
    return ("alt", list(nodes))


def rep(node, least=0, most=None):
    return ("rep", node, least, most)


ANY_STRING_CHAR = ("set", frozenset('"\\') | frozenset(map(chr, range(32))), True)
DIGIT = ("set", frozenset("0123456789"), False)
NONZERO = ("set", frozenset("123456789"), False)
INTEGER = cat(rep(lit("-"), 0, 1), alt(lit("0"), cat(NONZERO, rep(DIGIT))))
NUMBER = cat(INTEGER, rep(cat(lit("."), rep(DIGIT, 1)), 0, 1))
STRING = cat(lit('"'), rep(ANY_STRING_CHAR), lit('"'))


def schema_regex(schema, where: str = "schema"):
    """The regular-expression tree of the compact JSON texts a schema (the subset in the module
    docstring) accepts; a ConfigError naming the place for anything outside the subset."""
    if not isinstance(schema, dict):
        raise ConfigError(f"{where}={schema!r}: a schema must be a JSON object (dict)")
    if "enum" in schema or "const" in schema:
        values = schema["enum"] if "enum" in schema else [schema["const"]]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.enum={values!r}: no value can satisfy an empty enum; "
                              f"list at least one value")
        for v in values:
            if isinstance(v, (dict, list)) or (isinstance(v, str) and (
                    set(v) & ANY_STRING_CHAR[1])):
                raise ConfigError(f"{where}.enum value {v!r}: only numbers, booleans, null and "
                                  f"strings without quotes, backslashes or control characters")
        return alt(*(lit(json.dumps(v)) for v in values))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = schema[key]
            if not isinstance(options, list) or not options:
                raise ConfigError(f"{where}.{key}={options!r}: give a non-empty list of schemas")
            return alt(*(schema_regex(s, f"{where}.{key}[{i}]") for i, s in enumerate(options)))
    kind = schema.get("type")
    if kind == "string":
        return STRING
    if kind == "number":
        return NUMBER
    if kind == "integer":
        return INTEGER
    if kind == "boolean":
        return alt(lit("true"), lit("false"))
    if kind == "null":
        return lit("null")
    if kind == "object":
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise ConfigError(f"{where}.properties={props!r}: must map names to schemas")
        parts = [lit("{")]
        for i, (name, sub) in enumerate(props.items()):
            if set(name) & ANY_STRING_CHAR[1]:
                raise ConfigError(f"{where}: property name {name!r} has a quote, backslash or "
                                  f"control character; rename it")
            parts += [lit((", " if i else "") + json.dumps(name) + ": "),
                      schema_regex(sub, f"{where}.properties.{name}")]
        return cat(*parts, lit("}"))
    raise ConfigError(f"{where}.type={kind!r}: the constraint subset takes object, string, "
                      f"number, integer, boolean, null, enum, const, anyOf, oneOf")


def parse_regex(pattern: str):
    """A regular-expression tree from a pattern: literals, escapes (\\d \\w \\s and escaped
    characters), classes [a-z] [^...], the dot (any character but a newline), groups (...),
    alternation |, and the repeats * + ? {m} {m,} {m,n}. The whole text must match."""
    pos = 0

    def error(msg):
        return ConfigError(f"regex {pattern!r} at position {pos}: {msg}")

    def peek():
        return pattern[pos] if pos < len(pattern) else None

    def take():
        nonlocal pos
        if pos >= len(pattern):
            raise error("ends too early")
        pos += 1
        return pattern[pos - 1]

    classes = {"d": (frozenset("0123456789"), False),
               "w": (frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789_"), False),
               "s": (frozenset(" \t\n\r\f\v"), False)}

    def escape():
        c = take()
        if c in classes:
            return ("set", *classes[c])
        return lit({"n": "\n", "t": "\t", "r": "\r"}.get(c, c))

    def char_class():
        negated = peek() == "^"
        if negated:
            take()
        chars = set()
        first = True
        while peek() != "]" or first:
            first = False
            c = take()
            if c == "\\":
                node = escape()
                if node[0] == "set":
                    chars |= node[1]
                    continue
                c = node[1]
            if peek() == "-" and pos + 1 < len(pattern) and pattern[pos + 1] != "]":
                take()
                end = take()
                if ord(end) < ord(c):
                    raise error(f"range {c}-{end} is backwards")
                chars |= {chr(x) for x in range(ord(c), ord(end) + 1)}
            else:
                chars.add(c)
        take()
        return ("set", frozenset(chars), negated)

    def atom():
        c = take()
        if c == "(":
            if pattern.startswith("?:", pos):
                take(), take()
            node = alternation()
            if take() != ")":
                raise error("expected )")
            return node
        if c == "[":
            return char_class()
        if c == ".":
            return ("set", frozenset("\n"), True)
        if c == "\\":
            return escape()
        if c in "*+?{|)":
            raise error(f"nothing to repeat or an unexpected {c!r}")
        return lit(c)

    def repeat(node):
        nonlocal pos
        while peek() is not None and peek() in "*+?{":
            c = take()
            if c == "{":
                end = pattern.find("}", pos)
                body = pattern[pos:end] if end >= 0 else ""
                least, _, most = body.partition(",")
                if end < 0 or not least.isdigit() or (most and not most.isdigit()):
                    raise error("a repeat is {m}, {m,} or {m,n}")
                pos = end + 1
                hi = int(least) if "," not in body else (int(most) if most else None)
                if hi is not None and hi < int(least):
                    raise error(f"repeat {{{body}}} has max < min")
                node = rep(node, int(least), hi)
            else:
                node = rep(node, *{"*": (0, None), "+": (1, None), "?": (0, 1)}[c])
        return node

    def sequence():
        items = []
        while peek() is not None and peek() not in "|)":
            items.append(repeat(atom()))
        return cat(*items)

    def alternation():
        options = [sequence()]
        while peek() == "|":
            take()
            options.append(sequence())
        return options[0] if len(options) == 1 else alt(*options)

    tree = alternation()
    if pos != len(pattern):
        raise error("unbalanced )")
    return tree


# ---- 2. NFA and the lazily determinised DFA over characters ---------------------------------

class _NFA:
    """Thompson construction: per state, epsilon targets and (chars, negated, target) edges."""

    def __init__(self, tree):
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple]] = []
        self.start = self._new()
        self.accept = self._build(tree, self.start)

    def _new(self) -> int:
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1

    def _build(self, node, start: int) -> int:
        kind = node[0]
        if kind == "lit":
            for ch in node[1]:
                nxt = self._new()
                self.edges[start].append((frozenset(ch), False, nxt))
                start = nxt
            return start
        if kind == "set":
            end = self._new()
            self.edges[start].append((node[1], node[2], end))
            return end
        if kind == "cat":
            for sub in node[1]:
                start = self._build(sub, start)
            return start
        if kind == "alt":
            end = self._new()
            for sub in node[1]:
                s = self._new()
                self.eps[start].append(s)
                self.eps[self._build(sub, s)].append(end)
            return end
        _, sub, least, most = node  # rep
        for _ in range(least):
            start = self._build(sub, start)
        if most is None:  # a loop: start -> body -> start, leave from start
            s = self._new()
            self.eps[start].append(s)
            self.eps[self._build(sub, s)].append(start)
            end = self._new()
            self.eps[start].append(end)
            return end
        end = self._new()
        for _ in range(most - least):  # each optional copy may be skipped to the end
            self.eps[start].append(end)
            start = self._build(sub, start)
        self.eps[start].append(end)
        return end

    def closure(self, states) -> frozenset:
        out, todo = set(states), list(states)
        while todo:
            for t in self.eps[todo.pop()]:
                if t not in out:
                    out.add(t)
                    todo.append(t)
        return frozenset(out)


class CharDFA:
    """The NFA's subset construction, built only as far as it is walked."""

    def __init__(self, tree):
        self.nfa = _NFA(tree)
        self.sets = [self.nfa.closure([self.nfa.start])]
        self.ids = {self.sets[0]: 0}
        self.memo: dict[tuple[int, str], int] = {}

    def step(self, state: int, ch: str) -> int:
        """The state after one more character, or -1 when no match can continue."""
        key = (state, ch)
        if key in self.memo:
            return self.memo[key]
        targets = [t for s in self.sets[state] for chars, negated, t in self.nfa.edges[s]
                   if (ch in chars) != negated]
        if not targets:
            out = -1
        else:
            subset = self.nfa.closure(targets)
            out = self.ids.get(subset)
            if out is None:
                out = self.ids[subset] = len(self.sets)
                self.sets.append(subset)
        self.memo[key] = out
        return out

    def accepting(self, state: int) -> bool:
        return self.nfa.accept in self.sets[state]

    def matches(self, text: str) -> bool:
        s = 0
        for ch in text:
            s = self.step(s, ch)
            if s < 0:
                return False
        return self.accepting(s)


# ---- 3./4. the token automaton ----------------------------------------------------------------

def token_texts(tokenizer) -> list[str | None]:
    """The text each token id adds to the output, or None for tokens a constraint never allows:
    special tokens, and tokens that are not whole characters on their own (a byte of a UTF-8
    sequence, which decodes to U+FFFD) or empty."""
    special = set(getattr(tokenizer, "special_tokens", {}).values())
    out = []
    for i in range(tokenizer.vocab_size):
        text = None if i in special else tokenizer.decode([i])
        out.append(text if text and "\ufffd" not in text else None)
    return out


def _trie(texts):
    """The vocabulary as a trie: children[node] = {char: node}, ends[node] = token ids."""
    children, ends = [{}], [[]]
    for tid, text in enumerate(texts):
        if not text:
            continue
        node = 0
        for ch in text:
            nxt = children[node].get(ch)
            if nxt is None:
                nxt = children[node][ch] = len(children)
                children.append({})
                ends.append([])
            node = nxt
        ends[node].append(tid)
    return children, ends


@dataclass
class Constraint:
    """A token automaton: table (S, V) int32 next state or -1; accept (S,) bool; dist (S,)
    int32 fewest tokens to an accepting state (UNREACHABLE if none). State 0 is the start."""
    table: np.ndarray
    accept: np.ndarray
    dist: np.ndarray
    description: str = "constraint"

    @classmethod
    def from_tree(cls, tree, texts: list[str | None], description: str = "constraint"):
        dfa = CharDFA(tree)
        children, ends = _trie(texts)
        rows, row_of, order = [], {0: 0}, deque([0])
        while order:  # breadth first over the DFA states reachable by whole tokens
            state = order.popleft()
            row = np.full(len(texts), -1, np.int64)
            stack = [(0, state)]
            while stack:
                node, s = stack.pop()
                for ch, child in children[node].items():
                    s2 = dfa.step(s, ch)
                    if s2 < 0:
                        continue
                    for tid in ends[child]:
                        if s2 not in row_of:
                            row_of[s2] = len(row_of)
                            order.append(s2)
                        row[tid] = row_of[s2]
                    stack.append((child, s2))
            rows.append(row)
        table = np.stack(rows).astype(np.int32)
        states = sorted(row_of, key=row_of.get)
        accept = np.array([dfa.accepting(s) for s in states])
        dist = _distances(table, accept)
        if dist[0] >= UNREACHABLE:
            raise ConfigError(f"{description} cannot be satisfied: no sequence of this "
                              f"vocabulary's tokens matches it; change the constraint")
        return cls(table, accept, dist, description)

    @classmethod
    def from_schema(cls, schema, texts: list[str | None]) -> Constraint:
        return cls.from_tree(schema_regex(schema), texts, f"schema {json.dumps(schema)[:80]}")

    @classmethod
    def from_regex(cls, pattern: str, texts: list[str | None]) -> Constraint:
        return cls.from_tree(parse_regex(pattern), texts, f"regex {pattern!r}")

    @property
    def min_tokens(self) -> int:
        return int(self.dist[0])

    def padded(self, n_states: int, vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(table, accept, dist) padded to n_states rows (unreachable) and vocab columns (-1)."""
        s, v = self.table.shape
        table = np.full((n_states, vocab), -1, np.int32)
        table[:s, :min(v, vocab)] = self.table[:, :vocab]
        accept = np.zeros(n_states, bool)
        accept[:s] = self.accept
        dist = np.full(n_states, UNREACHABLE, np.int32)
        dist[:s] = self.dist
        return table, accept, dist


def _distances(table: np.ndarray, accept: np.ndarray) -> np.ndarray:
    """Fewest tokens from each state to an accepting state (breadth first, backwards)."""
    n = len(table)
    preds: list[set[int]] = [set() for _ in range(n)]
    for s in range(n):
        for t in np.unique(table[s][table[s] >= 0]).tolist():
            preds[t].add(s)
    dist = np.full(n, UNREACHABLE, np.int64)
    dist[accept] = 0
    queue = deque(np.flatnonzero(accept).tolist())
    while queue:
        t = queue.popleft()
        for s in preds[t]:
            if dist[s] == UNREACHABLE:
                dist[s] = dist[t] + 1
                queue.append(s)
    return dist.astype(np.int32)
