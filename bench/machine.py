"""What every benchmark result states about where it ran (one description for all of bench/).

Our machines differ in CPU features, and the features decide the numbers: OpenVINO
computes in bf16 only where the CPU has native bf16 (AVX512-BF16 or AMX), and a
bf16 matmul on a CPU without it runs in slow emulation. So the description names
the features, and ``native_bf16`` tells a benchmark whether a bf16 measurement is
worth making at all.
"""
from __future__ import annotations

import os
import platform

# the /proc/cpuinfo flags that decide inference speed and precision, in order of age
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
             "amx_bf16", "asimd", "sve", "bf16", "i8mm")
NATIVE_BF16 = {"avx512_bf16", "amx_bf16", "bf16"}  # x86: AVX512-BF16 or AMX-BF16; aarch64: the BF16 extension


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none: not Linux)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if out:
                        break
                    continue
                key, _, value = line.partition(":")
                out.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return out


def cpu_flags() -> set[str]:
    """Every feature flag of the CPU (x86 ``flags``, aarch64 ``Features``)."""
    info = _cpuinfo()
    return set((info.get("flags") or info.get("Features") or "").split())


def isa(flags: set[str] | None = None) -> list[str]:
    """The features of ``ISA_FLAGS`` this CPU has: what a reader needs to compare two results."""
    flags = cpu_flags() if flags is None else flags
    return [f for f in ISA_FLAGS if f in flags]


def native_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU computes bf16 in hardware; without it a bf16 matmul is emulated and minutes slow."""
    return bool(NATIVE_BF16 & (cpu_flags() if flags is None else flags))


def describe(gpu: str | None = None) -> str:
    """Cores, architecture, CPU model, memory, the GPU used ("no GPU" unless one is named) and the CPU's features."""
    info = _cpuinfo()
    cpu = info.get("model name") or info.get("Model name") or "unknown CPU"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    flags = cpu_flags()
    features = "unknown" if not flags else " ".join(isa(flags)) or "none of note"
    bf16 = "native bf16" if native_bf16(flags) else "no native bf16"
    return (f"{os.cpu_count()} cores {platform.machine()} ({cpu}), {mem:.0f} GiB, "
            f"Python {platform.python_version()}, {gpu or 'no GPU'}; CPU features: {features} ({bf16})")


def cpu_record() -> dict:
    """The CPU's features as fields of a result, next to the numbers they explain."""
    flags = cpu_flags()
    return {"isa": isa(flags), "native_bf16": native_bf16(flags), "openvino": openvino_cpu()}


def openvino_cpu() -> dict | None:
    """What OpenVINO's CPU plugin reports here: its optimisation capabilities and the precision it picks by default.

    The default is what a model compiled without a precision hint computes in (bf16 where the CPU
    has it, else f32); None where OpenVINO is not installed.
    """
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    return {"version": ov.__version__.split("-")[0],
            "capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
            "default_precision": precision_name(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))}


def precision_name(hint: object) -> str:
    """OpenVINO's element type (``<Type: 'bfloat16'>``, ``f32``) as this project writes precisions: bf16, fp16, fp32."""
    text = str(hint).lower()
    return "bf16" if "bf" in text else "fp16" if "16" in text else "fp32"
