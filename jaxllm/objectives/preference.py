"""Learning from preferences: sequence log-probabilities, DPO (and IPO, hinge, label smoothing),
and the Bradley-Terry reward-model loss over rankings.

    logps, counts = sequence_logprobs(logits, targets, mask)       # (B,), (B,)
    losses, chosen_r, rejected_r = dpo_loss(pc, pr, rc, rr, beta=0.1, kind="sigmoid")
    loss, sums = bradley_terry(scores, ranks)                      # scores, ranks (B, K)

Definitions (TRL's DPOTrainer.dpo_loss, Rafailov et al. 2023, Azar et al. 2023):
with the margin  m = (log pi(y_w) - log pi(y_l)) - (log ref(y_w) - log ref(y_l)),

    sigmoid  -(1 - eps) log sigma(beta m) - eps log sigma(-beta m)   (eps: label smoothing, cDPO)
    ipo      (m - 1 / (2 beta))^2, on log-probabilities averaged over the completion's tokens
    hinge    max(0, 1 - beta m)                                       (RSO / SLiC)

and the implicit rewards beta (log pi(y) - log ref(y)) of the chosen and rejected completions.
Log-probabilities are summed over the completion's tokens only (`mask`), never the prompt's.

The reward model (InstructGPT, Ouyang et al. 2022) scores every candidate of a ranking; each
ranking contributes the mean over its pairs (i better than j) of -log sigma(s_i - s_j), so the
loss depends on the ranks, not on the order candidates are listed in. Its score of prompt x and
response y is the scalar head at y's last token, v(x, y), plus w log pi(y | x) with w =
align.reward_logprob: the response's summed log-probability under the reward model's own
language-model head (DPO's implicit reward with the reference dropped, as SimPO, Meng et al.
2024, drops it; SimPO also divides by the length), which carries what the network "knows" about the answer but a head on the last token may not
read (experiments/RESULTS.md); w = 0 is the scalar head alone.

The `*_objective(model, ...)` functions wrap these for the trainer: (params, batch, rng) ->
(loss, sums), with sums named as the causal objective's (loss_sum, correct, tokens, where
"tokens" counts pairs or rankings) plus `<name>_total` sums that the trainer logs as means.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxllm.objectives.causal_lm import token_cross_entropy

DPO_LOSSES = ("sigmoid", "ipo", "hinge")


def sequence_logprobs(logits, targets, mask):
    """(sum of log p(target) over the tokens where mask is set (B,), the number of them (B,)).
    logits (B, T, V), targets (B, T), mask (B, T) (1 on completion tokens)."""
    ce, _ = token_cross_entropy(logits, targets)  # (B, T) = -log p(target)
    mask = mask.astype(jnp.float32)
    return -jnp.sum(ce * mask, axis=-1), jnp.sum(mask, axis=-1)


def dpo_loss(chosen, rejected, ref_chosen, ref_rejected, *, beta: float, kind: str = "sigmoid",
             label_smoothing: float = 0.0):
    """Per-pair losses (B,) and the implicit rewards of the chosen and rejected completions.

    The four inputs are sequence log-probabilities (B,) of the policy and of the reference (for
    IPO already divided by the completions' lengths)."""
    if kind not in DPO_LOSSES:
        raise ValueError(f"dpo loss {kind!r}: expected one of {', '.join(DPO_LOSSES)}")
    margin = (chosen - rejected) - (ref_chosen - ref_rejected)
    if kind == "sigmoid":
        losses = (-(1.0 - label_smoothing) * jax.nn.log_sigmoid(beta * margin)
                  - label_smoothing * jax.nn.log_sigmoid(-beta * margin))
    elif kind == "ipo":
        losses = jnp.square(margin - 1.0 / (2.0 * beta))
    else:
        losses = jax.nn.relu(1.0 - beta * margin)
    chosen_reward = beta * jax.lax.stop_gradient(chosen - ref_chosen)
    rejected_reward = beta * jax.lax.stop_gradient(rejected - ref_rejected)
    return losses, chosen_reward, rejected_reward


def ranking_pairs(ranks):
    """(B, K, K) float: 1 where candidate i is ranked strictly better than j (a smaller rank);
    rank -1 marks an absent candidate (rankings shorter than K)."""
    present = ranks >= 0
    better = ranks[:, :, None] < ranks[:, None, :]
    return (better & present[:, :, None] & present[:, None, :]).astype(jnp.float32)


def bradley_terry(scores, ranks):
    """(mean loss over rankings, sums) of scores (B, K) for candidates ranked by ranks (B, K).

    sums: loss_sum (sum of per-ranking losses), tokens (rankings), correct (per-ranking
    fraction of pairs scored in the right order, summed) and kendall_tau_total (Kendall's tau
    between scores and ranks per ranking, summed; with ranks free of ties this is
    (concordant - discordant) / pairs)."""
    scores = scores.astype(jnp.float32)
    pairs = ranking_pairs(ranks)  # (B, K, K)
    diff = scores[:, :, None] - scores[:, None, :]  # s_i - s_j
    n_pairs = jnp.maximum(jnp.sum(pairs, axis=(1, 2)), 1.0)  # (B,)
    per_ranking = jnp.sum(-jax.nn.log_sigmoid(diff) * pairs, axis=(1, 2)) / n_pairs
    right = jnp.sum((diff > 0) * pairs, axis=(1, 2)) / n_pairs
    wrong = jnp.sum((diff < 0) * pairs, axis=(1, 2)) / n_pairs
    has_pairs = (jnp.sum(pairs, axis=(1, 2)) > 0).astype(jnp.float32)
    n = jnp.maximum(jnp.sum(has_pairs), 1.0)
    loss = jnp.sum(per_ranking * has_pairs) / n
    sums = {"loss_sum": jnp.sum(per_ranking * has_pairs), "tokens": jnp.sum(has_pairs),
            "correct": jnp.sum(right * has_pairs),
            "kendall_tau_total": jnp.sum((right - wrong) * has_pairs)}
    return loss, sums


# --- trainer objectives ---------------------------------------------------------------------

def _apply(model, params, inputs, rng, head):
    train = rng is not None
    return model.apply({"params": params}, inputs, train=train, head=head,
                       rngs={"dropout": rng} if train else None)


def dpo_objective(model, *, beta: float, kind: str = "sigmoid", label_smoothing: float = 0.0):
    """DPO for the trainer. batch: chosen_inputs/_targets/_mask and rejected_inputs/_targets/
    _mask (B, T) (mask 1 on completion tokens), ref_chosen and ref_rejected (B,): the reference
    model's summed completion log-probabilities, computed once before training.

    sums: loss_sum, tokens (pairs), correct (pairs whose chosen reward is the larger),
    chosen_reward_total, rejected_reward_total, margin_total (reward margin)."""

    def loss_fn(params, batch, rng=None):
        B = batch["chosen_inputs"].shape[0]
        inputs = jnp.concatenate([batch["chosen_inputs"], batch["rejected_inputs"]])  # (2B, T)
        targets = jnp.concatenate([batch["chosen_targets"], batch["rejected_targets"]])
        mask = jnp.concatenate([batch["chosen_mask"], batch["rejected_mask"]])
        logps, counts = sequence_logprobs(_apply(model, params, inputs, rng, "lm"), targets, mask)
        ref = jnp.concatenate([batch["ref_chosen"], batch["ref_rejected"]]).astype(jnp.float32)
        if kind == "ipo":  # IPO compares average per-token log-probabilities
            logps, ref = logps / jnp.maximum(counts, 1.0), ref / jnp.maximum(counts, 1.0)
        losses, chosen_r, rejected_r = dpo_loss(logps[:B], logps[B:], ref[:B], ref[B:],
                                                beta=beta, kind=kind,
                                                label_smoothing=label_smoothing)
        n = jnp.asarray(B, jnp.float32)
        sums = {"loss_sum": jnp.sum(losses), "tokens": n,
                "correct": jnp.sum(chosen_r > rejected_r),
                "chosen_reward_total": jnp.sum(chosen_r),
                "rejected_reward_total": jnp.sum(rejected_r),
                "margin_total": jnp.sum(chosen_r - rejected_r)}
        return jnp.mean(losses), sums

    return loss_fn


def reward_scores(model, params, inputs, start, last, *, logprob_weight: float = 0.0,
                  rng=None):
    """The reward model's score of each row: its value head at the row's last real token, plus
    logprob_weight times the response's summed log-probability (tokens start..last) under the
    model's language-model head. inputs (N, T) right-padded token ids; start (N,) the index of
    the response's first token, last (N,) of the row's last one."""
    take = lambda a: jnp.take_along_axis(a, last[:, None], axis=1)[:, 0]  # noqa: E731
    if logprob_weight == 0.0:
        return take(_apply(model, params, inputs, rng, "value")).astype(jnp.float32)
    logits, values = _apply(model, params, inputs, rng, "both")
    positions = jnp.arange(inputs.shape[1])[None]
    mask = (positions >= start[:, None] - 1) & (positions < last[:, None])  # predicts start..last
    logps, _ = sequence_logprobs(logits, jnp.roll(inputs, -1, axis=1), mask)
    return take(values).astype(jnp.float32) + logprob_weight * logps


def reward_objective(model, logprob_weight: float = 0.0):
    """The reward model for the trainer: Bradley-Terry over all pairs of each ranking.
    batch: inputs (B, K, T) prompt + candidate, right-padded; start and last (B, K) the index of
    each candidate's first and last token; ranks (B, K)."""

    def loss_fn(params, batch, rng=None):
        ranks = batch["ranks"]
        B, K, T = batch["inputs"].shape
        scores = reward_scores(model, params, batch["inputs"].reshape(B * K, T),
                               batch["start"].reshape(B * K), batch["last"].reshape(B * K),
                               logprob_weight=logprob_weight, rng=rng)
        return bradley_terry(scores.reshape(B, K), ranks)

    return loss_fn
