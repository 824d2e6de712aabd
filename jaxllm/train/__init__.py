"""Training: optimizer, pure train/eval steps, checkpoints, run directories and the loop."""

from jaxllm.train.checkpoint import Checkpoints
from jaxllm.train.loop import evaluate, resume, train
from jaxllm.optim import TrainState, decay_mask, learning_rate_schedule, make_optimizer
from jaxllm.train.run import LoadedRun, RunDir, load_run, with_pretrained_model
from jaxllm.train.step import make_eval_step, make_train_step

__all__ = ["Checkpoints", "LoadedRun", "RunDir", "TrainState", "decay_mask", "evaluate",
           "learning_rate_schedule", "load_run", "make_eval_step", "make_optimizer",
           "make_train_step", "resume", "train", "with_pretrained_model"]
