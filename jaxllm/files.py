"""Atomic file writes: a crash mid-write leaves the previous file (or none), never half of one.
And the checks that an output path is free before any work is done for it. Local paths and
object-store paths (gs://, through etils.epath) both.

Files get the permissions any new file of the user's would get (0o666 less the umask), not
mkstemp's private 0o600."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from jaxllm.errors import OutputError


def is_remote(path: str | os.PathLike) -> bool:
    """True for an object-store path such as gs://bucket/run (read and written through
    etils.epath), False for a local one."""
    return "://" in os.fspath(path)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write data to path via a temporary file in the same directory, fsync, then os.replace.
    A remote path (gs://...) is written as one object, which its store publishes whole once
    the upload completes."""
    if is_remote(path):
        from etils import epath

        epath.Path(path).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write obj as (readable, UTF-8) JSON to path atomically."""
    atomic_write(path, json.dumps(obj, ensure_ascii=False, indent=1) + "\n")


def package_folder(module: str) -> Path | None:
    """The folder of an installed package, found with importlib.util.find_spec without importing
    it (data packages may read all their files or pull heavy dependencies on import); None when
    it is not installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


# ---------------------------------------------------------------------------------------------
# Output paths: checked before the work, so that a mistake costs no time and overwrites nothing.

def check_new_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """path as a directory for new results: absent (to be created) or an empty directory.
    Refuses a file, a non-empty directory (naming a few of its entries) or a place that cannot
    be written, with an OutputError that names `what` (the flag or field)."""
    path = Path(path)
    if path.is_dir():
        entries = sorted(p.name for p in path.iterdir())
        if entries:
            shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more"
                                              if len(entries) > 4 else "")
            raise OutputError(f"{what} {path} is a directory that already holds files ({shown}); "
                              f"choose a new or empty directory")
        _check_writable(path, path, what)
        return path
    if path.exists() or path.is_symlink():
        raise OutputError(f"{what} {path} is an existing file; choose a new directory")
    _check_writable(path, _existing_parent(path, what), what)
    return path


def check_new_file(path: str | os.PathLike, what: str = "--out") -> Path:
    """path as a new file: it must not exist yet, and its directory must be writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a directory; give a file name (for example "
                          f"{path / 'tokenizer.json'})")
    if path.exists() or path.is_symlink():
        raise OutputError(f"{what} {path} already exists; delete it or choose another name")
    _check_writable(path, _existing_parent(path, what), what)
    return path


def _existing_parent(path: Path, what: str) -> Path:
    """The nearest ancestor of path that exists; it must be a directory."""
    parent = path.absolute().parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{what} {path}: {parent} is a file, not a directory")
    return parent


def _check_writable(path: Path, directory: Path, what: str) -> None:
    """Create and remove a file in directory: permissions, read-only and pseudo file systems
    (where os.access says yes to root) all show."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise OutputError(f"{what} {path}: cannot write in {directory} "
                          f"({e.strerror or type(e).__name__})") from None
