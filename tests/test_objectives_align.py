"""Alignment objectives against hand-written numpy formulas on fixed inputs.

References: TRL's DPOTrainer.dpo_loss (sigmoid with label smoothing, IPO, hinge) and
PPOTrainer (KL-penalised rewards, GAE, clipped policy and value losses); tunix's GRPO learner
(group advantages with ddof=1 and 1e-4, k3 KL, per-sequence token means); InstructGPT's
Bradley-Terry loss over all pairs of a ranking. Each numpy reference below is written from those
definitions with explicit loops, independently of the jax code.
"""

import math
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings, strategies as st

from jaxllm.config import ModelConfig
from jaxllm.models.decoder import Decoder
from jaxllm.objectives import policy, preference

from helpers import random_params

RTOL = 1e-5


def log_sigmoid(x):
    return -np.log1p(np.exp(-x))


def np_log_softmax(logits):
    logits = logits.astype(np.float64)
    m = logits.max(-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))


def test_sequence_logprobs_sum_completion_tokens_only():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 6, 9)).astype(np.float32)
    targets = rng.integers(0, 9, (2, 6))
    mask = np.array([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]], np.float32)
    got, counts = preference.sequence_logprobs(jnp.asarray(logits), jnp.asarray(targets),
                                               jnp.asarray(mask))
    lp = np_log_softmax(logits)
    want = [sum(lp[b, t, targets[b, t]] for t in range(6) if mask[b, t]) for b in range(2)]
    np.testing.assert_allclose(got, want, rtol=RTOL)
    np.testing.assert_array_equal(counts, [3, 5])


# fixed log-probabilities of 4 pairs: policy chosen/rejected, reference chosen/rejected
PC = np.array([-12.0, -30.5, -7.25, -18.0])
PR = np.array([-14.0, -29.0, -9.0, -18.5])
RC = np.array([-13.0, -31.0, -7.0, -17.0])
RR = np.array([-13.5, -30.0, -8.0, -19.5])


@pytest.mark.parametrize("kind,beta,smoothing", [("sigmoid", 0.1, 0.0), ("sigmoid", 0.5, 0.2),
                                                 ("ipo", 0.1, 0.0), ("hinge", 0.3, 0.0)])
def test_dpo_losses_match_trl_definitions(kind, beta, smoothing):
    losses, cr, rr = preference.dpo_loss(*(jnp.asarray(x) for x in (PC, PR, RC, RR)), beta=beta,
                                         kind=kind, label_smoothing=smoothing)
    want = []
    for pc, pr, rc, rrf in zip(PC, PR, RC, RR):
        m = (pc - pr) - (rc - rrf)
        if kind == "sigmoid":
            want.append(-(1 - smoothing) * log_sigmoid(beta * m)
                        - smoothing * log_sigmoid(-beta * m))
        elif kind == "ipo":
            want.append((m - 1 / (2 * beta)) ** 2)
        else:
            want.append(max(0.0, 1 - beta * m))
    np.testing.assert_allclose(losses, want, rtol=RTOL)
    np.testing.assert_allclose(cr, beta * (PC - RC), rtol=RTOL)
    np.testing.assert_allclose(rr, beta * (PR - RR), rtol=RTOL)


TINY = ModelConfig(vocab_size=23, max_len=8, n_layers=1, n_heads=2, d_model=16,
                   attention="reference", value_head=True)


def _pair_batch(rng, B=3, T=8, V=23):
    batch = {}
    for side in ("chosen", "rejected"):
        tok = rng.integers(1, V, (B, T + 1)).astype(np.int32)
        mask = np.zeros((B, T), np.float32)
        for b in range(B):  # prompt of 2-3 tokens, then a completion of varying length
            mask[b, 2 + b % 2: T - b] = 1
        batch.update({f"{side}_inputs": tok[:, :-1], f"{side}_targets": tok[:, 1:],
                      f"{side}_mask": mask})
    batch["ref_chosen"] = rng.normal(-20, 2, B).astype(np.float32)
    batch["ref_rejected"] = rng.normal(-20, 2, B).astype(np.float32)
    return batch


_logits = jax.jit(lambda p, x: Decoder(TINY).apply({"params": p}, x))


@pytest.mark.parametrize("kind", ["sigmoid", "ipo"])
def test_dpo_objective_on_model_logits(kind):
    """The trainer objective: completion-only sums, IPO on length-normalised log-probs."""
    params = random_params(TINY)
    batch = _pair_batch(np.random.default_rng(1))
    beta = 0.2
    loss, sums = jax.jit(preference.dpo_objective(Decoder(TINY), beta=beta, kind=kind))(
        params, batch)
    logp = {}
    for side in ("chosen", "rejected"):
        lp = np_log_softmax(np.asarray(_logits(params, batch[f"{side}_inputs"])))
        tok = np.take_along_axis(lp, batch[f"{side}_targets"][..., None], -1)[..., 0]
        mask = batch[f"{side}_mask"]
        logp[side] = (tok * mask).sum(1)
        ref = batch[f"ref_{side}"].astype(np.float64)
        if kind == "ipo":
            logp[side], ref = logp[side] / mask.sum(1), ref / mask.sum(1)
        logp["ref_" + side] = ref
    m = (logp["chosen"] - logp["rejected"]) - (logp["ref_chosen"] - logp["ref_rejected"])
    want = (m - 1 / (2 * beta)) ** 2 if kind == "ipo" else -log_sigmoid(beta * m)
    np.testing.assert_allclose(float(loss), want.mean(), rtol=1e-4)
    cr = beta * (logp["chosen"] - logp["ref_chosen"])
    rr = beta * (logp["rejected"] - logp["ref_rejected"])
    np.testing.assert_allclose(float(sums["chosen_reward_total"]), cr.sum(), rtol=1e-4)
    assert float(sums["correct"]) == (cr > rr).sum() and float(sums["tokens"]) == 3


def np_bradley_terry(scores, ranks):
    losses, accs, taus = [], [], []
    for s, r in zip(scores, ranks):
        pairs = [(i, j) for i in range(len(r)) for j in range(len(r))
                 if r[i] >= 0 and r[j] >= 0 and r[i] < r[j]]
        losses.append(np.mean([-log_sigmoid(s[i] - s[j]) for i, j in pairs]))
        accs.append(np.mean([s[i] > s[j] for i, j in pairs]))
        keep = r >= 0
        taus.append(scipy.stats.kendalltau(-r[keep], s[keep]).statistic)
    return np.mean(losses), np.sum(accs), np.sum(taus)


def test_bradley_terry_over_all_pairs_matches_numpy_and_kendall_tau():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(3, 4)).astype(np.float32)
    ranks = np.array([[0, 1, 2, 3], [2, 0, 3, 1], [1, -1, 0, 2]])  # the last: 3 candidates
    loss, sums = preference.bradley_terry(jnp.asarray(scores), jnp.asarray(ranks))
    want_loss, want_correct, want_tau = np_bradley_terry(scores.astype(np.float64), ranks)
    np.testing.assert_allclose(float(loss), want_loss, rtol=RTOL)
    np.testing.assert_allclose(float(sums["correct"]), want_correct, rtol=RTOL)
    np.testing.assert_allclose(float(sums["kendall_tau_total"]), want_tau, rtol=RTOL)
    assert float(sums["tokens"]) == 3


_bt = jax.jit(preference.bradley_terry)


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 6).flatmap(lambda k: st.tuples(
    st.permutations(list(range(k)) + [-1] * (6 - k)), st.permutations(range(6)),
    st.lists(st.floats(-5, 5), min_size=6, max_size=6))))
def test_bradley_terry_invariant_to_listing_order(args):
    """Rankings of 2-6 candidates (rank -1: absent), listed in any order: the same loss."""
    ranks, order, scores = (np.asarray(a) for a in args)
    a = _bt(jnp.asarray([scores], jnp.float32), jnp.asarray([ranks]))
    b = _bt(jnp.asarray([scores[order]], jnp.float32), jnp.asarray([ranks[order]]))
    np.testing.assert_allclose(float(a[0]), float(b[0]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(float(a[1]["correct"]), float(b[1]["correct"]), atol=1e-6)


# --- PPO --------------------------------------------------------------------------------------

def _rollout(rng, B=3, T=7):
    mask = np.zeros((B, T), np.float32)
    for b in range(B):  # completions start after a prompt and may end before T (padding)
        mask[b, 2 + b: T - (b % 2)] = 1
    f = lambda: rng.normal(size=(B, T)).astype(np.float32)  # noqa: E731 (a short maker)
    return mask, f


def np_gae(rewards, values, mask, gamma, lam):
    adv = np.zeros_like(rewards, np.float64)
    for b in range(rewards.shape[0]):
        idx = np.flatnonzero(mask[b])  # the completion's positions, in order
        next_a = next_v = 0.0
        for t in idx[::-1]:
            delta = rewards[b, t] + gamma * next_v - values[b, t]
            next_a = delta + gamma * lam * next_a
            next_v = values[b, t]
            adv[b, t] = next_a
    return adv, (adv + values) * mask


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5)])
def test_gae_matches_numpy(gamma, lam):
    mask, f = _rollout(np.random.default_rng(3))
    rewards, values = f() * mask, f()
    adv, ret = policy.gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(mask),
                          gamma=gamma, lam=lam)
    want_adv, want_ret = np_gae(rewards, values, mask, gamma, lam)
    np.testing.assert_allclose(adv, want_adv, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ret, want_ret, rtol=1e-5, atol=1e-6)


def test_kl_penalized_rewards_and_whitening():
    mask, f = _rollout(np.random.default_rng(4))
    logps, ref = f(), f()
    scores = np.array([1.0, -0.5, 2.0], np.float32)
    got = policy.kl_penalized_rewards(*(jnp.asarray(x) for x in (scores, logps, ref, mask)), 0.05)
    want = -0.05 * (logps - ref) * mask
    for b in range(3):
        want[b, np.flatnonzero(mask[b])[-1]] += scores[b]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    x = f()
    vals = x[mask > 0].astype(np.float64)
    white = policy.whiten(jnp.asarray(x), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(white)[mask > 0],
                               (vals - vals.mean()) / np.sqrt(vals.var(ddof=1) + 1e-8), rtol=1e-4)


def test_ppo_clipped_policy_and_value_losses_match_numpy():
    mask, f = _rollout(np.random.default_rng(5))
    logps, adv, values, returns = f(), f(), f(), f()
    old = logps + 0.4 * f()  # ratios spread across the clip range
    new_values = values + 0.5 * f()
    pg, frac = policy.ppo_policy_loss(*(jnp.asarray(x) for x in (logps, old, adv, mask)),
                                      clip=0.2)
    vf = policy.ppo_value_loss(*(jnp.asarray(x) for x in (new_values, values, returns, mask)),
                               clip=0.2)
    pg_terms, clip_terms, vf_terms = [], [], []
    for b, t in zip(*np.nonzero(mask)):
        r = math.exp(logps[b, t] - old[b, t])
        a = adv[b, t]
        pg_terms.append(max(-a * r, -a * min(max(r, 0.8), 1.2)))
        clip_terms.append(-a * min(max(r, 0.8), 1.2) > -a * r)
        v_clip = min(max(new_values[b, t], values[b, t] - 0.2), values[b, t] + 0.2)
        vf_terms.append(max((new_values[b, t] - returns[b, t]) ** 2,
                            (v_clip - returns[b, t]) ** 2))
    np.testing.assert_allclose(float(pg), np.mean(pg_terms), rtol=1e-5)
    np.testing.assert_allclose(float(frac), np.mean(clip_terms), rtol=1e-6)
    assert 0 < float(frac) < 1  # the fixture exercises both branches
    np.testing.assert_allclose(float(vf), 0.5 * np.mean(vf_terms), rtol=1e-5)


# --- GRPO ------------------------------------------------------------------------------------

def test_group_advantages_match_numpy():
    scores = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 3.0, 1.0, 2.0, 0.0])
    got = policy.group_advantages(jnp.asarray(scores), 4)
    want = []
    for g in scores.reshape(3, 4):
        want += list((g - g.mean()) / (g.std(ddof=1) + 1e-4))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(st.sampled_from([2, 3, 4, 6]), st.lists(st.floats(-10, 10), min_size=12, max_size=12))
def test_group_advantages_are_zero_mean_per_group(g, scores):
    adv = np.asarray(jax.jit(policy.group_advantages, static_argnums=1)(
        jnp.asarray(scores, jnp.float32), g))
    np.testing.assert_allclose(adv.reshape(-1, g).mean(1), 0.0, atol=1e-4)


def test_grpo_loss_matches_numpy():
    mask, f = _rollout(np.random.default_rng(6))
    logps, ref = f(), f()
    old = logps + 0.3 * f()
    adv = np.array([1.2, -0.4, 0.7], np.float32)
    loss, kl = policy.grpo_loss(*(jnp.asarray(x) for x in (logps, old, ref, adv, mask)),
                                clip=0.2, kl_coef=0.04)
    per_seq, kls = [], []
    for b in range(3):
        terms = []
        for t in np.flatnonzero(mask[b]):
            r = math.exp(logps[b, t] - old[b, t])
            d = ref[b, t] - logps[b, t]
            k = math.exp(d) - d - 1
            kls.append(k)
            terms.append(-min(r * adv[b], min(max(r, 0.8), 1.2) * adv[b]) + 0.04 * k)
        per_seq.append(np.mean(terms))
    np.testing.assert_allclose(float(loss), np.mean(per_seq), rtol=1e-5)
    np.testing.assert_allclose(float(kl), np.mean(kls), rtol=1e-5)


def test_reward_score_is_the_value_head_at_the_last_token():
    """With the value head set to the tied embedding's row k (bias 0), the value of every
    position is the logit of token k there; the score reads the row's last real token, and the
    padding after it changes nothing."""
    params = dict(random_params(TINY))
    k = 5
    params["value"] = {"kernel": params["embed"]["embedding"][k][:, None],
                       "bias": jnp.zeros((1,))}
    model = Decoder(TINY)
    rng = np.random.default_rng(7)
    inputs = rng.integers(1, 23, (4, 8)).astype(np.int32)
    start, last = np.array([2, 1, 3, 6]), np.array([7, 3, 5, 6])
    score = jax.jit(lambda p, x, s, i: preference.reward_scores(model, p, x, s, i))
    got = score(params, jnp.asarray(inputs), jnp.asarray(start), jnp.asarray(last))
    logits = np.asarray(_logits(params, inputs))
    np.testing.assert_allclose(got, logits[np.arange(4), last, k], rtol=1e-5, atol=1e-6)
    padded = np.where(np.arange(8)[None] > last[:, None], 0, inputs)
    np.testing.assert_allclose(score(params, jnp.asarray(padded), jnp.asarray(start),
                                     jnp.asarray(last)), got, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_reward_score_adds_the_responses_log_probability(weight):
    """align.reward_logprob=w: the score is the value head at the last token plus w times the
    summed log p(token) of the response's tokens start..last (each predicted by the position
    before it), in numpy from the model's logits; padding after the last token changes
    nothing."""
    params = dict(random_params(TINY, scale=0.3))
    model = Decoder(TINY)
    rng = np.random.default_rng(8)
    inputs = rng.integers(1, 23, (4, 8)).astype(np.int32)
    start, last = np.array([2, 1, 3, 6]), np.array([7, 3, 5, 6])
    score = jax.jit(lambda p, x, s, i: preference.reward_scores(model, p, x, s, i,
                                                                logprob_weight=weight))
    got = np.asarray(score(params, jnp.asarray(inputs), jnp.asarray(start), jnp.asarray(last)))
    logp = np_log_softmax(np.asarray(_logits(params, inputs), np.float64))
    values = np.asarray(model.apply({"params": params}, jnp.asarray(inputs), head="value"))
    want = [values[b, last[b]] + weight * sum(logp[b, t - 1, inputs[b, t]]
                                               for t in range(start[b], last[b] + 1))
            for b in range(4)]
    assert abs(want[0] - values[0, last[0]]) > 1.0  # the log-probability term counts
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    padded = np.where(np.arange(8)[None] > last[:, None], 0, inputs)
    np.testing.assert_allclose(score(params, jnp.asarray(padded), jnp.asarray(start),
                                     jnp.asarray(last)), got, rtol=1e-5, atol=1e-5)


def test_rl_reference_is_the_model_before_lora():
    """train.rollout.without_lora of a LoRA policy (B factors nonzero, so the policy differs)
    scores as the plain parameters it started from, in the policy's own tree structure (the
    reference shares the policy's compiled program)."""
    from jaxllm import models
    from jaxllm.train.rollout import without_lora
    from jaxllm.transforms import lora

    base = dict(random_params(TINY))
    axes = models.abstract_params(TINY)[1]
    policy_params = lora.init(base, lora.targets("attn"), rank=2, alpha=4.0, axes=axes)
    leaves, tree = jax.tree_util.tree_flatten(policy_params, is_leaf=lambda x: isinstance(
        x, lora.LoraArray))
    rng = np.random.default_rng(3)
    policy_params = jax.tree_util.tree_unflatten(tree, [
        replace(x, lora_b=jnp.asarray(rng.normal(size=x.lora_b.shape), jnp.float32))
        if isinstance(x, lora.LoraArray) else x for x in leaves])
    reference = without_lora(policy_params)
    assert (jax.tree_util.tree_structure(reference)
            == jax.tree_util.tree_structure(policy_params))
    inputs = np.random.default_rng(4).integers(1, 23, (2, 8)).astype(np.int32)
    want = np.asarray(_logits(base, inputs))
    np.testing.assert_allclose(np.asarray(_logits(reference, inputs)), want, rtol=0, atol=1e-6)
    assert np.abs(np.asarray(_logits(policy_params, inputs)) - want).max() > 1e-3


@pytest.mark.parametrize("reward, want", [("match", [1.0, 0.0, 0.0, 0.0]),
                                          ("near", [1.0, 0.25, 0.1, 0.0])])
def test_rollout_scores_completions_with_the_named_verifier(reward, want):
    """align.reward=match|near scores each decoded completion (cut at <|im_end|>) against its
    record's answer; solved counts exact answers only."""
    from jaxllm.config import get_preset
    from jaxllm.text import ByteTokenizer
    from jaxllm.train.rollout import Rollouts

    cfg = get_preset("sft-smollm2")
    cfg = replace(cfg, train=replace(cfg.train, objective="grpo", batch_size=4),
                  align=replace(cfg.align, reward=reward, group_size=4))
    tok = ByteTokenizer()
    records = [{"prompt": "What is 3 + 4?", "answer": "7"}] * 4
    texts = ["7.<|im_end|>junk", "8", "3<|im_end|>", "seven"]
    rollouts = Rollouts(cfg, tok, records, [[1]] * 4, [], [])
    scores, solved = rollouts.scores(records, [[1]] * 4, [tok.encode(t) for t in texts])
    np.testing.assert_allclose(scores, want, rtol=1e-6)
    np.testing.assert_array_equal(solved, [1.0, 0.0, 0.0, 0.0])


def test_rollout_with_a_reward_model_still_counts_right_answers():
    """With a reward model (align.reward=RUN_DIR) the reward is its score of prompt + completion
    + <|im_end|>, and solved (val_accuracy) still counts completions that are the record's
    answer; a prompt without an answer counts as unsolved instead of stopping the run."""
    from jaxllm.config import get_preset
    from jaxllm.text import ByteTokenizer
    from jaxllm.train.rollout import Rollouts

    cfg = get_preset("sft-smollm2")
    cfg = replace(cfg, train=replace(cfg.train, objective="ppo", batch_size=4))
    tok = ByteTokenizer()
    records = [{"prompt": "What is 3 + 4?", "answer": "7"}] * 3 + [{"prompt": "Say hi."}]
    texts = ["7.<|im_end|>junk", "8", "7", "hi"]
    rollouts = Rollouts(cfg, tok, records, [[1]] * 4, [], [])
    seen = []

    def reward_model(prompts, responses):
        seen.append((prompts, responses))
        return np.array([0.5, -1.0, 2.0, 3.0])
    rollouts.reward_model = reward_model
    completions = [tok.encode(t) for t in texts]
    scores, solved = rollouts.scores(records, [[1]] * 4, completions)
    np.testing.assert_allclose(scores, [0.5, -1.0, 2.0, 3.0])
    np.testing.assert_array_equal(solved, [1.0, 0.0, 1.0, 0.0])
    end = tok.encode("<|im_end|>")
    assert seen == [([[1]] * 4, [c + end for c in completions])]
