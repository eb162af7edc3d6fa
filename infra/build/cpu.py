"""What the build CPU offers int8 kernels, read from ``/proc/cpuinfo``.

onnxruntime's dynamic and static int8 MatMul kernels multiply u8 activations by s8 weights.
With a dot-product instruction (AVX-512 VNNI ``VPDPBUSD``, AVX-VNNI, or AMX tiles) the
products accumulate in 32 bits exactly. Without one (plain AVX2/AVX-512) the kernels use
``VPMADDUBSW``, which adds pairs of products into a saturating 16-bit lane: full-range 8-bit
weights can overflow it, so onnxruntime's guidance is ``reduce_range`` (7-bit weights) there.
Where VNNI exists the 8th bit is free accuracy, so it is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
#: Flags whose instructions accumulate u8×s8 products without 16-bit saturation.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class Int8Host:
    """The reduce_range decision and what it was made from (recorded in the manifest)."""

    reduce_range: bool
    int8_dot_flags: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"reduce_range": self.reduce_range, "cpu_int8_dot_flags": list(self.int8_dot_flags),
                "reduce_range_reason": self.reason}


def cpu_flags(cpuinfo: Path | None = None) -> set[str] | None:
    """The first ``flags`` line of ``cpuinfo`` (default :data:`CPUINFO`) as a set; None where
    there is none (not Linux x86)."""
    cpuinfo = cpuinfo or CPUINFO
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return set(value.split())
    except OSError:
        return None
    return None


def int8_host(cpuinfo: Path | None = None) -> Int8Host:
    """Whether to quantize with ``reduce_range``: yes unless the CPU has a u8×s8 dot product."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return Int8Host(True, (), f"no CPU flags in {cpuinfo or CPUINFO}: 7-bit weights, safe on every CPU")
    found = tuple(f for f in INT8_DOT_FLAGS if f in flags)
    if found:
        return Int8Host(False, found, f"CPU has {', '.join(found)}: full 8-bit weights (no 16-bit saturation)")
    return Int8Host(True, (), "CPU has no VNNI/AMX (" + "/".join(INT8_DOT_FLAGS) + "): 7-bit weights "
                    "avoid VPMADDUBSW's 16-bit saturation")
