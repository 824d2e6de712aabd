"""The optimizer (AdamW, schedule, weight-decay mask) and the TrainState a step updates."""

from jaxllm.optim.optimizer import decay_mask, learning_rate_schedule, make_optimizer
from jaxllm.optim.state import StepShardings, TrainState, initial_loss_scale

__all__ = ["StepShardings", "TrainState", "decay_mask", "initial_loss_scale",
           "learning_rate_schedule", "make_optimizer"]
