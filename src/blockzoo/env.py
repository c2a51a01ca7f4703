"""The machine a result was measured on: :func:`device_name` and :func:`machine`, shared by the profiler, the
trainer, the speed-run recipe, ``compare`` and the benchmark scripts (so none of them imports another for it)."""
from __future__ import annotations

import platform
from typing import Any

import torch

__all__ = ["device_name", "machine", "native_bf16"]


def native_bf16(dev: torch.device | str = "cpu") -> bool:
    """Whether ``dev`` computes bf16 matmuls and convolutions in hardware: a CUDA GPU that supports bf16, or a CPU with
    AVX512-BF16 or AMX tiles. Elsewhere PyTorch emulates bf16 and autocast is slower than fp32 (measured on a 2-core
    AVX-512 Xeon without either: a 2048^2 matmul at 54 GFLOP/s in bf16 vs 273 in fp32, SpeedNet training 2.7x
    slower)."""
    dev = torch.device(dev)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type != "cpu":
        return False
    cpu = torch.cpu
    return any(getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def device_name(dev: torch.device | str = "cpu") -> str:
    """Human-readable name of a device: the GPU's name, the CPU model from /proc/cpuinfo (else ``platform``), or
    ``str(device)`` for other device types."""
    dev = torch.device(dev)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type != "cpu":
        return str(dev)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int | None = None) -> dict[str, Any]:
    """``{"cpu", "threads", "torch", "python", "cuda"}``: the CPU's name, the torch thread count (``threads`` when
    the measurement sets its own), the torch and Python versions and the first GPU's name (``None`` without CUDA)."""
    return {"cpu": device_name("cpu"), "threads": threads or torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
