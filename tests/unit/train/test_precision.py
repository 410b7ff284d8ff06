"""--bf16 on the CPU: whether the CPU has bfloat16 instructions, read from its cpuinfo flags."""

from __future__ import annotations

import pytest
import torch

from swiftkit.train.precision import cpu_bf16_notice, cpu_native_bf16

_FLAGS = "processor\t: 0\nflags\t\t: fpu sse avx2 fma {}\nbugs\t\t: spectre_v1\n"


def test_native_bf16_is_read_from_the_cpuinfo_flags(tmp_path):
    for extra, native in (("avx512f avx512_bf16", True), ("amx_tile amx_bf16", True), ("avx512f avx512bw", False),
                          ("", False)):
        info = tmp_path / "cpuinfo"
        info.write_text(_FLAGS.format(extra))
        assert cpu_native_bf16(str(info)) is native, extra
    (tmp_path / "noflags").write_text("processor\t: 0\n")
    assert cpu_native_bf16(str(tmp_path / "noflags")) is None
    assert cpu_native_bf16(str(tmp_path / "missing")) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="the notice is about CPU training; the machine has a CUDA GPU")
def test_the_notice_names_the_emulation_only_where_bf16_is_asked_on_a_cpu_without_it(tmp_path):
    without, native, unknown = tmp_path / "without", tmp_path / "native", tmp_path / "unknown"
    without.write_text(_FLAGS.format("avx512f"))
    native.write_text(_FLAGS.format("avx512_bf16"))
    unknown.write_text("processor\t: 0\n")
    line = cpu_bf16_notice(True, str(without))
    assert line.startswith("--bf16: this CPU has no bfloat16 instructions") and "--bf16 false" in line
    assert cpu_bf16_notice(True, str(native)) is None
    assert cpu_bf16_notice(True, str(unknown)) is None  # flags not readable: no claim
    assert cpu_bf16_notice(False, str(without)) is None and cpu_bf16_notice(None, str(without)) is None
