"""What the CPU can do fast, and the numeric precision to pick for it (pure Python, no torch).

Machines of one kind differ: on an AVX512-bf16 (or AMX) CPU, bf16 autocast + channels_last runs the
stan networks about 2x faster than fp32; on an AVX2-only CPU (measured: AMD EPYC Zen 3) the same bf16
path is 6x (stan_s) to 18x (EfficientNet-Lite0) SLOWER, because oneDNN emulates bf16 there. So
``precision: auto`` decides at run time from the CPU flags, never from a hard-coded default.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# CPU flags (Linux /proc/cpuinfo names) with native bf16 matrix arithmetic
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (empty where /proc/cpuinfo is not readable)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_has_fast_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU computes bf16 natively (AVX512-bf16 or AMX); ARM (``bf16`` feature) too."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_FLAGS) or ("bf16" in flags and platform.machine() in ("aarch64", "arm64"))


@functools.lru_cache(maxsize=1)
def cpu_model_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_description(flags: frozenset[str] | None = None) -> str:
    """One line naming the CPU path, e.g. ``AMD EPYC (avx512_bf16, avx2: bf16 fast)`` for reports."""
    flags = cpu_flags() if flags is None else flags
    name = cpu_model_name()
    isa = [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags]
    fast = "bf16 fast" if cpu_has_fast_bf16(flags) else "bf16 emulated: fp32"
    return f"{name} ({', '.join(isa) or 'no AVX'}: {fast})"


def resolve_precision(
    precision: str, device: str, cuda_bf16: bool = False, flags: frozenset[str] | None = None
) -> str:
    """The concrete precision for ``precision`` (``auto`` | fp32 | bf16 | fp16) on ``device``.

    ``auto``: on CUDA bf16 where the GPU supports it (``cuda_bf16``), else fp16; on a CPU bf16 only
    when it computes bf16 natively (:func:`cpu_has_fast_bf16`), else fp32. Explicit choices are kept
    (fp16 on a CPU is refused: CPU autocast is bf16).
    """
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, not {precision!r}")
    on_cuda = device.startswith("cuda")
    if precision == "auto":
        if on_cuda:
            return "bf16" if cuda_bf16 else "fp16"
        return "bf16" if cpu_has_fast_bf16(flags) else "fp32"
    if precision == "fp16" and not on_cuda:
        raise ValueError("precision fp16 needs a CUDA device; on a CPU use auto, fp32 or bf16")
    return precision
