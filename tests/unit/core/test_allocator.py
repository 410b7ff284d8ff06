"""SWIFTKIT_ALLOCATOR: which allocator a training command re-executes itself under."""

from __future__ import annotations

from pathlib import Path

import pytest

from swiftkit.core.allocator import QUIET, AllocatorError, current, find_library, named_in, training_env


@pytest.fixture
def libdir(tmp_path):
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")
    return (str(tmp_path),)


def test_auto_preloads_tcmalloc_where_installed_and_keeps_an_existing_preload(libdir):
    env = training_env({"PATH": "/bin", "LD_PRELOAD": "/opt/libother.so"}, dirs=libdir)
    assert env["LD_PRELOAD"] == f"{libdir[0]}/libtcmalloc_minimal.so.4:/opt/libother.so"
    assert env["PATH"] == "/bin" and env.items() >= QUIET.items()
    assert training_env({}, dirs=libdir)["LD_PRELOAD"] == f"{libdir[0]}/libtcmalloc_minimal.so.4"


def test_nothing_changes_when_asked_for_the_system_one_already_preloaded_or_none_installed(libdir, tmp_path):
    assert training_env({"SWIFTKIT_ALLOCATOR": "system"}, dirs=libdir) is None
    assert training_env({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, dirs=libdir) is None
    assert training_env({"LD_PRELOAD": "libtcmalloc.so.4"}, dirs=libdir) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    if find_library("tcmalloc", dirs=(str(empty),)) is None:  # not in sys.prefix/lib either
        assert training_env({}, dirs=(str(empty),)) is None


def test_an_allocator_asked_for_by_name_must_be_installed(libdir):
    with pytest.raises(AllocatorError, match="libjemalloc.so.2 is not installed .*apt-get install libjemalloc2"):
        training_env({"SWIFTKIT_ALLOCATOR": "jemalloc"}, dirs=libdir)
    with pytest.raises(AllocatorError, match="SWIFTKIT_ALLOCATOR='mimalloc': choose one of auto, tcmalloc"):
        training_env({"SWIFTKIT_ALLOCATOR": "mimalloc"}, dirs=libdir)
    assert training_env({"SWIFTKIT_ALLOCATOR": "TCMalloc"}, dirs=libdir)["LD_PRELOAD"].endswith(".so.4")


def test_preload_names_are_recognised():
    assert named_in("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4") == "tcmalloc"
    assert named_in("libfoo.so /usr/lib/libjemalloc.so.2") == "jemalloc"
    assert named_in("/opt/libtcmallocx.so") is None and named_in("") is None


def test_this_process_reports_the_allocator_it_runs_under():
    maps = Path("/proc/self/maps").read_text()
    assert current() == ("tcmalloc" if "libtcmalloc" in maps else "jemalloc" if "libjemalloc" in maps else "system")
