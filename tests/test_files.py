"""Atomic writes: complete or absent, flushed, and no leftovers after a killed writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hrinv_nb import files


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_write_writes_and_leaves_nothing_else(tmp_path: Path):
    target = tmp_path / "sub" / "a.bin"
    assert files.atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"new")) == target
    assert target.read_bytes() == b"new"
    assert _hidden(target.parent) == []
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_writer_keeps_old_file_and_no_temporary(tmp_path: Path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def boom(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise KeyboardInterrupt  # Ctrl-C during a save

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(target, boom)
    assert target.read_bytes() == b"old"
    assert _hidden(tmp_path) == []


def test_fsyncs_file_and_folder(tmp_path: Path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.fstat(fd).st_mode)
        real(fd)

    monkeypatch.setattr(files.os, "fsync", spy)
    files.atomic_write(tmp_path / "a.bin", lambda tmp: Path(tmp).write_bytes(b"x"))
    import stat

    assert any(stat.S_ISREG(m) for m in synced), "the temporary file is fsynced before the rename"
    assert any(stat.S_ISDIR(m) for m in synced), "the folder is fsynced after the rename"


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from hrinv_nb.files import atomic_write

    def slow(tmp):
        Path(tmp).write_bytes(b"partial" * 1000)
        print("writing", flush=True)
        time.sleep(60)

    atomic_write(sys.argv[1], slow)
    """
)


def test_sigkill_mid_write_leaves_no_file_and_next_write_cleans_up(tmp_path: Path):
    target = tmp_path / "result.pt"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert child.stdout.readline().strip() == "writing"
        leftovers = _hidden(tmp_path)
        assert len(leftovers) == 1 and leftovers[0].startswith(".result.pt.") and leftovers[0].endswith(".tmp")
        assert f".{child.pid}-" in leftovers[0], "the temporary's name carries the writer's pid"
        assert files.stale_temporaries(target) == [], "a live writer's temporary is not stale"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not target.exists(), "a killed write never appears at the final path"
    assert len(_hidden(tmp_path)) == 1, "SIGKILL cannot clean up (what the next write is for)"
    assert [p.name for p in files.stale_temporaries(target)] == leftovers

    files.atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"done"))
    assert target.read_bytes() == b"done"
    assert _hidden(tmp_path) == [], "the next write removed the dead writer's temporary"


def test_stale_rules(tmp_path: Path):
    target = tmp_path / "a.png"
    mine = tmp_path / f".a.png.{os.getpid()}-0123abcd.tmp"  # this process: not stale by pid
    legacy_new = tmp_path / ".a.png.x1y2z3_q.tmp"  # old mkstemp name, fresh: left alone
    legacy_old = tmp_path / ".a.png.abcdefgh.tmp"  # old mkstemp name, hours old: stale
    other_target = tmp_path / ".a.png.json.999999999-0123abcd.tmp"  # a temporary of a.png.json
    unrelated = tmp_path / ".a.png.notes.txt"
    for p in (mine, legacy_new, legacy_old, other_target, unrelated):
        p.write_bytes(b"x")
    hours_ago = time.time() - 3 * 3600
    os.utime(legacy_old, (hours_ago, hours_ago))
    assert files.stale_temporaries(target) == [legacy_old]
    assert [p.name for p in files.stale_temporaries(tmp_path / "a.png.json")] == [other_target.name]
    os.utime(mine, (hours_ago, hours_ago))
    assert mine in files.stale_temporaries(target), "any temporary older than the limit is stale"


def test_atomic_write_all_is_all_or_nothing(tmp_path: Path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")

    def fail(tmp: str) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        files.atomic_write_all([(a, lambda tmp: Path(tmp).write_text("new a")), (b, fail)])
    assert (a.read_text(), b.read_text()) == ("old a", "old b"), "no file is renamed before all are written"
    assert _hidden(tmp_path) == []
    files.atomic_write_all(
        [(a, lambda tmp: Path(tmp).write_text("new a")), (b, lambda tmp: Path(tmp).write_text("new b"))]
    )
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    with pytest.raises(ValueError):
        files.atomic_write_all([(a, print), (a, print)])
