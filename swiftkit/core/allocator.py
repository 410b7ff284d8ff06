"""The memory allocator a training command runs under.

A training step frees and allocates hundreds of activation-sized blocks whose sizes change with
every batch. glibc's malloc serves blocks below its (self-raising) mmap threshold from its heaps and
keeps what is freed there: on the SmolLM2 job of ``benchmarks/sft_vs_trl.py`` a 2-core run peaks
~40% above what is alive at any moment. tcmalloc keeps size-classed free lists and peaks close to the
live memory, at the same speed (docs/sft.md, "Speed and memory on CPU"). So ``swiftkit sft|pt|rlhf``
started from the command line re-executes itself once with tcmalloc preloaded when the library is
installed (Debian/Ubuntu: ``libtcmalloc-minimal4``; ``make demo`` and ``make test`` install it).

``SWIFTKIT_ALLOCATOR`` chooses: ``auto`` (the default: tcmalloc when installed, else the system's),
``tcmalloc`` or ``jemalloc`` (an error when not installed), ``system`` (never preload). An allocator
already in ``LD_PRELOAD`` is kept as it is. The Python API (``swiftkit.sft(...)``) runs in the caller's
process, whose allocator is fixed when it starts: a script calls ``swiftkit.preload_allocator()`` first
thing (it re-executes the script the same way), or is started with ``LD_PRELOAD`` set. The run's
``manifest.json`` records the allocator it ran under.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "SWIFTKIT_ALLOCATOR"
CHOICES = ("auto", "tcmalloc", "jemalloc", "system")
LIBRARIES = {"tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"), "jemalloc": ("libjemalloc.so.2",)}
PACKAGES = {"tcmalloc": "libtcmalloc-minimal4", "jemalloc": "libjemalloc2"}
# Where Debian, Ubuntu, Fedora and a Python prefix put shared libraries.
SEARCH_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
               "/usr/local/lib", "/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu")
# tcmalloc reports every allocation over 1 GiB on stderr unless told otherwise; model loading makes such.
QUIET = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)}


class AllocatorError(ValueError):
    """SWIFTKIT_ALLOCATOR names an allocator that is unknown or not installed."""


def find_library(kind: str, dirs=SEARCH_DIRS) -> str | None:
    """The path of ``kind``'s shared library (tcmalloc, jemalloc), or None when not installed."""
    for folder in (*dirs, str(Path(sys.prefix) / "lib")):
        for name in LIBRARIES[kind]:
            path = Path(folder) / name
            if path.is_file():
                return str(path)
    return None


def named_in(preload: str) -> str | None:
    """Which allocator an ``LD_PRELOAD`` value preloads (tcmalloc, jemalloc), or None."""
    for kind, names in LIBRARIES.items():
        stems = {name.split(".so")[0] for name in names}
        if any(Path(entry).name.split(".so")[0] in stems for entry in preload.replace(" ", ":").split(":") if entry):
            return kind
    return None


def choice(environ) -> str:
    """SWIFTKIT_ALLOCATOR's value (default auto), checked."""
    value = environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise AllocatorError(f"{ENV}={environ.get(ENV)!r}: choose one of {', '.join(CHOICES)}")
    return value


def training_env(environ=None, dirs=SEARCH_DIRS) -> dict | None:
    """The environment to re-execute a training command in (an allocator preloaded), or None to run
    as it is: SWIFTKIT_ALLOCATOR=system, an allocator already preloaded, or none installed under auto."""
    environ = dict(os.environ if environ is None else environ)
    wanted = choice(environ)
    preload = environ.get("LD_PRELOAD", "")
    if wanted == "system" or named_in(preload):
        return None
    kind = "tcmalloc" if wanted == "auto" else wanted
    library = find_library(kind, dirs)
    if library is None:
        if wanted == "auto":
            return None
        raise AllocatorError(f"{ENV}={wanted}: {LIBRARIES[kind][0]} is not installed (Debian/Ubuntu: apt-get install "
                             f"{PACKAGES[kind]}); {ENV}=system uses the system allocator")
    return {**environ, **QUIET, "LD_PRELOAD": ":".join(p for p in (library, preload) if p)}


def current() -> str:
    """The allocator this process runs under: tcmalloc, jemalloc or system."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return named_in(os.environ.get("LD_PRELOAD", "")) or "system"
    for kind, names in LIBRARIES.items():
        if any(name.split(".so")[0] + ".so" in maps for name in names):
            return kind
    return "system"


def preload_allocator(environ=None) -> None:
    """Re-execute this Python process with the allocator SWIFTKIT_ALLOCATOR asks for (tcmalloc when
    installed) preloaded; returns only when nothing needs to change. Call it before anything else
    happens in a script: the process starts over from its first line."""
    env = training_env(environ)
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
