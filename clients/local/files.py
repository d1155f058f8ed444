"""How a device writes the files it keeps: private (0600), whole or not at all, durable.

One rule for the key file, the sealed index, carried outboxes and evidence bundles: the
bytes go to ``NAME.tmp`` beside the target (created 0600, truncated if a crash left one),
are fsynced, renamed over the target, and the directory is fsynced, so that after a crash
or a full disk the target holds either its old bytes or the new ones, never a part.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["fsync_dir", "temporary_for", "write_private", "write_synced"]


def temporary_for(path: Path) -> Path:
    """Where `write_private` stages ``path`` (a leftover one is overwritten, never read)."""
    return path.with_name(path.name + ".tmp")


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Create or truncate ``path`` with mode 0600, write ``data`` (or its pieces, as they
    come) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        for piece in (data,) if isinstance(data, bytes) else data:
            handle.write(piece)
        handle.flush()
        os.fsync(handle.fileno())


def write_private(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Replace ``path`` with ``data`` (or its pieces) atomically and durably (mode 0600); on
    any failure the staged file is removed and the target is untouched."""
    staged = temporary_for(path)
    try:
        write_synced(staged, data)
        os.replace(staged, path)
    except BaseException:
        with contextlib.suppress(OSError):
            staged.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
