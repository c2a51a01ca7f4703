"""Training on more than one process: torchrun's environment, the process group, DDP and the data shard.

``blockzoo train`` started by ``torchrun --nproc_per_node N`` (one machine) or by ``torchrun --nnodes M
--node_rank K --rdzv_endpoint HOST:PORT --nproc_per_node N`` (several) finds ``RANK`` / ``WORLD_SIZE`` /
``LOCAL_RANK`` in its environment (:func:`from_environment`), joins the process group (gloo on CPU, nccl on CUDA,
process ``LOCAL_RANK`` on GPU ``cuda:LOCAL_RANK``; :func:`process_group` destroys it at the end) and trains a
``DistributedDataParallel`` model. The decisions, which ``result.json`` records (``world_size``):

* ``--batch-size`` is the **global** batch (timm's is per process): each of the N processes takes
  ``batch_size / N`` images of every batch, so it must be divisible by N (also ``--eval-batch-size``). The same
  command then describes the same run on any number of processes, and the default lr, which scales with the batch,
  does not change with N. The world size is therefore not part of the config hash.
* Data: every process draws the same seeded permutation and augmentation of each global batch and keeps its contiguous
  slice (``blockzoo.data.Loader(..., shard=(rank, world_size))``), so the processes see disjoint parts whose union is
  the single-process epoch, batch for batch (batch-level augmentation included). Each process augments the whole
  global batch: cheap for the in-memory uint8 loader, and the price of a data stream that does not depend on N.
* DDP averages the gradients over the processes, so N processes compute the single-process update with the same
  global batch up to floating-point summation order, for models whose forward treats samples independently.
  BatchNorm normalises over the per-process batch unless ``--sync-bn`` (``SyncBatchNorm``: torch implements it on
  CUDA only); dropout / drop-path draw per-process random numbers (the global torch RNG is seeded from
  ``(seed, epoch, rank)`` at every epoch start, so no per-process RNG state needs checkpointing). Such runs agree in
  distribution, not bit for bit, across world sizes.
* Evaluation is sharded the same way; the loss sums and counts are all-reduced, so every process reports the
  accuracy over the whole test set.
* Only rank 0 writes (run folder, ``metrics.jsonl``, checkpoints, ``result.json``) and shows progress; a barrier
  after each checkpoint write keeps the processes in step. The checkpoint holds no per-process state (the model and
  optimizer are identical on every process, the data order depends on the epoch only), so a run resumes on any
  number of processes from the same global step.
* A process that fails (e.g. on a NaN loss) ends with its error; torchrun then stops the others.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from blockzoo.errors import ConfigError

__all__ = ["DistEnv", "from_environment", "process_group", "is_main_process"]

@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine, and the
    ``device`` it trains on. ``DistEnv()`` is the single-process run, for which every method is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return "nccl" if self.device.type == "cuda" else "gloo"

    def per_process_batch(self, batch_size: int, flag: str) -> int:
        """``batch_size / world_size``; a :class:`ConfigError` naming ``flag`` when it does not divide."""
        if batch_size % self.world_size:
            raise ConfigError(f"{flag} {batch_size} is the global batch and must be divisible by the "
                              f"{self.world_size} processes; use a multiple of {self.world_size}")
        return batch_size // self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum_(self, *tensors: torch.Tensor) -> None:
        """All-reduce (sum) each tensor in place over the processes."""
        if self.enabled:
            for t in tensors:
                dist.all_reduce(t, op=dist.ReduceOp.SUM)

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any (a collective decision, e.g. a time budget)."""
        if not self.enabled:
            return flag
        t = torch.tensor(int(flag), device=self.device)
        self.sum_(t)
        return bool(t.item())

    def sum_totals(self, loss_sum: torch.Tensor, correct: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                                          int]:
        """The evaluation totals ``(loss sum, correct count, sample count)`` summed over the processes' shards."""
        if not self.enabled:
            return loss_sum, correct, n
        totals = torch.stack([loss_sum.double(), correct.double(),
                              torch.tensor(float(n), device=loss_sum.device, dtype=torch.float64)])
        self.sum_(totals)
        return totals[0], totals[1].round().long(), int(totals[2].item())

    def reduce_epoch(self, loss_buf: torch.Tensor, correct_buf: torch.Tensor, images: int) -> int:
        """Turn the per-process step losses (means over each shard) and correct counts into the global batch's, in
        place; returns the number of images all processes trained on."""
        if not self.enabled:
            return images
        n = torch.tensor(images, device=correct_buf.device, dtype=torch.int64)
        self.sum_(loss_buf, correct_buf, n)
        loss_buf.div_(self.world_size)  # equal shards: the mean of the shard means is the global batch's mean
        return int(n.item())

    def seed_stochastic_layers(self, seed: int, epoch: int) -> None:
        """With more than one process, seed the global torch RNG (dropout, drop-path) from ``(seed, epoch, rank)``
        so that the processes draw independent numbers and a resumed run needs no per-process RNG state."""
        if self.enabled:
            digest = hashlib.sha256(f"blockzoo.train.distributed/{seed}/{epoch}/{self.rank}".encode()).digest()
            torch.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))

    def wrap(self, model: nn.Module, *, sync_bn: bool) -> nn.Module:
        """The module to train: ``model`` itself in a single process, else ``DistributedDataParallel(model)``
        (after converting its BatchNorm layers to ``SyncBatchNorm`` in place when ``sync_bn``). Checkpoints and
        evaluation use ``model``; its parameters are the wrapper's."""
        if not self.enabled:
            return model
        if sync_bn:
            if self.device.type != "cuda":
                raise ConfigError("--sync-bn needs CUDA devices (torch's SyncBatchNorm has no CPU implementation); "
                                  "drop --sync-bn on CPU, where BatchNorm normalises over each process's batch")
            _convert_sync_bn(model)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)


def _convert_sync_bn(model: nn.Module) -> None:
    """Replace every BatchNorm submodule of ``model`` by a SyncBatchNorm holding the same parameters and buffers
    (in place, so ``model`` stays the module the trainer and its checkpoints know)."""
    for name, child in list(model.named_children()):
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(child)
        if converted is not child:
            setattr(model, name, converted)


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer; start the job with torchrun "
                          f"(which sets RANK, WORLD_SIZE and LOCAL_RANK) or unset it") from None


def from_environment(device: torch.device, environ: Mapping[str, str] | None = None) -> DistEnv:
    """This process's :class:`DistEnv`, from an initialised process group or torchrun's ``RANK`` / ``WORLD_SIZE``
    / ``LOCAL_RANK`` (none set: a single process). ``device`` is the resolved ``--device``: a CUDA device without an
    index becomes ``cuda:LOCAL_RANK``."""
    environ = os.environ if environ is None else environ
    local_rank = _env_int(environ, "LOCAL_RANK", 0)
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = _env_int(environ, "RANK", 0), _env_int(environ, "WORLD_SIZE", 1)
    if world < 1 or not 0 <= rank < world or local_rank < 0:
        raise ConfigError(f"inconsistent process environment RANK={rank}, WORLD_SIZE={world}, "
                          f"LOCAL_RANK={local_rank}; start the job with torchrun, which sets them")
    if world > 1 and not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run a single process or install a torch "
                          "build with distributed support")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=device)


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is rank 0 (or the only one): the one that prints and writes."""
    return _env_int(os.environ if environ is None else environ, "RANK", 0) == 0


@contextlib.contextmanager
def process_group(env: DistEnv) -> Iterator[DistEnv]:
    """Join the process group for the run (``env://`` rendezvous from torchrun's ``MASTER_ADDR`` / ``MASTER_PORT``;
    gloo on CPU, nccl on CUDA) and destroy it afterwards, also on error. A group the caller initialised is used and
    left alone; a single process does nothing. One job, one run: initialising the default group again in the same
    process after it was destroyed can hang in the rendezvous (seen with torchrun's agent store), so a script that
    calls ``train()`` several times under torchrun initialises the group itself first
    (``torch.distributed.init_process_group()``), and every call then uses it."""
    if not env.enabled or dist.is_initialized():
        yield env
        return
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise ConfigError(f"WORLD_SIZE={env.world_size} but {' and '.join(missing)} not set; start the job with "
                          f"torchrun --nproc_per_node N (it sets them) or set them yourself")
    if env.device.type == "cuda":
        torch.cuda.set_device(env.device)
    dist.init_process_group(env.backend, rank=env.rank, world_size=env.world_size,
                            **({"device_id": env.device} if env.device.type == "cuda" else {}))
    try:
        yield env
    finally:
        dist.destroy_process_group()

