"""The machine a result was measured on: :func:`device_name` and :func:`machine`, shared by the profiler, the
trainer, the speed-run recipe, ``compare`` and the benchmark scripts (so none of them imports another for it)."""
from __future__ import annotations

import platform
from typing import Any

import torch

__all__ = ["device_name", "machine"]


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
