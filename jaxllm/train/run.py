"""A run directory and everything in it.

    DIR/config.json        the full Config of the run (written once, atomically)
    DIR/tokenizer.json     the run's tokenizer (char vocabulary, or byte)
    DIR/metrics.jsonl      one JSON object per log or evaluation (step, train_loss, val_loss, ...)
    DIR/loss.png           train and validation loss curves, redrawn at each evaluation
    DIR/checkpoints/<step>/  orbax checkpoints: params, optimizer state, step, data iterator

`load_run(DIR)` reads a finished or running run back for evaluation and generation;
`init_from_params(cfg)` reads the run (or pretrained model) a fine-tuning run starts from.

DIR may be local or on an object store (gs://bucket/run on a TPU VM): paths go through
etils.epath. In a multi-host run every process opens the same DIR, only process 0 writes
config.json, tokenizer.json, metrics.jsonl and loss.png, and every process writes its own shards
of each checkpoint (orbax).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace
from pathlib import Path

import jax
from etils import epath

from jaxllm import config as config_lib
from jaxllm import models, pretrained
from jaxllm.errors import CheckpointError, ConfigError, JaxllmError
from jaxllm.files import atomic_write, is_remote
from jaxllm.optim import make_optimizer
from jaxllm.parallel import distributed
from jaxllm.text import load_tokenizer
from jaxllm.train.checkpoint import Checkpoints
from jaxllm.train.params import build_params, pretrained_name, state_like


class RunDir:
    def __init__(self, path: str | Path):
        self.path = epath.Path(path)
        self.config_file = self.path / "config.json"
        self.tokenizer_file = self.path / "tokenizer.json"
        self.metrics_file = self.path / "metrics.jsonl"
        self.plot_file = self.path / "loss.png"
        self.checkpoints = self.path / "checkpoints"

    def exists(self) -> bool:
        return self.config_file.exists()

    @property
    def writer(self) -> bool:
        """Whether this process writes the run's files (process 0 of a multi-host run)."""
        return distributed.is_primary()

    def create(self, cfg: config_lib.Config, tokenizer) -> None:
        """Start a new run here; refuses to touch a directory that already holds one."""
        if self.exists() or (self.checkpoints.exists() and any(self.checkpoints.iterdir())):
            raise CheckpointError(f"{self.path} already holds a run; pass --resume to continue it "
                                  f"or choose another --out")
        distributed.barrier("jaxllm-run-create")  # every process looked before process 0 writes
        if not self.writer:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        if tokenizer is not None:  # a ViT reads no text
            tokenizer.save(self.tokenizer_file)
        atomic_write(self.config_file, cfg.to_json() + "\n")

    def check(self) -> None:
        if not self.path.is_dir():
            raise CheckpointError(f"run directory {self.path} does not exist")
        if not self.exists():
            raise CheckpointError(f"{self.path} is not a jaxllm run directory (no config.json)")

    def load_config(self) -> config_lib.Config:
        self.check()
        try:
            raw = json.loads(self.config_file.read_text(encoding="utf-8"))
            return config_lib.validate(config_lib.from_dict(raw))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{self.config_file} is not valid JSON ({e}); the run directory "
                                  f"is damaged") from None
        except JaxllmError as e:
            raise CheckpointError(f"{self.config_file} does not hold a valid config: {e}") from None

    def load_tokenizer(self):
        if not self.tokenizer_file.exists():
            raise CheckpointError(f"{self.tokenizer_file} is missing; the run directory is damaged")
        try:
            return load_tokenizer(json.loads(self.tokenizer_file.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{self.tokenizer_file} is not valid JSON ({e}); the run "
                                  f"directory is damaged") from None
        except JaxllmError as e:
            raise CheckpointError(f"{self.tokenizer_file} cannot be read: {e}") from None

    # --- metrics ---------------------------------------------------------------------------------

    def read_metrics(self) -> list[dict]:
        if not self.metrics_file.exists():
            return []
        rows = []
        for line in self.metrics_file.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash mid-write: drop it
                continue
        return rows

    def append_metrics(self, row: dict) -> None:
        if not self.writer:
            return
        line = json.dumps(row) + "\n"
        if is_remote(self.metrics_file):  # an object store cannot append: rewrite the object
            old = self.read_metrics()
            atomic_write(self.metrics_file, "".join(json.dumps(r) + "\n" for r in old) + line)
            return
        with self.metrics_file.open("a", encoding="utf-8") as f:
            f.write(line)

    def truncate_metrics(self, step: int) -> None:
        """Drop rows logged after `step` (by a run that died before its next checkpoint)."""
        if not self.writer:
            return
        rows = [r for r in self.read_metrics() if r.get("step", 0) <= step]
        atomic_write(self.metrics_file, "".join(json.dumps(r) + "\n" for r in rows))

    def plot(self, accuracy: bool = False) -> None:
        """Draw loss.png from metrics.jsonl (train loss per log, validation loss per eval), and
        with accuracy=True a second panel of train and validation accuracy."""
        if not self.writer:
            return
        from matplotlib.figure import Figure  # no pyplot: the user's backend stays as it is

        rows = self.read_metrics()
        train = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]
        val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        if accuracy:
            fig = Figure(figsize=(11, 4), dpi=100)
            ax, ax_acc = fig.subplots(1, 2)
            for key, label, style in (("train_accuracy", "train", "-"),
                                      ("val_accuracy", "validation", "o-")):
                pts = [(r["step"], r[key]) for r in rows if key in r]
                if pts:
                    ax_acc.plot(*zip(*pts), style, label=label, linewidth=1, markersize=3)
            ax_acc.set_xlabel("step")
            ax_acc.set_ylabel("accuracy")
            ax_acc.grid(alpha=0.3)
            ax_acc.legend()
        else:
            fig = Figure(figsize=(7, 4), dpi=100)
            ax = fig.subplots()
        if train:
            ax.plot(*zip(*train), label="train", linewidth=1)
        if val:
            ax.plot(*zip(*val), "o-", label="validation", linewidth=1.5, markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/token)")
        ax.set_title(self.path.name)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        png = io.BytesIO()  # an object store has no rename: write the bytes atomically
        fig.savefig(png, format="png")
        atomic_write(self.plot_file, png.getvalue())


@dataclass
class LoadedRun:
    """A trained run, ready for evaluation and generation."""
    run: RunDir
    config: config_lib.Config
    tokenizer: object
    model: object  # jaxllm.models.Decoder
    params: dict
    step: int


def load_run(path: str | Path, step: int | None = None) -> LoadedRun:
    """Read a run directory's config, tokenizer and parameters (latest checkpoint by default)."""
    run = RunDir(path)
    cfg = run.load_config()
    tokenizer = run.load_tokenizer() if cfg.model.kind != "vit" else None  # a ViT has none
    ckpts = Checkpoints(run.checkpoints, read_only=True)
    steps = ckpts.steps()
    if not steps:
        raise CheckpointError(f"{run.path} has no checkpoint yet; train it first (jaxllm train)")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise CheckpointError(f"{run.path} has no checkpoint at step {step}; it has {steps}")
    model = models.build(cfg.model)
    tx = make_optimizer(cfg.optim, cfg.train.steps)
    like = jax.eval_shape(lambda: state_like(cfg, tx))
    state, _ = ckpts.restore(step, like)
    ckpts.close()
    return LoadedRun(run=run, config=cfg, tokenizer=tokenizer, model=model,
                     params=state.params, step=step)


def init_from_params(cfg: config_lib.Config):
    """The parameters of the run (or pretrained model) train.init_from names, checked to fit
    this run's model."""
    name = cfg.train.init_from
    if pretrained_name(name):
        # a copy: the train step donates its state, and these arrays are the cached model's
        base = jax.tree_util.tree_map(lambda x: x.copy(), pretrained.load(name).params)
    else:
        base = load_run(name).params
    like = jax.eval_shape(lambda: build_params(replace(cfg, train=replace(
        cfg.train, lora=""), model=replace(cfg.model, weights="")), jax.random.PRNGKey(0)))
    if jax.tree_util.tree_structure(like) != jax.tree_util.tree_structure(base) or any(
            a.shape != b.shape for a, b in zip(jax.tree_util.tree_leaves(like),
                                               jax.tree_util.tree_leaves(base))):
        fix = (f"keep the model's architecture (drop --set model.* sizes; in Python, build the "
               f"config with jaxllm.train.with_pretrained_model(cfg, {name!r}))"
               if pretrained_name(name) else "use the same model.* settings")
        raise ConfigError(f"train.init_from={name!r}: its parameters do not fit this run's "
                          f"model config; {fix}")
    return base
