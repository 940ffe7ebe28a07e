"""What this CPU can do fast: instruction-set flags from ``/proc/cpuinfo`` (Linux).

Used to refuse bf16 where the CPU has no bf16 instructions (emulated bf16 runs several times
slower than fp32) and to key the ``backend: auto`` measurement cache, so a move to another CPU
re-measures. The flags are read once per process.
"""
from __future__ import annotations

import hashlib
import platform
from functools import lru_cache
from pathlib import Path

#: Flags that matter for the CPU paths here (VNNI: int8 dot products; bf16/AMX: bf16 and int8 matrix units).
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile",
                  "asimd", "bf16", "i8mm", "sve")
#: Any one of these means native bf16 arithmetic (x86: AVX512-BF16 or AMX-BF16; Arm: the BF16 extension).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """Lower-case feature flags of the first CPU (``flags`` on x86, ``Features`` on Arm); empty off Linux."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


def has_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU has native bf16 instructions (any of :data:`BF16_FLAGS`)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_FLAGS)


def bf16_error(flags: frozenset[str] | None = None) -> str | None:
    """None when bf16 runs natively here, else the message refusing it (names the flags looked for)."""
    if has_bf16(flags):
        return None
    return (f"this CPU ({platform.machine()}) has no native bf16: none of the cpuinfo flags "
            f"{', '.join(BF16_FLAGS)} is set, so bf16 would be emulated and slower than fp32; use precision fp32 "
            "(or int8 with backend onnxruntime/openvino)")


def cpu_signature() -> str:
    """Short hash of the machine's CPU: architecture, model name, core count and :data:`RELEVANT_FLAGS` present."""
    import os

    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    present = sorted(f for f in RELEVANT_FLAGS if f in cpu_flags())
    text = f"{platform.machine()}|{name}|{os.cpu_count()}|{','.join(present)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def relevant_flags() -> list[str]:
    """The :data:`RELEVANT_FLAGS` this CPU has (for reports and the auto-selection record)."""
    return sorted(f for f in RELEVANT_FLAGS if f in cpu_flags())
