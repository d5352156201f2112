"""What the CPU can do fast, the numeric precision to pick for it, and how many threads this process
may use without spinning against other processes (pure Python, no torch).

Machines of one kind differ: on an AVX512-bf16 (or AMX) CPU, bf16 autocast + channels_last runs the
stan networks about 2x faster than fp32; on an AVX2-only CPU (measured: AMD EPYC Zen 3) the same bf16
path is 6x (stan_s) to 18x (EfficientNet-Lite0) SLOWER, because oneDNN emulates bf16 there. So
``precision: auto`` decides at run time from the CPU flags, never from a hard-coded default.
"""

from __future__ import annotations

import functools
import math
import os
import platform
from collections.abc import MutableMapping
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


# ------------------------------------------------------------------------------------------------
# CPU threads on a machine that is never idle
#
# torch's OpenMP (GNU libgomp on Linux) lets idle worker threads spin for ~300k iterations before
# they sleep. With another busy process on the same cores, the spinning threads take the CPU from
# the threads with work: measured here, one competing torch process made a stan_s_temporal frame go
# from ~30 ms to ~1.1 s (the tester saw 17 ms -> 1.6 s). A passive wait policy (threads sleep at
# once) kept it at ~32 ms. libgomp reads these variables ONCE, when it is loaded (``import torch``),
# so :func:`apply_passive_openmp` runs when the ``perception`` package is imported.
PASSIVE_OPENMP_ENV: dict[str, str] = {
    "OMP_WAIT_POLICY": "PASSIVE",  # GNU libgomp and LLVM libomp: idle threads sleep instead of spinning
    "KMP_BLOCKTIME": "0",  # Intel / LLVM OpenMP (MKL builds using libiomp5): the same, in ms
}


def apply_passive_openmp(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Put :data:`PASSIVE_OPENMP_ENV` into ``environ`` (default ``os.environ``) where the variable is not
    set already (a deliberate ``OMP_WAIT_POLICY=ACTIVE`` is kept); returns what it set.

    Effective only before OpenMP is loaded (``import torch``); child processes inherit it."""
    env = os.environ if environ is None else environ
    done = {}
    for key, value in PASSIVE_OPENMP_ENV.items():
        if key not in env:
            env[key] = value
            done[key] = value
    return done


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (containers)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    return max(1, min(n, math.ceil(quota)) if quota else n)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs granted by the cgroup (v2 ``cpu.max`` or v1 ``cfs_quota_us / cfs_period_us``); None: no limit."""
    try:
        text = (root / "cpu.max").read_text(encoding="utf-8").split()
        if len(text) == 2 and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError):
        pass
    try:
        q = int((root / "cpu" / "cpu.cfs_quota_us").read_text(encoding="utf-8"))
        p = int((root / "cpu" / "cpu.cfs_period_us").read_text(encoding="utf-8"))
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None
