"""The int8 kernel assumption a build gates under: safe on every CPU the function may land on.

onnxruntime's dynamic and static int8 MatMul kernels multiply u8 activations by s8 weights.
With a dot-product instruction (AVX-512 VNNI ``VPDPBUSD``, AVX-VNNI, or AMX tiles) the
products accumulate in 32 bits exactly. Without one (plain AVX2/AVX-512) the kernels use
``VPMADDUBSW``, which adds pairs of products into a saturating 16-bit lane: full-range 8-bit
weights can overflow it (255 × 127 × 2 > 32,767), so onnxruntime's guidance is
``reduce_range`` (7-bit weights) there.

Lambda does not promise which x86 generation a function lands on, and the accuracy gate runs
on the build host's kernels. So the decision is made for the **target**, not the build host:

* ``x86_64`` (default): 7-bit weights. 255 × 64 × 2 < 32,767, so the VNNI and the
  non-VNNI kernels compute the same integers and the gate's verdict holds on every x86 CPU,
  whatever the build host has.
* ``x86_64`` with ``cpu_features`` in the catalog naming a dot-product flag (the user knows
  every host has it, e.g. a SageMaker instance type): full 8-bit weights. Gated on a host
  without that flag, the gate sees the saturating kernel, so its verdict is pessimistic,
  never optimistic.
* ``arm64``: full 8-bit weights; onnxruntime's arm64 kernels widen products (``SDOT``/``UDOT``
  or ``SMULL`` + ``SADALP``) and never saturate.

The manifest records the assumption (``quantization.int8_target``) and what the build host had.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
#: Flags whose instructions accumulate u8×s8 products without 16-bit saturation.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: x86 features a catalog may pin with ``cpu_features`` (the kernels onnxruntime dispatches on).
PINNABLE_FLAGS = ("avx2", "avx512f", *INT8_DOT_FLAGS)


@dataclass(frozen=True)
class Int8Host:
    """The reduce_range decision, the target assumption it was made for, and the build host."""

    reduce_range: bool
    int8_dot_flags: tuple[str, ...]  # the build host's
    reason: str
    architecture: str = "x86_64"
    cpu_features: tuple[str, ...] = ()  # pinned by the catalog
    gate_kernels: str = field(default="")

    def to_dict(self) -> dict[str, object]:
        return {"reduce_range": self.reduce_range, "cpu_int8_dot_flags": list(self.int8_dot_flags),
                "reduce_range_reason": self.reason,
                "int8_target": {"architecture": self.architecture, "cpu_features": list(self.cpu_features),
                                "assumption": self.reason, "gate_kernels": self.gate_kernels}}


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


def int8_host(cpuinfo: Path | None = None, *, architecture: str = "x86_64",
              cpu_features: Iterable[str] = ()) -> Int8Host:
    """Whether to quantize with ``reduce_range`` for a function on ``architecture`` whose
    hosts all have ``cpu_features`` (none pinned: any CPU of the architecture)."""
    pinned = tuple(cpu_features)
    flags = cpu_flags(cpuinfo)
    build_dot = tuple(f for f in INT8_DOT_FLAGS if f in (flags or ()))
    build_arch = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
    saturating_here = build_arch == "x86_64" and not build_dot
    if architecture == "arm64":
        return Int8Host(False, build_dot, "arm64 target: onnxruntime's int8 kernels there widen products "
                        "(SDOT/UDOT or SMULL+SADALP) and never saturate: full 8-bit weights",
                        architecture, pinned, _gate_kernels(False, saturating_here))
    dot = tuple(f for f in INT8_DOT_FLAGS if f in pinned)
    if dot:
        return Int8Host(False, build_dot, f"every host has {', '.join(dot)} (catalog cpu_features): full "
                        "8-bit weights, exact 32-bit accumulation", architecture, pinned,
                        _gate_kernels(False, saturating_here))
    return Int8Host(True, build_dot, "any x86-64 CPU (Lambda does not promise VNNI): 7-bit weights, so "
                    "VPMADDUBSW's 16-bit lanes cannot saturate and hosts with and without VNNI compute the "
                    "same integers; pin cpu_features: [avx512_vnni] in the catalog for full 8-bit weights",
                    architecture, pinned, _gate_kernels(True, saturating_here))


def _gate_kernels(reduce_range: bool, saturating_here: bool) -> str:
    """How the build host's kernels relate to the target's: what the gate's verdict means."""
    if reduce_range:
        return "exact on every x86 kernel: the verdict holds on hosts with and without VNNI"
    if saturating_here:
        return ("gated on this host's saturating (no VNNI) kernel: the target's exact kernels are at least "
                "as accurate, so the verdict is pessimistic")
    return "gated on an exact (dot-product) kernel, as the target's"
