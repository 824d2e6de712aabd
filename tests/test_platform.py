"""Process-wide settings: importing jaxllm changes none; configure_cpu tunes only a process
that will run on the CPU; quiet() restores the logging and progress bars it silences.

The first two run in fresh Python processes (this one has long been configured), with ctypes
patched to record mallopt calls instead of making them."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxllm.platform import CPU_XLA_FLAGS, quiet

ROOT = Path(__file__).resolve().parents[1]
USER_FLAGS = "--xla_force_host_platform_device_count=2"  # XLA_FLAGS a user set: kept first

RECORD_MALLOPT = r"""
import ctypes, json, logging, os, sys
MALLOPT_CALLS = []

class RecordingCDLL(ctypes.CDLL):
    def __getattr__(self, name):
        if name == "mallopt":
            return lambda *args: MALLOPT_CALLS.append(list(args)) or 1
        return super().__getattr__(name)

ctypes.CDLL = RecordingCDLL
"""

IMPORTS = RECORD_MALLOPT + r"""
# The libraries jaxllm uses, with settings a user chose; jaxllm must leave them as they are.
import absl.logging, jax, matplotlib, orbax.checkpoint, tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils
logging.getLogger("absl").setLevel(logging.DEBUG)
tfds.display_progress_bar(True)

def state():
    return {"absl_level": logging.getLogger("absl").level, "tfds_bars": tqdm_utils._active,
            "mpl_backend": matplotlib.get_backend(auto_select=False),
            "pyplot": "matplotlib.pyplot" in sys.modules, "environ": dict(os.environ),
            "mallopt": list(MALLOPT_CALLS)}

before = state()
import jaxllm, jaxllm.data, jaxllm.infer, jaxllm.metrics, jaxllm.pretrained, jaxllm.retrieval
import jaxllm.train
from jaxllm.data import tfds_builder
from jaxllm.infer import vision
import numpy as np
# and jaxllm's own plotting: a loss curve and an image grid
run = jaxllm.train.RunDir(sys.argv[1])
run.path.mkdir(parents=True, exist_ok=True)
run.append_metrics({"step": 1, "train_loss": 2.0})
run.plot()
vision.plot_predictions(np.zeros((2, 4, 4, 1)), ["a", "b"], ["a", "c"], run.path / "grid.png")
print(json.dumps({"before": before, "after": state()}))
"""

CONFIGURE = RECORD_MALLOPT + r"""
from jaxllm.platform import configure_cpu
applied = configure_cpu()
print(json.dumps({"applied": applied, "xla_flags": os.environ["XLA_FLAGS"],
                  "mallopt": MALLOPT_CALLS}))
"""

IN_CODE = r"""
import json, jax
from jaxllm.platform import jax_will_use_cpu
got = {}
for platforms in ("tpu", "cuda,cpu", "cpu", "cpu,tpu"):
    jax.config.update("jax_platforms", platforms)
    got[platforms] = jax_will_use_cpu()
print(json.dumps(got))
"""


def run_python(code: str, *args: str, path: tuple = (), **env: str) -> dict:
    """The JSON printed last by `code` run in a fresh interpreter from the repository root, with
    this environment less JAX_PLATFORMS plus `env`, and `path` before the repository on
    PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"} | env | {
        "PYTHONPATH": os.pathsep.join([*map(str, path), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_and_plotting_change_no_global_state(tmp_path):
    got = run_python(IMPORTS, str(tmp_path / "run"), MPLBACKEND="svg", XLA_FLAGS=USER_FLAGS)
    before, after = got["before"], got["after"]
    assert before["absl_level"] == logging.DEBUG and before["tfds_bars"] is True
    assert before["mpl_backend"] == "svg"
    assert after == before
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0


@pytest.mark.parametrize("platforms, cpu", [
    ("gpu", False), ("tpu", False), ("cuda,cpu", False), ("cpu", True), ("cpu,cuda", True)])
def test_configure_cpu_tunes_only_a_cpu_platform(platforms, cpu):
    got = run_python(CONFIGURE, JAX_PLATFORMS=platforms, XLA_FLAGS=USER_FLAGS)
    tuned = USER_FLAGS + "".join(f" {k}={v}" for k, v in CPU_XLA_FLAGS.items())
    assert got["applied"] is cpu
    assert got["xla_flags"] == (tuned if cpu else USER_FLAGS)
    assert (len(got["mallopt"]) == 3) if cpu else got["mallopt"] == []


def test_platforms_set_in_code_count_once_jax_is_imported():
    got = run_python(IN_CODE)
    assert got == {"tpu": False, "cuda,cpu": False, "cpu": True, "cpu,tpu": True}


@pytest.mark.parametrize("plugin", [None, "jax_plugins/xla_cuda12/__init__.py",
                                    "libtpu/__init__.py"])
def test_an_installed_accelerator_plugin_means_not_the_cpu(plugin, tmp_path):
    """No platform named: JAX would pick the accelerator of an installed plugin."""
    if plugin:
        (tmp_path / plugin).parent.mkdir(parents=True)
        (tmp_path / plugin).write_text("")
    got = run_python(CONFIGURE, path=(tmp_path,), XLA_FLAGS=USER_FLAGS)
    assert got["applied"] is (plugin is None)
    assert (got["xla_flags"] == USER_FLAGS) is (plugin is not None)


def test_quiet_silences_absl_and_tfds_bars_and_restores_them():
    from tensorflow_datasets.core.utils import tqdm_utils

    absl_logger = logging.getLogger("absl")
    level, bars = absl_logger.level, tqdm_utils._active
    try:
        for user_level, inside in ((logging.DEBUG, logging.WARNING),
                                   (logging.ERROR, logging.ERROR)):  # never made louder
            absl_logger.setLevel(user_level)
            tqdm_utils.display_progress_bar(True)
            with pytest.raises(KeyError):  # restored on the way out of an error too
                with quiet():
                    assert absl_logger.getEffectiveLevel() == inside
                    assert tqdm_utils._active is False
                    raise KeyError
            assert absl_logger.level == user_level and tqdm_utils._active is True
    finally:
        absl_logger.setLevel(level)
        tqdm_utils.display_progress_bar(bars)


def test_checkpoints_are_saved_and_restored_quietly(tmp_path, caplog):
    """orbax's INFO messages stay out of a user's DEBUG-level absl log; the level stays."""
    import jax.numpy as jnp

    from jaxllm.train import Checkpoints

    caplog.set_level(logging.DEBUG, logger="absl")
    ckpts = Checkpoints(tmp_path / "checkpoints")
    ckpts.save(1, {"w": jnp.arange(3.0)}, {"epoch": 0})
    state, data = ckpts.restore(1, {"w": jnp.zeros(3)})
    ckpts.close()
    assert state["w"].tolist() == [0.0, 1.0, 2.0] and data == {"epoch": 0}
    assert [r.getMessage() for r in caplog.records if r.name == "absl"] == []
    assert logging.getLogger("absl").level == logging.DEBUG
