"""Throughput of candidate mnist-vit configs: the jitted train step alone, and the host's batch.

    .venv/bin/python experiments/vit_mnist_throughput.py "" "model.patch_size=7;model.pool=gap"

Each argument is one candidate: ";"-separated overrides of the `mnist-vit` preset ("" is the
preset itself). For each it compiles the train step, runs 3 warm-up steps, then times 30 steps
over 8 prepared batches (the step alone), and separately times making 20 host batches (gather,
shift augmentation, normalisation in numpy). Prints one JSON line per candidate. This is how
the preset's recipe was chosen (experiments/RESULTS.md, ViT on MNIST): whether the host side
could become the bottleneck on 2 cores, and what fewer tokens or a larger batch buy.
"""

from __future__ import annotations

import json
import sys
import time

from jaxllm.platform import configure_cpu


def main(specs: list[str]) -> None:
    configure_cpu()
    import jax

    from jaxllm import config as config_lib
    from jaxllm.data.images import ImageBatches, load_images
    from jaxllm.train.objective import model_and_objective
    from jaxllm.optim import TrainState, learning_rate_schedule, make_optimizer
    from jaxllm.train.params import build_params
    from jaxllm.train.step import make_train_step

    data = load_images("mnist")
    for spec in specs or [""]:
        overrides = [s for s in spec.split(";") if s]
        cfg = config_lib.validate(config_lib.apply_overrides(config_lib.get_preset("mnist-vit"),
                                                             overrides))
        t = cfg.train
        _, loss_fn = model_and_objective(cfg, 0)
        tx = make_optimizer(cfg.optim, t.steps)
        state = TrainState.create(build_params(cfg, jax.random.PRNGKey(0)), tx, None)
        it = ImageBatches(data.train, t.batch_size, 0, augment_shift=cfg.data.augment_shift)
        batches = [it.batch(s) for s in range(8)]
        start = time.perf_counter()
        for s in range(20):
            it.batch(s)
        host = (time.perf_counter() - start) / 20
        step = make_train_step(loss_fn, tx, schedule=learning_rate_schedule(cfg.optim, t.steps))
        compiled = step.lower(state, batches[0]).compile()
        for i in range(3):
            state, _ = compiled(state, batches[i % 8])
        jax.block_until_ready(state)
        n = 30
        start = time.perf_counter()
        for i in range(n):
            state, _ = compiled(state, batches[i % 8])
        jax.block_until_ready(state)
        dt = (time.perf_counter() - start) / n
        print(json.dumps({"overrides": spec, "batch_size": t.batch_size,
                          "params": int(sum(x.size for x in jax.tree_util.tree_leaves(
                              state.params))),
                          "step_ms": round(dt * 1e3, 1), "host_batch_ms": round(host * 1e3, 1),
                          "images_per_s_step": round(t.batch_size / dt)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
