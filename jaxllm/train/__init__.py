"""Training: the loop, run directories, what a run trains and reads, and the jitted steps.

    loop.py       train, resume, evaluate
    run.py        RunDir (config.json, tokenizer.json, metrics.jsonl, loss.png, checkpoints/),
                  load_run, init_from_params
    params.py     a run's parameter tree (fresh, fine-tuned, quantized, LoRA)
    inputs.py     a run's tokenizer and batches (text or images)
    objective.py  the loss of each model kind
    step.py       make_train_step, make_eval_step
    checkpoint.py orbax checkpoints
The optimizer and TrainState live one floor down, in jaxllm.optim (re-exported here).
"""

from jaxllm.optim import TrainState, decay_mask, learning_rate_schedule, make_optimizer
from jaxllm.train.checkpoint import Checkpoints
from jaxllm.train.loop import evaluate, resume, train
from jaxllm.train.params import with_pretrained_model
from jaxllm.train.run import LoadedRun, RunDir, load_run
from jaxllm.train.step import make_eval_step, make_train_step

__all__ = ["Checkpoints", "LoadedRun", "RunDir", "TrainState", "decay_mask", "evaluate",
           "learning_rate_schedule", "load_run", "make_eval_step", "make_optimizer",
           "make_train_step", "resume", "train", "with_pretrained_model"]
