"""A run directory and everything in it.

    DIR/config.json        the full Config of the run (written atomically; a resume may change
                           train.steps and the parallel section, nothing else)
    DIR/tokenizer.json     the run's tokenizer (char vocabulary, or byte)
    DIR/tokenizer_config.json  {"chat_template": ...} when the tokenizer has one (a pretrained
                           model's, such as SmolLM2's; Hugging Face keeps it in this file too)
    DIR/labels.json        {"labels": [...]}: a sequence head's class names in the order of its
                           logits (its data's labels, sorted; read back as LoadedRun.classes)
    DIR/metrics.jsonl      one JSON object per log or evaluation (step, train_loss, val_loss, ...)
    DIR/loss.png           train and validation loss curves, redrawn at each evaluation
    DIR/checkpoints/<step>/  orbax checkpoints: params, optimizer state, step, data iterator

`load_run(DIR)` reads a finished or running run back for evaluation and generation;
`init_from_params(cfg)` reads the run (or pretrained model) a fine-tuning run starts from.
`quantize_run` and `merge_run` write a run's parameters quantized, or merged and dequantized, as
a new run (jaxllm quantize, jaxllm export --format run).

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
from jaxllm import models, pretrained, transforms
from jaxllm.data import BatchIterator, build_data
from jaxllm.errors import CheckpointError, ConfigError, JaxllmError
from jaxllm.files import atomic_write, check_new_dir, is_remote
from jaxllm.optim import TrainState, make_optimizer
from jaxllm.parallel import distributed
from jaxllm.text import load_tokenizer
from jaxllm.train.checkpoint import Checkpoints
from jaxllm.models.decoder import init_value_head
from jaxllm.models.encoder import PRETRAINING_HEADS, init_task_head
from jaxllm.train.params import (RUN_MODEL_FIELDS, base_context, build_params,
                                 pretrained_name, state_like, with_pretrained_model)
from jaxllm.transforms import lora


class RunDir:
    def __init__(self, path: str | Path):
        self.path = epath.Path(path)
        self.config_file = self.path / "config.json"
        self.tokenizer_file = self.path / "tokenizer.json"
        self.tokenizer_config_file = self.path / "tokenizer_config.json"
        self.labels_file = self.path / "labels.json"
        self.metrics_file = self.path / "metrics.jsonl"
        self.plot_file = self.path / "loss.png"
        self.checkpoints = self.path / "checkpoints"

    def exists(self) -> bool:
        return self.config_file.exists()

    @property
    def writer(self) -> bool:
        """Whether this process writes the run's files (process 0 of a multi-host run)."""
        return distributed.is_primary()

    def check_new(self) -> None:
        """Before any work for a new run: the directory is new or empty. A run there is for
        --resume; any other file (a user's notes, metrics.jsonl, tokenizer.json) is left alone.
        (An object-store directory is checked for a run only.)"""
        if self.exists() or (self.checkpoints.exists() and any(self.checkpoints.iterdir())):
            raise CheckpointError(f"{self.path} already holds a run; choose another --out "
                                  f"(jaxllm train --resume --out {self.path} continues it)")
        if not is_remote(self.path):
            check_new_dir(self.path)

    def create(self, cfg: config_lib.Config, tokenizer, classes: tuple[str, ...] = ()) -> None:
        """Start a new run here; refuses a directory that holds a run or anything else.
        classes: a sequence head's class names (labels.json)."""
        self.check_new()
        distributed.barrier("jaxllm-run-create")  # every process looked before process 0 writes
        if not self.writer:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        if tokenizer is not None:  # a ViT reads no text
            tokenizer.save(self.tokenizer_file)
            template = getattr(tokenizer, "chat_template", None)
            if template:  # tokenizer.json has no place for it
                atomic_write(self.tokenizer_config_file,
                             json.dumps({"chat_template": template}) + "\n")
        if classes:
            atomic_write(self.labels_file, json.dumps({"labels": list(classes)}) + "\n")
        self.write_config(cfg)

    def write_config(self, cfg: config_lib.Config) -> None:
        """(Re)write config.json atomically: at creation, and when a resume changes the target
        step count or the device layout."""
        atomic_write(self.config_file, cfg.to_json() + "\n")

    def check(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"{self.path} is a file, not a run directory")
        if not self.path.is_dir():
            raise CheckpointError(f"run directory {self.path} does not exist")
        if not self.exists():
            raise CheckpointError(f"{self.path} is not a jaxllm run directory (no config.json)")

    def load_config(self) -> config_lib.Config:
        self.check()
        try:
            raw = json.loads(self.config_file.read_text(encoding="utf-8"))
            if isinstance(raw, dict) and "model_type" in raw:
                raise CheckpointError(f"{self.path} holds a model in the Hugging Face layout "
                                      f"(jaxllm export), not a run: the verbs take it as "
                                      f"--model {self.path}")
            return config_lib.validate(config_lib.from_dict(raw))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{self.config_file} is not valid JSON ({e}); the run directory "
                                  f"is damaged") from None
        except CheckpointError:
            raise
        except JaxllmError as e:
            raise CheckpointError(f"{self.config_file} does not hold a valid config: {e}") from None

    def load_tokenizer(self):
        if not self.tokenizer_file.exists():
            raise CheckpointError(f"{self.tokenizer_file} is missing; the run directory is damaged")
        try:
            tokenizer = load_tokenizer(json.loads(self.tokenizer_file.read_text(encoding="utf-8")))
            if self.tokenizer_config_file.exists():  # the chat template the run was trained with
                saved = json.loads(self.tokenizer_config_file.read_text(encoding="utf-8"))
                tokenizer.chat_template = saved["chat_template"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{self.tokenizer_file} or {self.tokenizer_config_file.name} "
                                  f"is not valid ({e}); the run directory is damaged") from None
        except JaxllmError as e:
            raise CheckpointError(f"{self.tokenizer_file} cannot be read: {e}") from None
        return tokenizer

    def load_classes(self) -> tuple[str, ...]:
        """The class names saved with the run (labels.json); () when it has none (no sequence
        head, or trained before jaxllm saved them)."""
        if not self.labels_file.exists():
            return ()
        try:
            labels = json.loads(self.labels_file.read_text(encoding="utf-8"))["labels"]
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                raise TypeError("not a list of strings")
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{self.labels_file} is not valid ({e}); the run directory "
                                  f"is damaged") from None
        return tuple(labels)

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

    def set_aside_after(self, step: int, later: list[int]) -> Path:
        """Move the checkpoints of steps `later` (all after `step`) and the metrics rows after
        `step` into a new folder DIR/after-step-<step>[-k]/, so that a resume from `step` replaces
        nothing (`jaxllm train --resume --step`). Returns that folder."""
        aside = self.path / f"after-step-{step}"
        k = 1
        while aside.exists():
            k += 1
            aside = self.path / f"after-step-{step}-{k}"
        (aside / "checkpoints").mkdir(parents=True)
        rows = [r for r in self.read_metrics() if r.get("step", 0) > step]
        atomic_write(aside / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        for s in later:
            (self.checkpoints / str(s)).rename(aside / "checkpoints" / str(s))
        self.truncate_metrics(step)
        return aside

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
    classes: tuple[str, ...] = ()  # a sequence head's class names saved with the run


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
                     params=state.params, step=step, classes=run.load_classes())


def run_tokenizer(cfg: config_lib.Config, run: RunDir, resuming: bool):
    """The run's tokenizer when there is one already: its own saved one when resuming, the
    base's when fine-tuning (train.init_from); else None (the data builds one)."""
    if resuming:
        return run.load_tokenizer()
    name = cfg.train.init_from
    if name:
        return (pretrained.load(name).tokenizer if pretrained_name(name)
                else RunDir(name).load_tokenizer())
    return None


def with_base_run(cfg: config_lib.Config, path: str | Path) -> config_lib.Config:
    """cfg set up to fine-tune the run at path (what `jaxllm train --init-from DIR` starts from):
    train.init_from = path, the run's model section except the RUN_MODEL_FIELDS that do not
    change the parameters' shapes (max_len stays the run's for learned positions, whose table
    it sizes), and the run's tokenizer kind. With model.rope_scaling the run's context is
    extended as a pretrained base's is (params.base_context); model.max_len is not bounded by
    it, as the README's `--init-from runs/base` with another preset's max_len relies on."""
    base = RunDir(path).load_config()
    base_model = base_context(base.model, cfg.model, str(path))
    keep = [f for f in RUN_MODEL_FIELDS if f != "weights"
            and not (f == "max_len" and base.model.positions == "learned")]
    model = replace(base_model, weights="", **{f: getattr(cfg.model, f) for f in keep})
    return replace(cfg, model=model, data=replace(cfg.data, tokenizer=base.data.tokenizer),
                   train=replace(cfg.train, init_from=str(path)))


def init_from_params(cfg: config_lib.Config):
    """The parameters of the run (or pretrained model) train.init_from names, checked to fit
    this run's model. A base run's LoRA factors are merged into plain float weights; the scalar
    head (model.value_head) is dropped when this run has none, and added fresh
    (seeded by train.seed) when the base has none. An encoder run with a task head (model.head)
    keeps the base's body: the base's pretraining heads are dropped, and the task head is
    the base's own when it has one of this shape, else fresh (seeded by train.seed). A learned
    position table longer than model.max_len (a pretrained encoder's) keeps its first rows."""
    name = cfg.train.init_from
    if pretrained_name(name):
        # a copy: the train step donates its state, and these arrays are the cached model's
        base = jax.tree_util.tree_map(lambda x: x.copy(), pretrained.load(name).params)
    else:
        base = dict(lora.merge(load_run(name).params))
    if cfg.model.kind == "decoder":
        base = dict(base)
        if not cfg.model.value_head:
            base.pop("value", None)
        elif "value" not in base:
            base["value"] = init_value_head(cfg.model, jax.random.PRNGKey(cfg.train.seed))
    pos = base.get("pos_embedding")
    if pos is not None and pos.shape[0] > cfg.model.max_len:
        # learned positions of a pretrained model (MiniLM's 512): the run's max_len first rows,
        # all that a context of max_len reads
        base = {**base, "pos_embedding": pos[:cfg.model.max_len]}
    if cfg.model.kind == "encoder" and cfg.model.head:
        base = {k: v for k, v in base.items() if k not in PRETRAINING_HEADS}
        fresh = init_task_head(cfg.model, jax.random.PRNGKey(cfg.train.seed))
        if "head" not in base or base["head"]["kernel"].shape != fresh["kernel"].shape:
            base["head"] = fresh
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


# --- post-training quantization of a run --------------------------------------------------------

def quantize_run(loaded: LoadedRun, out: str | Path, spec: str, *,
                 calib_batches: int = 0) -> LoadedRun:
    """Quantize a run's weights into the new run directory `out` (what `jaxllm quantize` does)
    and return it loaded. spec is a model.weights spec (jaxllm.transforms: "method=int4,group=64",
    "embed=true" for the token embedding too); with act=static (W8A8), calib_batches training
    batches of the run's corpus calibrate the activation steps (decoder runs). Every model kind
    works: the axis names come from the run's own model. The new run's config records the spec,
    so load_run, eval and generate read it like any run.

        q = quantize_run(load_run("runs/base"), "runs/q4", "method=int4,group=64")
    """
    cfg = loaded.config
    run = RunDir(out)
    options = transforms.parse_spec(spec, "quantize")
    static = options.get("act") == "static"
    if cfg.model.weights or cfg.train.lora:
        raise config_lib.ConfigError(
            f"{loaded.run.path} is already transformed (model.weights={cfg.model.weights!r}, "
            f"train.lora={cfg.train.lora!r}); quantize a float run (merge LoRA first)")
    if static and calib_batches < 1:
        raise config_lib.ConfigError(f"quantize spec {spec!r}: act=static needs calibration "
                                     f"batches (jaxllm quantize --calib N)")
    if calib_batches and not static:
        raise config_lib.ConfigError(f"{calib_batches} calibration batches calibrate static "
                                     f"activations only; add act=static (--act static)")
    if static and cfg.model.kind != "decoder":
        raise config_lib.ConfigError(
            f"static W8A8 calibrates a decoder on text batches; {loaded.run.path} is a "
            f"{cfg.model.kind} run: use dynamic activations (act=dynamic, --act dynamic)")
    run.check_new()
    # static steps are found on the dynamically quantized model, then stored in the QArrays;
    # build_params quantizes as load_run will read the run (the new heads stay float)
    dynamic = replace(cfg, model=replace(cfg.model, weights=spec.replace("act=static",
                                                                         "act=dynamic")))
    qparams = build_params(dynamic, jax.random.PRNGKey(0), loaded.params)
    if static:
        dc, t = cfg.data, cfg.train
        data = build_data(dc.corpus, dc.tokenizer, dc.split, dc.val_fraction, dc.text_key,
                          loaded.tokenizer)
        it = BatchIterator(data.train, t.batch_size, cfg.model.max_len, t.seed + 7, dc.sampling,
                           data.separator, "calibration")
        ranges = transforms.calibrate(loaded.model, qparams, [next(it) for _ in
                                                              range(calib_batches)])
        qparams = transforms.apply_calibration(qparams, ranges)
    new_cfg = replace(cfg, model=replace(cfg.model, weights=spec))
    state = TrainState(step=jax.numpy.asarray(loaded.step, jax.numpy.int32), params=qparams,
                       opt_state={})  # a quantized run trains only as QLoRA: no optimizer state
    return _write_run(run, replace(loaded, config=new_cfg, params=qparams), state,
                      {"quantized_from": str(loaded.run.path)})


def merge_run(loaded: LoadedRun, out: str | Path) -> LoadedRun:
    """A LoRA, QLoRA or quantized run as a plain float run in the new directory `out` (what
    `jaxllm export --format run` does): LoRA factors merged into their base (W + alpha/r A B),
    quantized weights dequantized; train.lora and model.weights are cleared, and the optimizer
    state starts fresh, so the new run evaluates, exports and fine-tunes like any float run.

        plain = merge_run(load_run("runs/lora"), "runs/merged")
    """
    run = RunDir(out)
    run.check_new()
    cfg = loaded.config
    new_cfg = replace(cfg, model=replace(cfg.model, weights=""),
                      train=replace(cfg.train, lora=""))
    params = lora.merge(loaded.params, float_export=True)
    tx = make_optimizer(new_cfg.optim, new_cfg.train.steps)
    state = TrainState.create(params, tx)
    state = state.replace(step=jax.numpy.asarray(loaded.step, jax.numpy.int32))
    return _write_run(run, replace(loaded, config=new_cfg, params=params), state,
                      {"merged_from": str(loaded.run.path)})


def _write_run(run: RunDir, loaded: LoadedRun, state, note: dict) -> LoadedRun:
    """Write loaded's config, tokenizer and class names and one checkpoint of state as the new
    run `run`."""
    run.create(loaded.config, loaded.tokenizer, loaded.classes)
    ckpts = Checkpoints(run.checkpoints, keep=1)
    ckpts.save(loaded.step, state, note)
    ckpts.close()
    return replace(loaded, run=run)


def pretrained_as_run(name: str) -> LoadedRun:
    """A pretrained decoder (jaxllm.pretrained) as a LoadedRun at step 0, with a run config
    (train.init_from = name, the model's architecture and full context, a rolled layer loop as
    jaxllm.pretrained uses), so that what is made from it (quantize_run) reads like any run."""
    from jaxllm import pretrained

    lm = pretrained.load(name)
    if lm.config.kind != "decoder" or lm.tokenizer is None:
        raise config_lib.ConfigError(f"{name} is not a decoder with a tokenizer; only such a "
                                     f"pretrained model (smollm2-135m-instruct) becomes a run")
    cfg = with_pretrained_model(config_lib.get_preset("shakespeare-char"), name)
    cfg = replace(cfg, model=replace(cfg.model, max_len=lm.config.max_len, scan_unroll=1))
    return LoadedRun(run=RunDir(name), config=config_lib.validate(cfg), tokenizer=lm.tokenizer,
                     model=lm.model, params=lm.params, step=0)
