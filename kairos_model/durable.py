"""Crash-safe writes of folders and files: written whole beside their destination, flushed to disk,
then renamed into place, so a killed process or a power cut leaves the previous version or the new
one, never a mix of the two.

    with staged_dir("runs/x/artifact") as tmp:     # write everything into tmp ...
        save_file(tensors, os.path.join(tmp, "world_model.safetensors"))
    # ... and it becomes runs/x/artifact only once complete (an exception removes tmp instead)

    write_text_atomic("runs/x/metrics.json", json.dumps(m))

`replace_dir` swaps a folder in two renames (the old one aside, the new one in): a crash between
them leaves no folder at the destination, so a loader says so plainly, and the previous version
waits complete in `DEST.old-PID`. The trainer's checkpoints (training/trainer.py) add a recovery
step for that window; artifacts are rewritten rarely enough that the plain error is the design.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from typing import Iterator


def fsync_dir(path: str) -> None:
    """Flush a folder's entries (new names, renames) to disk; a no-op where the OS cannot (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: str) -> None:
    """fsync every file under `path` (any depth), then every folder, deepest first."""
    for root, _, names in os.walk(path, topdown=False):
        for n in names:
            f = os.path.join(root, n)
            if os.path.isfile(f) and not os.path.islink(f):
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(root)


def replace_dir(tmp: str, dst: str) -> None:
    """Make the complete folder `tmp` the folder `dst` (replacing one that is there), durably:
    tmp's files reach the disk before the rename, the rename before this returns."""
    fsync_tree(tmp)
    parent = os.path.dirname(os.path.abspath(dst))
    old = None
    if os.path.lexists(dst):
        old = f"{dst.rstrip('/')}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(tmp, dst)
    fsync_dir(parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(dst: str) -> Iterator[str]:
    """Yield an empty folder beside `dst` to write into; on success it replaces `dst` (replace_dir),
    on an exception it is removed and `dst` is left as it was."""
    tmp = f"{dst.rstrip('/')}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
        replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str, text: str) -> None:
    """Write `text` to `path` through `path.part-PID`, fsynced and renamed into place."""
    tmp = f"{path}.part-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))
