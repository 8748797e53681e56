"""Atomic file writes: results are either complete on disk or absent, never half-written.

Each file is written to a hidden temporary beside it, ``.<name>.<pid>-<token>.tmp``, flushed to disk
(``fsync``), renamed over the final path, and the folder is flushed so the rename itself survives a
power cut. A process killed mid-write (SIGKILL, out of memory) cannot remove its temporary; the next
write to the same path removes such leftovers: those whose writing process no longer exists, and any
older than :data:`STALE_AFTER_S` (a recycled pid, or a temporary from another machine on a shared disk).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

STALE_AFTER_S = 30 * 60  # a temporary of a live process is left alone until it is this old

Writer = Callable[[str], None]


def temporary_path(path: Path) -> Path:
    """A fresh name ``.<name>.<pid>-<8 hex>.tmp`` beside ``path`` (not created)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _temporary_pattern(name: str) -> re.Pattern[str]:
    # ``(\d+-)?`` also matches the older mkstemp names ``.<name>.<8 chars>.tmp`` (no pid).
    return re.compile(rf"\.{re.escape(name)}\.(?:(?P<pid>\d+)-)?[a-z0-9_]{{8}}\.tmp")


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def stale_temporaries(
    path: str | os.PathLike, max_age_s: float = STALE_AFTER_S, now: float | None = None
) -> list[Path]:
    """Leftover temporaries of :func:`atomic_write` for ``path``: writer gone, or older than ``max_age_s``.

    Only names of exactly this module's form for exactly this target count (the temporaries of
    ``a.png.json`` are not those of ``a.png``); temporaries of this process are never stale by pid.
    """
    path = Path(path)
    pattern = _temporary_pattern(path.name)
    now = time.time() if now is None else now
    stale = []
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        pid = int(match["pid"]) if match["pid"] else None
        gone = pid is not None and pid != os.getpid() and not _pid_alive(pid)
        if gone or age > max_age_s:
            stale.append(Path(entry.path))
    return sorted(stale)


def remove_stale_temporaries(path: str | os.PathLike, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete :func:`stale_temporaries` of ``path``; return what was removed."""
    removed = []
    for tmp in stale_temporaries(path, max_age_s):
        try:
            tmp.unlink()
        except FileNotFoundError:  # another writer cleaned it first
            continue
        removed.append(tmp)
    return removed


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (the renames); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temporary(path: Path) -> Path:
    """Create an empty temporary beside ``path`` with the usual permissions (0666 less the umask)."""
    while True:
        tmp = temporary_path(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def atomic_write_all(writes: Sequence[tuple[str | os.PathLike, Writer]]) -> list[Path]:
    """Write several files as one unit as far as a file system allows; return the final paths.

    Every ``write(tmp_path)`` runs and is flushed to disk first; only then are the temporaries renamed
    over their paths, in the given order, and the folders flushed. An error (or Ctrl-C) before the
    renames leaves every final path untouched. A kill *between* two renames can still leave the first
    file new and the second old: put first the file that lets a reader detect that (e.g. a record
    carrying the other file's hash, as :func:`hrinv_nb.notebook.report.save_figure` does).
    """
    paths = [Path(p) for p, _ in writes]
    if len(set(paths)) != len(paths):
        raise ValueError(f"atomic_write_all: a path appears twice in {paths}")
    temporaries: list[Path] = []
    try:
        for path, (_, write) in zip(paths, writes):
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(path)
            tmp = _create_temporary(path)
            temporaries.append(tmp)
            write(str(tmp))
            _fsync_file(tmp)
        for tmp, path in zip(temporaries, paths):
            os.replace(tmp, path)
        for folder in dict.fromkeys(p.parent for p in paths):
            _fsync_dir(folder)
    finally:
        for tmp in temporaries:
            if os.path.lexists(tmp):
                os.remove(tmp)
    return paths


def atomic_write(path: str | os.PathLike, write: Writer) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, flush it, then rename it over ``path``."""
    return atomic_write_all([(path, write)])[0]


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value: ``2.jpg`` < ``10.jpg``; ties broken by the text itself.

    Data sets such as CelebA-HQ name their files ``0.jpg … 29999.jpg``: a text sort would take
    ``0, 1, 10, 100, 1000, …`` as "the first images".
    """
    parts = re.split(r"(\d+)", text)
    return tuple((0, int(p), p) if p.isdigit() else (1, p.lower(), p) for p in parts if p != "") + (text,)


def from_env_reference(value: str, unset: Callable[[str], str]) -> str:
    """``value``, or for ``'$VAR'`` / ``'${VAR}'`` the value of that environment variable.

    Raises ``FileNotFoundError(unset(VAR))`` where the variable is not set (or empty).
    """
    if not value.startswith("$"):
        return value
    var = value[1:].strip("{}")
    if not os.environ.get(var):
        raise FileNotFoundError(unset(var))
    return os.environ[var]
