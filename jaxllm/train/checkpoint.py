"""Orbax checkpoints of a run: DIR/checkpoints/<step>/{state, data}.

`state` is the TrainState (params, optimizer state, step) and `data` the batch iterator's JSON
state, so a resumed run continues exactly. Orbax writes each checkpoint into a temporary
directory and renames it when complete: a crash or SIGKILL during a save leaves the previous
checkpoint as the latest one (the temporary directory is removed when the run is reopened).
"""

from __future__ import annotations

import copy
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from etils import epath

from jaxllm.errors import CheckpointError
from jaxllm.files import is_remote
from jaxllm.platform import quiet


# Replica-parallel saving (orbax's default on CPU and TPU) cuts a replicated array into one slice
# per replica so that the replicas write in parallel; each slice is a program compiled per device
# and shape, which for a small array costs far more than writing it. A replicated array whose
# slices would be under this size is written whole by one replica (orbax's default on GPU).
REPLICA_PARALLEL_MIN_BYTES = 1 << 20


class _Handlers(ocp.type_handlers.TypeHandlerRegistry):
    """orbax's registered type handlers, with jax.Array's handler copied and given
    REPLICA_PARALLEL_MIN_BYTES (orbax has no public option for it but its handler's argument;
    the copy keeps every other setting of the registered one)."""

    def __init__(self):
        self._array = copy.copy(ocp.type_handlers.get_type_handler(jax.Array))
        if hasattr(self._array, "_min_slice_bytes_for_replica_parallel"):
            self._array._min_slice_bytes_for_replica_parallel = REPLICA_PARALLEL_MIN_BYTES

    def add(self, ty, handler, func=None, override=False):
        raise NotImplementedError("register handlers with orbax's registry")

    def get(self, ty):
        if isinstance(ty, type) and issubclass(ty, jax.Array):
            return self._array
        return ocp.type_handlers.get_type_handler(ty)

    def has(self, ty) -> bool:
        return ocp.type_handlers.has_type_handler(ty)


class _StateHandler(ocp.StandardCheckpointHandler):
    """StandardCheckpointHandler with the handlers above; it records itself under the standard
    handler's name, so its checkpoints are standard ones for orbax and for older runs."""

    def __init__(self):
        super().__init__()
        self._impl = ocp.PyTreeCheckpointHandler(type_handler_registry=_Handlers())

    @classmethod
    def typestr(cls) -> str:
        return ocp.StandardCheckpointHandler.typestr()


class Checkpoints:
    """A run's checkpoint manager. orbax logs every save and restore at INFO through absl, and a
    training loop prints its own progress: each orbax call runs under `platform.quiet()`.

    With async_save, `save` returns once the arrays are copied to host memory and orbax writes
    them in a background thread (the next save, a restore and `close` wait for it); the train
    step may then donate the state's buffers (on CPU, where the copy is a view, XLA declines to
    donate a buffer a view still holds, and copies instead)."""

    def __init__(self, directory: str | Path, keep: int = 3, read_only: bool = False,
                 async_save: bool = False):
        self.directory, self.async_save = epath.Path(directory), async_save
        if not is_remote(self.directory):
            self.directory = self.directory.absolute()
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"no checkpoints directory at {self.directory}")
        options = ocp.CheckpointManagerOptions(
            # a reader (eval, generate) never deletes or cleans up anything
            max_to_keep=None if read_only else keep, create=not read_only,
            cleanup_tmp_directories=not read_only,
            enable_async_checkpointing=async_save)
        with quiet():
            handlers = ocp.handlers.DefaultCheckpointHandlerRegistry()
            state = _StateHandler()
            for item, kinds, handler in (
                    ("state", (ocp.args.StandardSave, ocp.args.StandardRestore), state),
                    ("data", (ocp.args.JsonSave, ocp.args.JsonRestore), None)):
                for kind in kinds:
                    handlers.add(item, kind, handler)
            self._manager = ocp.CheckpointManager(self.directory, options=options,
                                                  handler_registry=handlers)
            # A writer removes the unfinished saves of an earlier process in a background
            # thread that logs as it starts: let it finish here, inside quiet() (orbax has no
            # public call for this; without it the thread may log one INFO line).
            getattr(self._manager, "_maybe_await_cleanup_tmp_directory", lambda: None)()

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state, data_state: dict) -> None:
        with quiet():
            self._manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)),
                force=True)
            if not self.async_save:
                self._manager.wait_until_finished()

    def wait(self) -> None:
        """Until the last save is on disk (at once when saves are synchronous)."""
        with quiet():
            self._manager.wait_until_finished()

    def restore(self, step: int, like_state):
        """(state, data_state) saved at `step`. like_state (arrays or jax.ShapeDtypeStructs) gives
        the tree, shapes, dtypes and shardings (when it has none: this process's first device;
        a checkpoint restores onto any mesh and process count, each process reading the shards
        its devices hold)."""
        self.wait()
        default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                           sharding=getattr(x, "sharding", None) or default),
            like_state)
        try:
            with quiet():
                restored = self._manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many kinds; the user needs to know which files
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} cannot be restored "
                f"({type(e).__name__}: {first}); it may be damaged or from a different model: "
                f"move it aside to resume from an earlier step") from None
        return restored["state"], restored["data"]

    def close(self) -> None:
        with quiet():
            self._manager.close()
