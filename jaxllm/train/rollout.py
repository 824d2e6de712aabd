"""PPO and GRPO inputs: prompts, rollouts sampled from the policy, rewards, and evaluation.

    fields = rollout_inputs(cfg, run, resuming)     # -> train.inputs.Inputs(**fields)
    batch = fields["rollout"](params, next(fields["train"]), step)   # what the step trains on

Each rollout takes train.batch_size / G prompts (G = align.group_size for GRPO, 1 for PPO),
samples G completions of each with jaxllm.infer.generate (align.temperature, at most
align.max_new_tokens, stopping at <|im_end|>), scores them, and scores every completion token
under the current policy (old log-probs, PPO's values) and the reference model. The reference
is the initial model without a second copy for LoRA runs (the same tree with each LoRA B
factor zeroed); a full fine-tuning run keeps a frozen copy of its initial parameters.
Advantages: GRPO's group-relative ones, or PPO's GAE over KL-penalised rewards,
whitened. A rollout is trained on for align.updates_per_rollout steps (PPO's epochs, GRPO's mu),
so the ratio to the rollout's policy moves away from 1 and the clip acts. Rollout n samples with
seed (train.seed, n), so a resumed run repeats an uninterrupted one when it resumes at a rollout
boundary; resumed in the middle of a rollout's updates, it samples that rollout anew from the
restored parameters.

Rewards: align.reward=match compares the completion with the prompt file's answer
(data/preferences.py match_reward: a verifiable task); align.reward=near is match with partial
credit for a wrong number near the answer (near_reward); a run directory names a reward model
(train.objective=reward) whose score of prompt + completion is the reward.

Evaluation is greedy decoding of the held-out prompts: val_reward (the mean reward), val_accuracy
(the fraction whose completion is the record's answer, by match_reward, whatever gives the
reward: 0 for prompts without an answer) and val_loss = -val_reward.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm import config as config_lib
from jaxllm.data import RowBatches
from jaxllm.data.chat import encode_answer
from jaxllm.data.preferences import match_reward, near_reward, read_prompts
from jaxllm.errors import ConfigError, DataError
from jaxllm.infer.generate import generate
from jaxllm.objectives import policy
from jaxllm.objectives.preference import reward_scores
from jaxllm.text.chat import ANSWER_END
from jaxllm.train.align_inputs import align_tokenizer, prompt_ids, split_records
from jaxllm.train.params import build_params, vocab_config
from jaxllm.train.run import RunDir, init_from_params, load_run
from jaxllm.transforms import lora
from jaxllm.transforms.lora import LoraArray


def without_lora(params):
    """The model before fine-tuning: every LoRA leaf with its B factor zeroed (x W + x A 0 = x W
    exactly). The tree keeps the policy's structure, so scoring it reuses the policy's compiled
    program instead of compiling a second one."""
    return jax.tree_util.tree_map(
        lambda x: replace(x, lora_b=jnp.zeros_like(x.lora_b)) if isinstance(x, LoraArray) else x,
        params, is_leaf=lambda x: isinstance(x, LoraArray))


@partial(jax.jit, static_argnums=(0, 1))
def _token_stats(model, with_values: bool, params, inputs, targets):
    """log p(target) (B, T) under params, and the value head's values (B, T) if asked."""
    if with_values:
        logits, values = model.apply({"params": params}, inputs, head="both")
        return policy.token_logprobs(logits, targets), values
    return policy.token_logprobs(model.apply({"params": params}, inputs), targets), None


@partial(jax.jit, static_argnames=("gamma", "lam", "kl_coef"))
def _ppo_advantages(scores, logps, ref_logps, values, mask, *, gamma, lam, kl_coef):
    rewards = policy.kl_penalized_rewards(scores, logps, ref_logps, mask, kl_coef)
    adv, returns = policy.gae(rewards, values, mask, gamma=gamma, lam=lam)
    return policy.whiten(adv, mask), returns


VERIFIERS = {"match": match_reward, "near": near_reward}  # align.reward names; else a run dir


class RewardModel:
    """A trained reward run's score of prompt + completion token ids."""

    def __init__(self, path: str, tokenizer):
        run = load_run(path)
        if not run.config.model.value_head:
            raise ConfigError(f"align.reward={path!r}: that run has no scalar head; name a run "
                              f"trained with --objective reward, or use align.reward=match|near")
        if run.tokenizer.vocab_size != tokenizer.vocab_size:
            raise ConfigError(f"align.reward={path!r}: its tokenizer ({run.tokenizer.vocab_size}"
                              f" ids) is not the policy's ({tokenizer.vocab_size}); train the "
                              f"reward model from the same base")
        self.model, self.params, self.max_len = run.model, run.params, run.config.model.max_len
        weight = run.config.align.reward_logprob
        self._score = jax.jit(lambda p, x, s, i: reward_scores(self.model, p, x, s, i,
                                                               logprob_weight=weight))

    def __call__(self, prompts: list[list[int]], responses: list[list[int]]) -> np.ndarray:
        """Scores of prompt + response ids (cut at the reward model's context)."""
        inputs = np.zeros((len(prompts), self.max_len), np.int32)
        start, last = np.zeros(len(prompts), np.int32), np.zeros(len(prompts), np.int32)
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            seq = (prompt + response)[:self.max_len]
            inputs[i, :len(seq)], last[i] = seq, len(seq) - 1
            start[i] = min(len(prompt), last[i])
        return np.asarray(self._score(self.params, inputs, start, last))


class Rollouts:
    """Samples, scores and assembles the batch of each step (see the module docstring)."""

    def __init__(self, cfg: config_lib.Config, tokenizer, records: list[dict],
                 prompts: list[list[int]], held: list[dict], held_prompts: list[list[int]]):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.records, self.prompts = records, prompts
        self.held, self.held_prompts = held, held_prompts
        a = cfg.align
        self.group = a.group_size if cfg.train.objective == "grpo" else 1
        self.ppo = cfg.train.objective == "ppo"
        stop = tokenizer.encode(ANSWER_END)
        self.stops = tuple(stop) if len(stop) == 1 else ()  # else the text is cut at it
        self.reward_model = None if a.reward in VERIFIERS else RewardModel(a.reward, tokenizer)
        self.model = self.reference = None
        self._cached = (None, None)  # (rollout number, batch)
        # the prompts of rollout n: rows of a seeded permutation per epoch, as any batch
        self.index = RowBatches({"index": np.arange(len(records))},
                                cfg.train.batch_size // self.group, cfg.train.seed)

    # --- set-up and rewards -------------------------------------------------------------------

    def start(self, model, params, resuming: bool) -> None:
        """Keep the model, and the reference: LoRA's frozen bases, else a copy of the initial
        parameters (rebuilt from train.init_from at the first rollout of a resumed run)."""
        self.model = model
        if not self.cfg.train.lora and not resuming:
            self.reference = jax.tree_util.tree_map(jnp.copy, params)

    def _reference(self, params):
        if self.cfg.train.lora:
            return without_lora(params)
        if self.reference is None:
            self.reference = build_params(self.cfg, jax.random.PRNGKey(self.cfg.train.seed),
                                          init_from_params(self.cfg))
        return self.reference

    def _texts(self, completions: list[list[int]]) -> list[str]:
        return [self.tokenizer.decode(c).split(ANSWER_END)[0] for c in completions]

    def scores(self, records, prompts, completions) -> tuple[np.ndarray, np.ndarray]:
        """(rewards, solved) of completions (lists of ids, without the stop token); solved is
        1 where a record's answer is matched exactly (0 for records without one)."""
        texts = self._texts(completions)
        solved = np.array([match_reward(r, t) if "answer" in r else 0.0
                           for r, t in zip(records, texts)], np.float32)
        if self.reward_model is not None:
            end = encode_answer(self.tokenizer, "")
            scores = self.reward_model(prompts, [c + end for c in completions])
            return scores.astype(np.float32), solved
        name = self.cfg.align.reward
        if not all("answer" in r for r in records):
            raise DataError(f"align.reward={name} needs an 'answer' in every prompt record; add "
                            "them or name a reward-model run (align.reward=RUN_DIR)")
        scores = np.array([VERIFIERS[name](r, t) for r, t in zip(records, texts)], np.float32)
        return scores, solved

    def _generate(self, params, prompts, *, temperature: float, seed: int):
        return generate(self.model, lora.merge(params), prompts,
                        max_new_tokens=self.cfg.align.max_new_tokens, temperature=temperature,
                        stop_tokens=self.stops, seed=seed, vocab_size=self.tokenizer.vocab_size)

    # --- a training batch -----------------------------------------------------------------------

    def example(self) -> dict:
        """A batch of the shapes and dtypes rollouts produce (to compile the step)."""
        B, T = self.cfg.train.batch_size, self.cfg.model.max_len
        out = {k: np.zeros((B, T), np.int32) for k in ("inputs", "targets")}
        names = ["mask", "old_logps", "ref_logps"] + (
            ["old_values", "returns", "advantages"] if self.ppo else [])
        out.update({k: np.zeros((B, T), np.float32) for k in names})
        out.update({k: np.zeros((B,), np.float32) for k in ("scores", "solved")
                    + (() if self.ppo else ("advantages",))})
        return out

    def __call__(self, params, batch, step: int) -> dict:
        """The batch of `step` (the loop's own batch only counts steps): a new rollout every
        align.updates_per_rollout steps."""
        number = step // self.cfg.align.updates_per_rollout
        if self._cached[0] != number:
            index = self.index.batch(number)["index"]
            self._cached = (number, self._rollout(params, index, number))
        return self._cached[1]

    def _rollout(self, params, index: np.ndarray, number: int) -> dict:
        cfg, G = self.cfg, self.group
        T = cfg.model.max_len
        records = [self.records[i] for i in index for _ in range(G)]
        prompts = [self.prompts[i] for i in index for _ in range(G)]
        completions = self._generate(params, prompts, temperature=cfg.align.temperature,
                                     seed=cfg.train.seed * 1_000_003 + number)
        scores, solved = self.scores(records, prompts, completions)
        B = len(prompts)
        tokens = np.zeros((B, T + 1), np.int32)
        mask = np.zeros((B, T), np.float32)
        for i, (p, c) in enumerate(zip(prompts, completions)):
            if self.stops and len(c) < cfg.align.max_new_tokens:
                c = c + [self.stops[0]]  # it stopped: the stop token is part of the answer
            seq = (p + c)[:T + 1]
            tokens[i, :len(seq)] = seq
            mask[i, len(p) - 1:len(seq) - 1] = 1.0
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        old, values = _token_stats(self.model, self.ppo, params, inputs, targets)
        # the same program as the policy's (PPO's reference values are computed and dropped)
        ref, _ = _token_stats(self.model, self.ppo, self._reference(params), inputs, targets)
        out = {"inputs": inputs, "targets": targets, "mask": mask, "scores": scores,
               "solved": solved}
        if self.ppo:
            a = cfg.align
            adv, returns = _ppo_advantages(scores, old, ref, values, mask, gamma=a.gamma,
                                           lam=a.gae_lambda, kl_coef=a.kl_coef)
            out.update(old_values=values, returns=returns, advantages=adv)
        else:
            out["advantages"] = policy.group_advantages(scores, G)
        out.update(old_logps=old, ref_logps=ref)
        return {k: np.asarray(v, np.int32 if k in ("inputs", "targets") else np.float32)
                for k, v in jax.device_get(out).items()}

    # --- evaluation ----------------------------------------------------------------------------

    def evaluate(self, params) -> dict:
        """Greedy answers to the held-out prompts: mean reward, fraction solved."""
        completions = self._generate(params, self.held_prompts, temperature=0.0, seed=0)
        scores, solved = self.scores(self.held, self.held_prompts, completions)
        reward = float(np.mean(scores))
        return {"loss": -reward, "reward": reward, "accuracy": float(np.mean(solved))}


def rollout_inputs(cfg: config_lib.Config, run: RunDir, resuming: bool) -> dict:
    """PPO / GRPO: prompt rows (indices into the prompt file), rollouts, greedy evaluation."""
    tokenizer = align_tokenizer(cfg, run, resuming)
    train, held = split_records(cfg, lambda fmt, path: read_prompts(path))
    cfg = vocab_config(cfg, tokenizer.vocab_size, resuming)
    room, T = cfg.align.max_new_tokens, cfg.model.max_len
    prompts = [prompt_ids(tokenizer, r, T, room, f"{cfg.data.corpus} record {i + 1}")
               for i, r in enumerate(train)]
    t = cfg.train
    n_held = min(len(held), t.eval_batches * (t.batch_size // cfg.optim.grad_accum))
    held = held[:n_held]
    held_prompts = [prompt_ids(tokenizer, r, T, room, f"validation record {i + 1}")
                    for i, r in enumerate(held)]
    rollouts = Rollouts(cfg, tokenizer, train, prompts, held, held_prompts)
    return dict(cfg=cfg, tokenizer=tokenizer, train=rollouts.index, validation=[],
                unit="sequences",
                per_step=t.batch_size, start=rollouts.start, rollout=rollouts,
                evaluate=rollouts.evaluate)
