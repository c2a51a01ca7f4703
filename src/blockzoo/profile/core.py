"""``blockzoo.profile_model(model, input_size)``: parameters, MACs/FLOPs, uncounted ops, latency, train-step time and
memory.

What is measured and how (everything is also stated in the returned :class:`ProfileReport`):

* **Parameters**: ``sum(p.numel())`` over ``model.parameters()`` (shared ones once); trainable = ``requires_grad``.
* **MACs / FLOPs** per sample (batch 1, eval mode, fp32) from :func:`blockzoo.profile.counting.count_macs`:
  ``torch.utils.flop_counter`` formulas plus blockzoo's CPU-SDPA, FFT and matrix-vector formulas; FLOPs = 2 x MACs.
  Papers' "FLOPs" are usually MACs. Ops without a formula are listed (ignored by convention / really uncounted).
* **Latency** (eval, ``torch.no_grad``) and **train step** (train mode: forward, ``mean`` of the float outputs as the
  loss, backward, ``torch.optim.SGD(lr=1e-4, momentum=0.9)`` step) are timed with ``time.perf_counter`` per iteration
  (CUDA is synchronised before every clock read) after warm-up, repeating until ``min_time_s`` is spent and at least
  5 iterations ran (or exactly ``iters``). Reported: median, IQR, min (ms), plus batch size, dtype (fp32 or
  bf16/fp16 autocast), channels_last, thread count and device. Throughput = batch size / median.
* **Peak memory** of one extra iteration = bytes live at its start (parameters, buffers, gradients, optimizer state,
  input; unique storages) + the peak of further allocations during the iteration: on CUDA from
  ``torch.cuda.max_memory_allocated`` (after ``reset_peak_memory_stats``), on CPU from the allocation trace of
  ``torch.profiler.profile(profile_memory=True)``; if that trace is unavailable, the process RSS high-water-mark delta.
  The train step's peak is reported when it ran, otherwise the forward's.

The user's model is never run or modified: all measurements use a deep copy on the requested device (the copy is
converted to channels_last if asked). Thread count and the global RNG state are restored afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils._pytree import tree_leaves

from blockzoo.env import device_name
from blockzoo.profile.counting import FFT_CONVENTION, SDPA_CONVENTION, count_macs

__all__ = ["ProfileReport", "profile_model", "profile", "DTYPES"]

DTYPES = {"fp32": None, "float32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}
_CANONICAL_DTYPE = {"fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16",
                    "fp16": "fp16", "float16": "fp16"}

DEFAULT_MIN_TIME_S = 0.2
MIN_ITERS = 5
MAX_ITERS = 10_000
SGD_LR, SGD_MOMENTUM = 1e-4, 0.9
COUNTER = ("blockzoo.profile.count_macs: torch.utils.flop_counter formulas (conv, mm/addmm/bmm/baddbmm, SDPA) + "
           "blockzoo formulas (CPU SDPA, FFT, mv/dot/addbmm); MACs = FLOPs / 2; eval mode, batch 1")


@dataclass
class ProfileReport:
    """Result of :func:`profile_model`. ``macs``/``flops``/``mac_breakdown`` are per sample (batch 1); timings in ms.

    Every field is JSON-serialisable through :meth:`to_dict`.
    """

    model: str
    input_size: tuple
    batch_size: int
    params: int
    trainable_params: int
    macs: int
    flops: int
    mac_breakdown: dict[str, int]
    uncounted_ops: dict[str, int]
    ignored_ops: dict[str, int]
    latency_ms: dict | None
    train_step_ms: dict | None
    throughput_img_s: float | None
    train_throughput_img_s: float | None
    peak_memory_mb: float | None
    peak_memory_method: str
    # extras (additions to the agreed API)
    train_batch_size: int | None = None
    memory: dict | None = None
    ignored_by_category: dict[str, dict[str, int]] = field(default_factory=dict)
    counter: str = COUNTER
    fft_convention: str = FFT_CONVENTION
    sdpa_convention: str = SDPA_CONVENTION
    device: str = "cpu"
    device_name: str = ""
    torch_version: str = torch.__version__
    warnings: list[str] = field(default_factory=list)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of built-in types (tuples become lists), ready for ``json.dumps``."""
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return json.loads(json.dumps(d, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (torch.dtype, torch.device)):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


# ----------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' requested but CUDA is not available in this torch build/machine; "
                               "use device='cpu'")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    return dev


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _autocast(dev: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=dtype)


def _storage_bytes(tensors: Sequence[torch.Tensor]) -> int:
    seen: dict[tuple[str, int], int] = {}
    for t in tensors:
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            continue
        try:
            st = t.untyped_storage()
            seen[(str(t.device), st.data_ptr())] = st.nbytes()
        except (RuntimeError, NotImplementedError):
            seen[(str(t.device), id(t))] = t.numel() * t.element_size()
    return sum(seen.values())


def _live_tensors(model: nn.Module, opt: torch.optim.Optimizer | None, inputs: Sequence[torch.Tensor]) -> list:
    ts: list[torch.Tensor] = list(model.parameters()) + list(model.buffers()) + list(inputs)
    ts += [p.grad for p in model.parameters() if p.grad is not None]
    if opt is not None:
        for state in opt.state.values():
            ts += [v for v in state.values() if isinstance(v, torch.Tensor)]
    return ts


def _timed_loop(fn: Callable[[], Any], dev: torch.device, warmup: int, iters: int | None,
                min_time_s: float) -> tuple[list[float], int]:
    for _ in range(warmup):
        fn()
    _sync(dev)
    times: list[float] = []
    total = 0.0
    while True:
        _sync(dev)
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
        if iters is not None:
            if len(times) >= iters:
                break
        elif (len(times) >= MIN_ITERS and total >= min_time_s) or len(times) >= MAX_ITERS:
            break
    return times, warmup


def _stats_ms(times_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    q25, med, q75 = np.percentile(ms, [25, 50, 75])
    return {"median": float(med), "iqr": float(q75 - q25), "min": float(ms.min()), "q25": float(q25),
            "q75": float(q75), "max": float(ms.max()), "mean": float(ms.mean())}


def _throughput(batch: int, median_ms: float) -> float | None:
    return batch / (median_ms / 1e3) if median_ms > 0 else None


def _model_float_dtype(model: nn.Module) -> torch.dtype:
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def _rss_hwm_bytes() -> int:
    try:
        import resource  # Unix only
    except ImportError:
        return 0
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if platform.system() == "Darwin" else int(r) * 1024


_KINETO_NOISE = ("USDT:", "STAGE:")


@contextlib.contextmanager
def _kineto_banner_filtered() -> Iterator[None]:
    """Capture fd 2 while the profiler runs and re-emit it without kineto's start/stop banner lines.

    Kineto prints ``USDT: ... profiler_start`` / ``profiler_stop`` lines from C++ on every profiler session; they are
    noise for a library call. Everything else written to stderr meanwhile is passed through (after the session).
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):
        yield
        return
    tmp = tempfile.TemporaryFile()
    try:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().splitlines(keepends=True)
                    if not ln.decode(errors="replace").startswith(_KINETO_NOISE)
                    and b"Memory block of unknown size" not in ln]
            if kept:
                os.write(2, b"".join(kept))
    finally:
        os.close(saved)
        tmp.close()


def _transient_peak_bytes(fn: Callable[[], Any], dev: torch.device) -> tuple[int, str]:
    """Peak of allocations made during one call of ``fn`` above what was allocated at its start."""
    if dev.type == "cuda":
        _sync(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        start = torch.cuda.memory_allocated(dev)
        fn()
        _sync(dev)
        return max(0, torch.cuda.max_memory_allocated(dev) - start), "cuda.max_memory_allocated"
    try:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with _kineto_banner_filtered(), torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events = prof.profiler.kineto_results.events()  # type: ignore[union-attr]
        trace = sorted((e.start_ns(), e.nbytes()) for e in events
                       if e.name() == "[memory]" and "CPU" in str(e.device_type()))
        cur = peak = 0
        for _, nbytes in trace:
            cur += nbytes
            peak = max(peak, cur)
        return peak, "torch.profiler(profile_memory=True) CPU allocation trace"
    except Exception:  # private profiler internals changed: fall back to the RSS high-water mark
        before = _rss_hwm_bytes()
        fn()
        return max(0, _rss_hwm_bytes() - before), "process RSS high-water-mark delta (lower bound)"


def _measure_memory(fn: Callable[[], Any], dev: torch.device, live: Callable[[], list],
                    prepare: Callable[[], Any] | None = None) -> dict[str, Any]:
    if prepare is not None:  # e.g. free old gradients outside the trace (the profiler cannot size earlier blocks)
        prepare()
    static = _storage_bytes(live())
    transient, method = _transient_peak_bytes(fn, dev)
    return {"peak_mb": (static + transient) / 2**20, "static_mb": static / 2**20, "transient_mb": transient / 2**20,
            "method": method}


def _loss_from_output(out: Any) -> torch.Tensor:
    leaves = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.requires_grad
              and (t.is_floating_point() or t.is_complex())]
    if not leaves:
        raise RuntimeError("train step: the model's output has no tensor that requires grad (all parameters frozen, "
                           "or the forward detaches); pass train_step=False to profile inference only")
    loss = leaves[0].real.float().mean() if leaves[0].is_complex() else leaves[0].float().mean()
    for t in leaves[1:]:
        loss = loss + (t.real.float().mean() if t.is_complex() else t.float().mean())
    return loss


@contextlib.contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ----------------------------------------------------------------------------------------------------------------
# profile_model()
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    """The validated arguments of :func:`profile_model`."""

    input_size: tuple[int, ...]
    batch_size: int
    train_batch_size: int
    amp_dtype: torch.dtype | None
    dtype_label: str
    device: torch.device
    channels_last: bool
    warmup: int
    iters: int | None
    min_time_s: float


def _settings(model: Any, input_size: Sequence[int] | int, batch_size: int, train_batch_size: int | None,
              dtype: str, channels_last: bool, device: str | torch.device, warmup: int | None, iters: int | None,
              min_time_s: float | None) -> _Settings:
    if not isinstance(model, nn.Module):
        raise TypeError(f"profile expects an nn.Module, got {type(model).__name__}")
    dtype_key = str(dtype).lower()
    if dtype_key not in DTYPES:
        raise ValueError(f"dtype must be one of 'fp32', 'bf16', 'fp16', got {dtype!r}")
    amp_dtype = DTYPES[dtype_key]
    dev = _resolve_device(device)
    if isinstance(input_size, int):
        input_size = (input_size,)
    size = tuple(int(s) for s in input_size)
    bs = int(batch_size)
    train_bs = int(train_batch_size) if train_batch_size is not None else bs
    if bs < 1 or train_bs < 1:
        raise ValueError(f"batch sizes must be >= 1, got batch_size={bs}, train_batch_size={train_bs}")
    if channels_last and len(size) != 3:
        raise ValueError(f"channels_last needs image inputs (C, H, W); got input_size={size}")
    n_warmup = int(warmup) if warmup is not None else (5 if dev.type == "cuda" else 2)
    if n_warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if iters is not None and int(iters) < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    label = _CANONICAL_DTYPE[dtype_key] + ("-autocast" if amp_dtype is not None else "")
    return _Settings(size, bs, train_bs, amp_dtype, label, dev, bool(channels_last), n_warmup,
                     None if iters is None else int(iters),
                     float(min_time_s) if min_time_s is not None else DEFAULT_MIN_TIME_S)


def _working_copy(model: nn.Module, s: _Settings) -> nn.Module:
    """A deep copy of ``model`` on the device (channels_last if asked), without gradients: the user's model is
    never run or modified."""
    try:
        work = copy.deepcopy(model)
    except Exception as e:
        raise RuntimeError(f"profile() works on a deep copy of the model and copy.deepcopy failed ({e!r}); "
                           "make the model deep-copyable (e.g. remove non-copyable attributes/hooks)") from e
    for p in work.parameters():
        p.grad = None
    work = work.to(s.device)
    return work.to(memory_format=torch.channels_last) if s.channels_last else work


def _input(s: _Settings, batch: int, dtype: torch.dtype) -> torch.Tensor:
    fmt = torch.channels_last if s.channels_last else torch.contiguous_format
    return torch.randn(batch, *s.input_size, device=s.device, dtype=dtype).contiguous(memory_format=fmt)


def _measure_forward(work: nn.Module, s: _Settings, common: dict[str, Any],
                     memory: bool) -> tuple[dict[str, Any], float | None, dict[str, Any] | None]:
    """Forward latency (eval, no_grad) at ``batch_size``: ``(latency_ms, throughput, memory or None)``."""
    x = _input(s, s.batch_size, _model_float_dtype(work))
    work.eval()

    def fwd() -> None:
        with torch.no_grad(), _autocast(s.device, s.amp_dtype):
            work(x)

    times, w = _timed_loop(fwd, s.device, s.warmup, s.iters, s.min_time_s)
    latency_ms = {**_stats_ms(times), "iters": len(times), "warmup": w, "batch_size": s.batch_size, **common}
    mem = _measure_memory(fwd, s.device, lambda: _live_tensors(work, None, [x])) if memory else None
    return latency_ms, _throughput(s.batch_size, latency_ms["median"]), mem


def _measure_train_step(work: nn.Module, s: _Settings, common: dict[str, Any],
                        memory: bool) -> tuple[dict[str, Any], float | None, dict[str, Any] | None]:
    """One SGD train step at ``train_batch_size``: ``(train_step_ms, throughput, memory or None)``."""
    xt = _input(s, s.train_batch_size, _model_float_dtype(work))
    work.train()
    opt = torch.optim.SGD([p for p in work.parameters() if p.requires_grad], lr=SGD_LR, momentum=SGD_MOMENTUM)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(s.device, s.amp_dtype):
            out = work(xt)
        _loss_from_output(out).backward()
        opt.step()

    try:
        step()  # first call outside the timing: also validates the step and creates optimizer state
    except ValueError as e:
        if "Expected more than 1 value per channel" in str(e):
            raise ValueError(f"train step failed: {e}. BatchNorm in train mode needs more than one value per "
                             f"channel: use train_batch_size >= 2 (got {s.train_batch_size}) or "
                             f"train_step=False") from e
        raise
    times, w = _timed_loop(step, s.device, max(s.warmup - 1, 0), s.iters, s.min_time_s)
    train_ms = {**_stats_ms(times), "iters": len(times), "warmup": w + 1, "batch_size": s.train_batch_size,
                **common, "optimizer": f"SGD(lr={SGD_LR}, momentum={SGD_MOMENTUM})", "loss": "mean of float outputs"}
    mem = (_measure_memory(step, s.device, lambda: _live_tensors(work, opt, [xt]),
                           prepare=lambda: opt.zero_grad(set_to_none=True)) if memory else None)
    return train_ms, _throughput(s.train_batch_size, train_ms["median"]), mem


def _memory_summary(mem_inf: dict | None, mem_train: dict | None, s: _Settings) -> tuple[dict | None, dict | None,
                                                                                         str]:
    """``(peak record, {"forward", "train_step"} detail, method text)``: the train step's peak when it ran."""
    if mem_train is not None:
        mem = {**mem_train, "phase": "train_step", "batch_size": s.train_batch_size}
    elif mem_inf is not None:
        mem = {**mem_inf, "phase": "forward", "batch_size": s.batch_size}
    else:
        return None, None, "not measured"
    method = (f"{s.device.type}: live tensors at step start (params, buffers, grads, optimizer state, input) + peak "
              f"extra allocation during one {mem['phase'].replace('_', ' ')} at batch {mem['batch_size']} "
              f"via {mem['method']}")
    return mem, {"forward": mem_inf, "train_step": mem_train}, method


def profile_model(model: nn.Module, input_size: Sequence[int] = (3, 224, 224), *, batch_size: int = 1,
                  train_batch_size: int | None = None, latency: bool = True, train_step: bool = True,
                  dtype: str = "fp32", channels_last: bool = False, threads: int | None = None,
                  device: str | torch.device = "cpu", warmup: int | None = None, iters: int | None = None,
                  min_time_s: float | None = None, name: str | None = None, memory: bool = True) -> ProfileReport:
    """Profile ``model`` on inputs of shape ``(batch, *input_size)`` (also ``blockzoo.profile_model``).

    Args:
        model: the model; it is deep-copied, the original is neither run nor modified.
        input_size: input shape without the batch dim, e.g. ``(3, 224, 224)``.
        batch_size: batch size of the forward-latency measurement.
        train_batch_size: batch size of the train-step measurement (default: ``batch_size``).
        latency / train_step / memory: which measurements to run (MACs and parameters are always computed).
        dtype: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` for ``torch.autocast`` mixed precision (weights stay fp32).
        channels_last: convert the copy and 4-D inputs to ``torch.channels_last``.
        threads: ``torch.set_num_threads`` during the measurement (restored afterwards); default: current setting.
        device: ``"cpu"`` or ``"cuda[:N]"``.
        warmup: warm-up iterations per measurement (default 2 on CPU, 5 on CUDA).
        iters: exact number of timed iterations; default: adaptive (>= 5 iterations and >= ``min_time_s``).
        min_time_s: minimum total timed seconds per measurement when ``iters`` is None (default 0.2).
        name: name in the report (default: the model's class name).

    Returns:
        :class:`ProfileReport`; MACs are per sample at batch 1 and labelled as MACs (FLOPs = 2 x MACs).
    """
    s = _settings(model, input_size, batch_size, train_batch_size, dtype, channels_last, device, warmup, iters,
                  min_time_s)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    notes: list[str] = []
    latency_ms = train_ms = thr = train_thr = mem_inf = mem_train = None
    with torch.random.fork_rng(devices=[s.device.index] if s.device.type == "cuda" else []), _num_threads(threads):
        work = _working_copy(model, s)
        mc = count_macs(work, s.input_size, batch_size=1)
        common = {"dtype": s.dtype_label, "threads": torch.get_num_threads(), "device": str(s.device),
                  "channels_last": s.channels_last}
        if latency:
            latency_ms, thr, mem_inf = _measure_forward(work, s, common, memory)
        if train_step and not any(p.requires_grad for p in work.parameters()):
            notes.append("train step skipped: the model has no trainable parameters")
            train_step = False
        if train_step:
            train_ms, train_thr, mem_train = _measure_train_step(work, s, common, memory)
    mem, memory_detail, method = _memory_summary(mem_inf, mem_train, s)
    if mc.uncounted_ops:
        ops = ", ".join(f"{k} x{v}" for k, v in mc.uncounted_ops.items())
        notes.append(f"MACs exclude compute ops without a formula: {ops}")

    return ProfileReport(
        model=name or type(model).__name__,
        input_size=s.input_size,
        batch_size=s.batch_size,
        params=int(params),
        trainable_params=int(trainable),
        macs=int(mc.macs),
        flops=int(mc.flops),
        mac_breakdown=mc.top_level(),
        uncounted_ops=dict(mc.uncounted_ops),
        ignored_ops=dict(mc.ignored_ops),
        latency_ms=latency_ms,
        train_step_ms=train_ms,
        throughput_img_s=thr,
        train_throughput_img_s=train_thr,
        peak_memory_mb=None if mem is None else float(mem["peak_mb"]),
        peak_memory_method=method,
        train_batch_size=s.train_batch_size if train_step else None,
        memory=memory_detail,
        ignored_by_category=mc.ignored_by_category,
        device=str(s.device),
        device_name=device_name(s.device),
        warnings=notes,
    )


#: the former name of :func:`profile_model` (kept for callers of ``blockzoo.profile.profile``).
profile = profile_model
