"""Constrained decoding: the regex automaton agrees with Python's re; every token path the
automaton allows ends, within its budget, in JSON that parses and validates (jsonschema as the
reference) for hypothesis-generated schemas, over a vocabulary of multi-character tokens and
through generate with a sampling model; unsatisfiable constraints are refused in one line."""

import json
import re

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxllm.config import ModelConfig
from jaxllm.errors import ConfigError
from jaxllm.infer import Constraint, generate, token_texts
from jaxllm.infer.constrain import CharDFA, parse_regex
from jaxllm.models.decoder import Decoder
from jaxllm.text import ByteTokenizer

PATTERNS = [r"(yes|no)", r"a*b+c?", r"[a-c]{2,3}x", r"\d+(\.\d+)?", r"(ab|a)(bc|c)*",
            r"[^a]b.", r"x{0,}y{1}", r"(?:a|b|)c", r"[a\-]+"]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(PATTERNS), st.text(alphabet="abcxy-1.\n", max_size=6))
def test_regex_automaton_matches_like_python_re(pattern, text):
    assert CharDFA(parse_regex(pattern)).matches(text) == bool(re.fullmatch(pattern, text))


# --- JSON schemas -------------------------------------------------------------------------------

NAMES = st.text(alphabet="abcd", min_size=1, max_size=3)
SCALARS = st.one_of(st.text(alphabet="ab xy", max_size=4), st.integers(-20, 300),
                    st.floats(-10, 10, allow_nan=False, allow_infinity=False).map(
                        lambda x: round(x, 2)), st.booleans(), st.none())
LEAVES = st.one_of(st.sampled_from([{"type": t} for t in
                                    ("string", "number", "integer", "boolean", "null")]),
                   st.lists(SCALARS, min_size=1, max_size=4).map(lambda v: {"enum": v}))
SCHEMAS = st.recursive(LEAVES, lambda inner: st.one_of(
    st.dictionaries(NAMES, inner, min_size=1, max_size=3).map(
        lambda p: {"type": "object", "properties": p, "required": list(p)}),
    st.lists(inner, min_size=1, max_size=2).map(lambda o: {"anyOf": o})), max_leaves=5)

# Multi-character tokens that cross the grammar's boundaries ('", "', '{"'), and every single
# character the schemas above can need, so that any of them can be satisfied.
PIECES = ['{"', '"}', '": ', '", "', ', "', '{', '}', '"', ':', ': ', ', ', ',', ' ', 'true',
          'tr', 'ue', 'false', 'fa', 'null', 'nu', 'll', '-', '.', '0', '12', '.5', 'ab', 'a"',
          'x y', 'bc', 'zzz', '\\', '\n']
VOCAB = PIECES + sorted(set("abcdefghijklmnopqrstuvwxyz0123456789ABC") - set(PIECES))


def walk(constraint, budget, rng):
    """A random path through the token automaton as generate takes it: at each step any token
    whose next state can still accept within the steps left; stop (or end) when accepting."""
    state, text = 0, ""
    for i in range(budget):
        nxt = constraint.table[state]
        ok = np.flatnonzero((nxt >= 0) & (constraint.dist[np.maximum(nxt, 0)] <= budget - i - 1))
        if constraint.accept[state] and (not len(ok) or rng.random() < 0.2):
            return text
        assert len(ok), "a state the walk reached has no way on"
        tok = int(rng.choice(ok))
        text, state = text + VOCAB[tok], int(nxt[tok])
    assert constraint.accept[state]
    return text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SCHEMAS, st.integers(0, 2**31 - 1))
def test_every_allowed_token_path_is_valid_json_for_the_schema(schema, seed):
    constraint = Constraint.from_schema(schema, VOCAB)
    rng = np.random.default_rng(seed)
    for budget in (constraint.min_tokens, constraint.min_tokens + 12):
        text = walk(constraint, budget, rng)
        jsonschema.validate(json.loads(text), schema)


@pytest.fixture(scope="module")
def byte_lm():
    """A tiny random decoder over bytes: sampling from it is close to random text."""
    import jax

    from jaxllm.models import init_params

    cfg = ModelConfig(vocab_size=256, max_len=160, n_layers=1, n_heads=2, d_model=32,
                      scan_unroll=1)
    rng = np.random.default_rng(0)  # random weights of the model's shapes (traced, not run)
    params = jax.tree_util.tree_map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(
        np.float32), jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0))[0]))
    return Decoder(cfg), params, token_texts(ByteTokenizer())


# Every generate call below has the same static arguments (3 rows of 3 tokens, 64 new tokens,
# temperature 1, stop token "\n"): one compiled loop per size of constraint table.
def sample(byte_lm, constraint, seed):
    model, params, _ = byte_lm
    out = generate(model, params, [[1, 2, 3]] * 3, max_new_tokens=64, seed=seed,
                   constraint=constraint, stop_tokens=(10,))
    return [bytes(row).decode() for row in out]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(SCHEMAS, st.integers(0, 1000))
def test_generate_under_a_schema_always_yields_valid_json(byte_lm, schema, seed):
    """Sampled at temperature 1 from a random model (it never wants JSON): 3 rows, each parses
    and validates; a row ends with the stop token or by itself when nothing can extend an
    accepted text, or when the budget runs out (the last tokens are then forced to close)."""
    constraint = Constraint.from_schema(schema, byte_lm[2])
    if constraint.min_tokens > 64:
        return
    for text in sample(byte_lm, constraint, seed):
        jsonschema.validate(json.loads(text), schema)


def test_generate_under_a_regex_with_a_stop_token(byte_lm):
    """The stop token is allowed only once the text matches: every sampled row matches."""
    pattern = r"(red|green|blue)( and (red|green|blue)){0,2}"
    for seed in range(3):
        for text in sample(byte_lm, Constraint.from_regex(pattern, byte_lm[2]), seed):
            assert re.fullmatch(pattern, text)


@pytest.mark.parametrize("make, match", [
    (lambda t: Constraint.from_schema({"enum": []}, t), r"schema\.enum=\[\]: no value can"),
    (lambda t: Constraint.from_regex("caf\u00e9", t), "cannot be satisfied"),
    (lambda t: Constraint.from_schema({"type": "array"}, t), r"schema\.type='array'"),
    (lambda t: Constraint.from_regex("a(b", t), "expected \\)|ends too early"),
])
def test_unsatisfiable_or_unsupported_constraints_are_refused_in_one_line(make, match):
    with pytest.raises(ConfigError, match=match) as e:
        make(token_texts(ByteTokenizer()))
    assert "\n" not in str(e.value)


def test_a_budget_too_small_for_the_constraint_is_refused(byte_lm):
    model, params, texts = byte_lm
    c = Constraint.from_regex("abcdef", texts)
    with pytest.raises(ConfigError, match="needs at least 6 tokens"):
        generate(model, params, [[1]], max_new_tokens=5, constraint=c)
