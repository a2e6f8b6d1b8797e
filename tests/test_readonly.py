"""Results on a read-only disk (an archive, a shared mount) are readable: `status` and `verify`
write nothing, and `analyze`, `figures` and `lmc` write to --out elsewhere, refusing a default
output inside the results with that advice before doing any work.

Tests run as root, which ignores permission bits, so the tree is made read-only by a read-only
bind mount, and, where this process may not mount, by making every write under it fail with
EROFS as a read-only file system does."""

from __future__ import annotations

import builtins
import errno
import fcntl
import io
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from maskstudy.cli import main
from maskstudy.runs.lock import LOCK_FILE, is_locked
from maskstudy.runs.sweep import open_sweep

Freeze = Callable[[Path], Path]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
READ_ONLY = os.strerror(errno.EROFS)  # "Read-only file system"


def mount_read_only(tree: Path) -> None:
    """Bind-mount ``tree`` read-only onto itself; skip the test where that is not allowed."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a bind mount needs root and mount(8)")
    done = subprocess.run(["mount", "--bind", "-o", "ro", tree, tree], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mount --bind -o ro is not allowed here: {done.stderr.decode().strip()}")
    if os.access(tree, os.W_OK):  # an old mount(8) ignores ro on a bind
        subprocess.run(["umount", tree], check=True)
        pytest.skip("mount --bind -o ro left the tree writable")


def refuse_writes(monkeypatch: pytest.MonkeyPatch, tree: Path) -> None:
    """Make each call that creates, changes or removes a file under ``tree`` fail with EROFS."""
    root = tree.resolve()

    def inside(path: object) -> bool:
        return isinstance(path, str | bytes | os.PathLike) and (
            Path(os.fsdecode(path)).resolve().is_relative_to(root)
        )

    def guard(real: Callable, paths: int, writes: Callable[..., bool]) -> Callable:
        def refusing(*args, **kwargs):
            if writes(*args, **kwargs) and any(inside(p) for p in args[:paths]):
                raise OSError(errno.EROFS, READ_ONLY, os.fsdecode(args[0]))
            return real(*args, **kwargs)

        return refusing

    def by_flags(path, flags, *args, **kwargs) -> bool:
        return bool(flags & WRITE_FLAGS)

    def by_mode(file, mode="r", *args, **kwargs) -> bool:
        return any(c in mode for c in "wax+")

    def always(*args, **kwargs) -> bool:
        return True

    for module, name, paths, writes in [
        (os, "open", 1, by_flags),
        (builtins, "open", 1, by_mode),
        (io, "open", 1, by_mode),
        (os, "mkdir", 1, always),
        (os, "unlink", 1, always),
        (os, "remove", 1, always),
        (os, "rmdir", 1, always),
        (os, "replace", 2, always),
        (os, "rename", 2, always),
    ]:
        monkeypatch.setattr(module, name, guard(getattr(module, name), paths, writes))


@pytest.fixture(params=["mount", "patched"])
def freeze(request, monkeypatch) -> Iterator[Freeze]:
    """``freeze(tree)`` makes ``tree`` read-only (a bind mount, or patched writes) until the
    test ends."""
    mounted: list[Path] = []

    def frozen(tree: Path) -> Path:
        if request.param == "mount":
            mount_read_only(tree)
            mounted.append(tree)
        else:
            refuse_writes(monkeypatch, tree)
        return tree

    yield frozen
    for tree in mounted:
        subprocess.run(["umount", tree], check=True)


@pytest.fixture
def sweep(conv_sweep_dir, tmp_path) -> Path:
    """A writable copy of the finished conv sweep (4 runs, levels 0-2), without the outputs
    other tests may have written into it."""
    ignore = shutil.ignore_patterns("analysis", "figures")
    return Path(shutil.copytree(conv_sweep_dir, tmp_path / "sweep", ignore=ignore))


def run_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if (p / "config.json").is_file())


def test_status_reads_states_without_writing(sweep, freeze, capsys):
    partial, pending, *_ = run_dirs(sweep)
    (partial / "levels" / "02" / "DONE").unlink()
    shutil.rmtree(pending)
    freeze(sweep)
    states = open_sweep(sweep).status().set_index("run_id")["state"]
    assert states[partial.name] == "partial" and states[pending.name] == "pending"
    assert (states == "done").sum() == 2
    assert main(["status", str(sweep)]) == 0
    fd = os.open(partial / LOCK_FILE, os.O_RDONLY)  # a trainer's lock, as far as flock goes
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert is_locked(partial) and not is_locked(pending)
        assert open_sweep(sweep).status().set_index("run_id")["state"][partial.name] == "running"
    finally:
        os.close(fd)
    assert not is_locked(partial)


def test_analyze_asks_for_out_and_writes_there(sweep, freeze, tmp_path, capsys):
    freeze(sweep)
    assert main(["verify", str(sweep)]) == 0  # reading needs no write
    assert main(["analyze", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write to {sweep / 'analysis'}: {READ_ONLY}; pass --out DIR" in err
    assert main(["analyze", str(sweep), "--out", str(sweep / "mine")]) == 2
    err = capsys.readouterr().err
    assert f"cannot write to {sweep / 'mine'}: {READ_ONLY}\n" in err  # asked for: no advice
    assert main(["analyze", str(sweep), "--out", str(tmp_path / "tables")]) == 0
    assert (tmp_path / "tables" / "overlap.csv").is_file()
    assert not (sweep / "analysis").exists()


def test_figures_ask_for_out_and_draw_there(sweep, freeze, tmp_path, capsys):
    freeze(sweep)
    args = ["figures", str(sweep), "--only", "p1_accuracy", "--format", "png"]
    assert main(args) == 2
    assert f"{sweep / 'figures'}: {READ_ONLY}; pass --out DIR" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "p1_accuracy.png").is_file()


def test_lmc_asks_for_out_before_training_and_writes_there(sweep, freeze, tmp_path, capsys):
    run = freeze(sweep) / run_dirs(sweep)[0].name
    args = ["lmc", str(run), "--level", "1", "--points", "3", "--quiet"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert f"{run / 'analysis'}: {READ_ONLY}; pass --out FILE.csv" in captured.err
    assert "error barrier" not in captured.out  # refused before the probe trained anything
    assert main([*args, "--out", str(tmp_path / "curve.csv")]) == 0
    assert (tmp_path / "curve.csv").is_file()
