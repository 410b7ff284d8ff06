"""A run's peak_rss_mb is its own: not the peak of the (larger) process that started it."""

from __future__ import annotations

import subprocess
import sys

from swiftkit.train.callbacks import peak_rss_mb


def test_a_child_reports_its_own_peak_not_its_parents():
    ballast = bytearray(1500 * 2**20)  # the parent's resident memory grows by 1.5 GiB ...
    ballast[::4096] = b"\1" * len(ballast[::4096])
    assert peak_rss_mb() > 1500
    child = subprocess.run([sys.executable, "-c", "from swiftkit.train.callbacks import peak_rss_mb; "
                            "print(peak_rss_mb())"], capture_output=True, text=True, check=True)
    del ballast
    # ... which a child started after it does not report as its own (importing transformers takes ~400 MiB)
    assert float(child.stdout) < 1000
