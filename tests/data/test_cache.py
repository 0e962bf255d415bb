import threading
import time
from pathlib import Path

import pytest

from cvtasks.data.cache import default_cache_dir, write_once


def test_cvtasks_cache_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CVTASKS_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "c"


def test_xdg_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CVTASKS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "cvtasks"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "cvtasks"


def test_empty_variable_is_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CVTASKS_CACHE", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "cvtasks"


def test_write_once_renames_a_complete_folder_and_only_once(tmp_path: Path) -> None:
    calls = []

    def fill(folder: Path) -> None:
        calls.append(folder)
        (folder / "a.txt").write_text("a")

    final = write_once(tmp_path / "data", fill)
    assert (final / "a.txt").read_text() == "a"
    assert write_once(tmp_path / "data", fill) == final and len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_killed_writers_folder_is_removed_by_the_next_writer(tmp_path: Path) -> None:
    stale = tmp_path / ".data.k2j4h1x_.tmp"
    stale.mkdir()
    (stale / "half.png").write_bytes(b"x")
    write_once(tmp_path / "data", lambda folder: (folder / "a.txt").write_text("a"))
    assert not stale.exists() and (tmp_path / "data" / "a.txt").exists()


def test_concurrent_writers_generate_once_and_both_get_the_folder(tmp_path: Path) -> None:
    started = threading.Event()
    calls = []

    def slow_fill(folder: Path) -> None:
        calls.append(folder)
        started.set()
        time.sleep(0.3)
        (folder / "a.txt").write_text("a")

    results: list[Path] = []
    first = threading.Thread(target=lambda: results.append(write_once(tmp_path / "d", slow_fill)))
    first.start()
    assert started.wait(10)
    results.append(write_once(tmp_path / "d", slow_fill))  # waits for the first, then reuses it
    first.join()
    assert len(calls) == 1 and results == [tmp_path / "d", tmp_path / "d"]
