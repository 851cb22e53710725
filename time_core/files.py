"""Writing files that others read: atomic and durable (a temporary file in the same folder, fsynced, then renamed),
with the permissions the umask gives a new file, and checks of an output path before any work is done."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["TMP_INFIX", "check_new_file", "check_writable_folder", "remove_leftovers", "umask", "write_atomic",
           "write_text_atomic"]

TMP_INFIX = ".tmp"  # a file being written is NAME.tmpPID next to NAME


def umask() -> int:
    """The process's umask (read from /proc where it can be, so that no other thread sees it changed)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # some systems cannot open a folder; the rename is then as durable as they make it
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Writes `path` through `write(temporary_path)`, then fsyncs and renames it over `path`: readers see the old file
    or the whole new one, never a part, and a failure (full disk, Ctrl-C) leaves no temporary file. The file gets the
    permissions of a new file under the umask (`0o666 & ~umask`), whatever `write` created it with."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}{TMP_INFIX}{os.getpid()}")
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        handle = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """`write_atomic` of a UTF-8 text file."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_leftovers(folder: str | Path, min_age: float = 60.0) -> list[Path]:
    """Removes the temporary files (`NAME.tmpPID`) that interrupted writes left in `folder`, when older than `min_age`
    seconds (a write lasts far less; a younger one may be another process's write in progress). Returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now, removed = time.time(), []
    for path in folder.glob(f"*{TMP_INFIX}*"):
        suffix = path.name.rpartition(TMP_INFIX)[2]
        try:
            if suffix.isdigit() and path.is_file() and now - path.stat().st_mtime > min_age:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # removed by another process meanwhile
            continue
    return removed


def check_writable_folder(folder: str | Path, what: str) -> Path:
    """Returns `folder` when a file can be created in it (tried, so read-only file systems and permissions count);
    raises `OSError` naming `what` otherwise."""
    folder = Path(folder)
    probe = folder / f".write-test{TMP_INFIX}{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise OSError(f"{what}: cannot write to {folder} ({error.strerror or error})") from None
    return folder


def check_new_file(path: str | Path, flag: str, force: bool = False) -> Path:
    """Returns `path` when it may be written: its folder exists and is writable, and it does not exist yet (or `force`).

    Raises:
        `FileExistsError`: `path` exists and `force` is not set; the message names `flag` and `--force`.
        `OSError`: the folder is missing or not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a folder")
    if path.exists() and not force:
        raise FileExistsError(f"{flag} {path} exists; pass --force to replace it")
    folder = path.resolve().parent
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"{flag} {path}: {folder} {problem}")
    check_writable_folder(folder, f"{flag} {path}")
    return path
