"""What the runtime creates under `storage/`, private to the app's user whatever the umask.

Task parameters, logs and results may hold personal data, so every folder the runtime
makes (`storage/` itself, `logs/`, `tasks/`, each task's `tasks/{id}/`) is created 0700 and
every file (the SQLite database, worker logs) 0600; SQLite gives its `-wal` and `-shm`
files the database file's mode. What already exists keeps its mode: the runtime does not
change permissions someone chose. A task's temp directory that already exists as a
symbolic link, or as anything but a folder, is refused.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from runtime.errors import StorageError

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_folder(path: Path) -> Path:
    """Make `path` and its missing parents, each new one 0700; OSError if one is a file."""
    if path.is_dir():
        return path
    if path.parent != path:
        private_folder(path.parent)
    try:
        os.mkdir(path, FOLDER_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path)) from None
        return path
    os.chmod(path, FOLDER_MODE)  # mkdir's mode went through the umask
    return path


def private_file(path: Path, flags: int) -> int:
    """Open `path` with `flags`, creating it 0600 (and its folder 0700) if missing; the fd."""
    private_folder(path.parent)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return os.open(path, flags | os.O_CLOEXEC)
    os.fchmod(fd, FILE_MODE)
    return fd


def create_private_file(path: Path) -> None:
    """Create `path` empty, 0600 (its folder 0700), unless it exists; an existing file is
    not even opened: closing a descriptor of a SQLite database would drop every lock this
    process's connections hold on it (POSIX locks belong to the process, not the
    descriptor)."""
    if path.exists():
        return
    private_folder(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def task_directory(path: Path) -> Path:
    """A queued task's temp directory, created 0700; `StorageError` if something other
    than a folder (a symbolic link, say) is already there."""
    private_folder(path.parent)
    try:
        os.mkdir(path, FOLDER_MODE)
    except FileExistsError:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            raise StorageError(
                f"temp directory {path} is a symbolic link; refusing to use it"
            ) from None
        if not stat.S_ISDIR(mode):
            raise StorageError(f"temp directory {path} exists and is not a folder") from None
        return path
    os.chmod(path, FOLDER_MODE)
    return path


def describe(exc: OSError) -> str:
    """An OSError in a few words, with the path it concerns (`Permission denied: /x/y`)."""
    reason = exc.strerror or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename else reason
