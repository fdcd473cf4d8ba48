"""Atomic file output: a file appears complete at its final path, or not at all.

:func:`atomic_write` writes into a temporary file ``.<name>.<random>.tmp`` in the
destination directory (so that the final :func:`os.replace` is a same-filesystem
rename, atomic on POSIX and Windows), flushes and ``fsync``\\ s it, and only then
renames it onto ``path``. If the body raises (including ``KeyboardInterrupt``),
the temporary file is removed and an existing file at ``path`` is left untouched.

:func:`check_writable` validates a destination cheaply, so that a command-line
run can fail *before* it spends time generating events.

Example:
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with atomic_write(os.path.join(d, "out.txt"), "w") as f:
    ...     _ = f.write("hello")
    >>> sorted(os.listdir(d))
    ['out.txt']
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO

__all__ = ["atomic_write", "check_writable"]

_MODES = ("w", "wt", "wb")


def _describe_missing(directory: str) -> str:
    """Why ``directory`` (which does not exist) cannot be used."""
    ancestor = os.path.dirname(directory)
    while ancestor and not os.path.exists(ancestor):
        parent = os.path.dirname(ancestor)
        if parent == ancestor:
            break
        ancestor = parent
    if ancestor and os.path.exists(ancestor) and not os.path.isdir(ancestor):
        return f"{ancestor!r} is not a directory"
    return f"directory {directory!r} does not exist"


def check_writable(path: str | os.PathLike) -> None:
    """Raise ``ValueError`` unless a file can be created at ``path``.

    Checks, in order: ``path`` is not empty and not an existing directory; its
    parent exists and is a directory; the parent is writable, which is confirmed by
    creating and removing a probe file (so read-only mounts and ACLs are caught too,
    and also for root, who ignores permission bits). An existing file at ``path`` is
    fine: it will be replaced.

    Call it before generating events, so a bad output path fails in milliseconds.

    Example:
        >>> check_writable("/nonexistent-dir/events.npz")
        Traceback (most recent call last):
        ...
        ValueError: cannot write '/nonexistent-dir/events.npz': directory '/nonexistent-dir' does not exist
    """
    name = os.fspath(path)
    if not name:
        raise ValueError("cannot write to an empty path")
    head = f"cannot write {name!r}"
    if os.path.isdir(name):
        raise ValueError(f"{head}: the path is a directory")
    directory = os.path.dirname(os.path.abspath(name))
    if not os.path.exists(directory):
        raise ValueError(f"{head}: {_describe_missing(directory)}")
    if not os.path.isdir(directory):
        raise ValueError(f"{head}: {directory!r} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"{head}: no permission to create files in {directory!r}")
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".diffgen-probe.", suffix=".tmp")
    except OSError as err:
        raise ValueError(f"{head}: cannot create files in {directory!r} ({err.strerror})") from err
    os.close(fd)
    os.unlink(probe)


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # fallback: not thread-safe for an instant, but restores the value
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Context manager yielding a file object whose content lands at ``path`` only on success.

    Args:
        path: final destination. If it is a symbolic link, the file it points to is replaced.
        mode: ``"wb"`` (bytes) or ``"w"``/``"wt"`` (UTF-8 text with ``\\n`` newlines).

    Raises:
        ValueError: from :func:`check_writable` if ``path`` cannot be written, or for another ``mode``.

    The new file gets the permissions a plain ``open(path, "w")`` would give
    (``0o666`` minus the umask), not the ``0o600`` of a temporary file.

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "x.bin")
        >>> with atomic_write(p) as f:
        ...     _ = f.write(b"abc")
        >>> open(p, "rb").read()
        b'abc'
    """
    if mode not in _MODES:
        raise ValueError(f"atomic_write mode must be one of {_MODES}, got {mode!r}")
    check_writable(path)
    target = os.path.realpath(os.fspath(path))
    directory, base = os.path.split(target)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".tmp")
    try:
        if mode == "wb":
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable; not possible on every OS
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
