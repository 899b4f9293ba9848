"""The CPU's peak FLOP rate for a training precision, from the features /proc/cpuinfo lists.

The FLOPs per cycle per core are assumptions from the vendors' documents, printed with every
figure; they cannot be read from the CPU (the number of FMA units, for one, is not a flag):
- Intel AMX (`amx_bf16`): 1024 bfloat16 FLOPs per cycle per core (Intel's Sapphire Rapids
  materials: "2048 INT8 / 1024 BF16 operations per cycle per core"), only for the matrix
  multiplies oneDNN sends to the tiles; float32 still runs on AVX-512.
- Intel AVX-512 (`avx512f`): two 512-bit FMA units, 16 lanes x 2 (multiply and add) x 2 = 64
  float32 FLOPs per cycle (Intel's optimisation manual; some Xeon Silver and Bronze parts have one
  unit: 32).
- AMD Zen 4 (`avx512f`, CPU family 25): AVX-512 runs on two 256-bit FMA pipes, 8 x 2 x 2 = 32
  float32 FLOPs per cycle (AMD's Zen 4 software optimisation guide); Zen 5 (family 26) has a full
  512-bit datapath on EPYC: 64 (its mobile parts stay at 32).
- AVX2 with FMA: two 256-bit FMA units, 32 float32 FLOPs per cycle (Haswell and later, Zen 2
  and 3); without FMA, 16.
- bfloat16 without AMX (`avx512_bf16`: VDPBF16PS, two bfloat16 products per float32 lane at the
  FMA's rate): 2x float32, the least certain figure here (the instruction's throughput varies by
  core and is not in every guide). Without native bfloat16, no more than float32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Peak:
    """A peak FLOP rate and the assumption behind it."""

    cores: int
    ghz: float
    flops_per_cycle: int
    source: str

    @property
    def flops(self) -> float:
        return self.cores * self.ghz * 1e9 * self.flops_per_cycle

    def describe(self) -> str:
        return (
            f"{self.cores} cores x {self.ghz:.2f} GHz x {self.flops_per_cycle} FLOPs/cycle/core = "
            f"{self.flops / 1e9:.0f} GFLOP/s ({self.source})"
        )


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def float32_per_cycle(info: dict[str, str]) -> tuple[int, str]:
    """Float32 FLOPs per cycle per core and why."""
    flags = set(info.get("flags", "").split())
    amd = info.get("vendor_id") == "AuthenticAMD"
    family = int(info.get("cpu family", "0") or 0)
    if "avx512f" in flags and amd and family >= 26:
        return 64, "AMD Zen 5 (family 26): AVX-512 on a 512-bit datapath, 2 FMA x 16 lanes x 2"
    if "avx512f" in flags and amd:
        return 32, f"AMD family {family} (Zen 4): AVX-512 on two 256-bit FMA pipes, 2 x 8 lanes x 2"
    if "avx512f" in flags:
        return 64, "Intel AVX-512, assuming two 512-bit FMA units (2 x 16 lanes x 2; one-unit parts: 32)"
    if {"avx2", "fma"} <= flags:
        return 32, "AVX2 with FMA, two 256-bit FMA units (2 x 8 lanes x 2)"
    return 16, "no AVX2 FMA found: assuming 16 (SSE/AVX without FMA)"


def cpu_peak(policy: str, *, ghz: float, fp32_per_cycle: int | None = None, bf16_per_cycle: int | None = None) -> Peak:
    """The peak for a Keras dtype policy on this CPU; the `*_per_cycle` arguments override the detection."""
    info = cpuinfo()
    flags = set(info.get("flags", "").split())
    cores = os.cpu_count() or 1
    fp32, why = float32_per_cycle(info)
    if fp32_per_cycle:
        fp32, why = fp32_per_cycle, "given on the command line"
    if policy != "mixed_bfloat16":
        return Peak(cores, ghz, fp32, f"float32: {why}")
    if bf16_per_cycle:
        return Peak(cores, ghz, bf16_per_cycle, "bfloat16: given on the command line")
    if "amx_bf16" in flags:
        return Peak(cores, ghz, 1024, "bfloat16 on AMX tiles: Intel's 1024 BF16 operations/cycle/core")
    if "avx512_bf16" in flags:
        return Peak(cores, ghz, 2 * fp32, f"bfloat16: avx512_bf16 dot products, 2x float32's {fp32} ({why})")
    return Peak(cores, ghz, fp32, f"bfloat16 emulated: no more than float32's {fp32} ({why})")


def cpu_ghz() -> float:
    """The clock /proc/cpuinfo reports (the current or nominal one; boost may run higher)."""
    mhz = cpuinfo().get("cpu MHz")
    return float(mhz) / 1000 if mhz else 0.0
