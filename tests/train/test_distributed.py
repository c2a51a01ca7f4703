"""blockzoo.train.distributed and the trainer under torchrun: sharded data, DDP, rank-0-only writes, resume on another
number of processes.

The end-to-end test runs ``torchrun --standalone --nproc_per_node 2`` on the CPU (gloo) and compares with one process
at the same global batch. The model is ResNet-20 without normalisation layers (``--set norm=none``): its forward
treats every sample on its own, so splitting a batch over processes changes nothing but the floating-point summation
order of the gradients (with BatchNorm the statistics would be over each process's half batch, and torch's
SyncBatchNorm, which fixes that, runs on CUDA only; GroupNorm is per sample too, but over the 2 x 2 maps of the last
stage of an 8 x 8 input it amplifies those rounding differences to 1e-3 within a few steps). No dropout, no
augmentation: every random number then comes from the seeded permutation."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from blockzoo.data import Dataset, Loader
from blockzoo.data.synthetic import make_synthetic
from blockzoo.errors import ConfigError
from blockzoo.train import TrainConfig, train
from blockzoo.train.distributed import DistEnv, from_environment, process_group


def id_tagged(split: str, n: int) -> Dataset:
    """A small synthetic set whose pixel (0, 0, 0) of image i is i: the images a process trained on can be named."""
    ds = make_synthetic(split, num_classes=4, image_size=8, channels=3, n=n, noise=0.1, max_shift=1)
    ds.images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return ds


# ------------------------------------------------------------------------------------------------ the data shard
@pytest.mark.parametrize("world", [2, 4])
def test_the_shards_of_every_batch_are_disjoint_and_make_up_the_unsharded_batch(world):
    ds = id_tagged("train", 96)
    one = Loader(ds, 16, train=True, seed=3, force_flip=True)   # shuffle + random crop + flip
    parts = [Loader(ds, 16, train=True, seed=3, force_flip=True, shard=(r, world)) for r in range(world)]
    for loader in [one, *parts]:
        loader.set_epoch(2)
    ids = ds.images[:, 0, 0, 0]
    for (x, y), *shards in zip(one, *parts, strict=True):
        assert [s[1].shape[0] for s in shards] == [16 // world] * world
        assert torch.equal(torch.cat([s[0] for s in shards]), x)   # same images, same augmentation, same order
        assert torch.equal(torch.cat([s[1] for s in shards]), y)
    assert len(parts[0]) == len(one) == 6
    # the epoch's permutation split by process: disjoint, together the whole (drop_last) epoch
    plain = [Loader(ds, 16, train=True, augment=False, seed=3, shard=(r, world)) for r in range(world)]
    raw = [set() for _ in range(world)]
    for r, loader in enumerate(plain):
        for x, _ in loader:
            raw[r] |= {round(float(v)) for v in loader.denormalize(x)[:, 0, 0, 0] * 255}
    assert sum(len(s) for s in raw) == 96 and set().union(*raw) == {int(i) for i in ids}
    assert all(len(s) == 96 // world for s in raw)


def test_a_short_last_evaluation_batch_leaves_the_last_processes_fewer_images():
    ds = id_tagged("test", 40)   # batches of 16: 16, 16, 8 -> with 4 processes the last one gives 4, 4, 0, 0
    sizes = [[int(y.shape[0]) for _, y in Loader(ds, 16, train=False, shard=(r, 4))] for r in range(4)]
    assert sizes == [[4, 4, 4], [4, 4, 4], [4, 4], [4, 4]]
    with pytest.raises(Exception, match="dividing batch_size"):
        Loader(ds, 10, train=False, shard=(0, 4))


# --------------------------------------------------------------------------------------------- the environment
def test_the_torchrun_environment_is_read_and_checked():
    cpu = torch.device("cpu")
    assert from_environment(cpu, {}) == DistEnv()                              # no torchrun: one process
    env = from_environment(torch.device("cuda"), {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (env.rank, env.world_size, env.local_rank, env.device) == (3, 4, 1, torch.device("cuda", 1))
    assert env.enabled and not env.is_main and env.backend == "nccl"
    assert from_environment(cpu, {"RANK": "0", "WORLD_SIZE": "2"}).backend == "gloo"
    for bad in ({"RANK": "2", "WORLD_SIZE": "2"}, {"RANK": "x", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "0"}):
        with pytest.raises(ConfigError, match="torchrun"):
            from_environment(cpu, bad)
    two = DistEnv(rank=0, world_size=2)
    assert two.per_process_batch(128, "--batch-size") == 64
    with pytest.raises(ConfigError, match="--batch-size 15 is the global batch and must be divisible by the 2"):
        two.per_process_batch(15, "--batch-size")
    with pytest.raises(ConfigError, match="--sync-bn needs CUDA"):
        two.wrap(torch.nn.BatchNorm2d(4), sync_bn=True)


def test_a_world_size_without_a_rendezvous_address_is_a_config_error(monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR and MASTER_PORT not set; start the job with torchrun"):
        with process_group(DistEnv(rank=0, world_size=2)):
            pass


def test_a_single_process_is_left_as_it_is():
    env, model = DistEnv(), torch.nn.Linear(2, 2)
    with process_group(env) as e:
        assert e is env and not torch.distributed.is_initialized()
    assert env.wrap(model, sync_bn=True) is model and env.any(True) and env.reduce_epoch(torch.ones(2),
                                                                                          torch.ones(2), 5) == 5


# ------------------------------------------------------------------------------------------- end to end (torchrun)
WORKER = '''
import json, os, sys
from blockzoo.data import Loader
from blockzoo.train import TrainConfig, train
from test_distributed import id_tagged, tiny_cfg

seen = []                      # ids of the training images this process trained on, per step
plain = Loader.normalize
def spy(self, xb):
    if self.train:
        seen.append(xb[:, 0, 0, 0].tolist())
    return plain(self, xb)
Loader.normalize = spy
tr, te = id_tagged("train", 64), id_tagged("test", 32)
for d in sys.argv[1:]:
    seen.clear()
    res = train(tiny_cfg(d), train_set=tr, test_set=te)
    with open(f"{d}.seen{os.environ['RANK']}.json", "w") as f:
        json.dump({"seen": seen, "world_size": res["world_size"], "acc": res["final_test_acc"]}, f)
'''


def tiny_cfg(out: str, **kw) -> TrainConfig:
    base = dict(model="resnet20", slots={"norm": "none"}, data="synthetic", epochs=2, batch_size=16, lr=0.01,
                warmup_epochs=0.5, augment=False, precision="fp32", channels_last=False, deterministic=True,
                threads=1, device="cpu", progress=False, out_dir=str(out))
    return TrainConfig(**{**base, **kw})


def model_state(run: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(run / "last.safetensors").items() if k.startswith("model.")}


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch_and_only_rank0_writes(tmp_path):
    tr, te = id_tagged("train", 64), id_tagged("test", 32)
    ref = train(tiny_cfg(tmp_path / "one"), train_set=tr, test_set=te)        # 1 process, global batch 16

    class Stop(Exception):
        pass

    def stop(metrics):
        raise Stop

    with pytest.raises(Stop):   # 1 process stops after epoch 1; 2 processes finish it below
        train(tiny_cfg(tmp_path / "resumed"), train_set=tr, test_set=te, on_epoch_end=stop)
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    for run in ("two", "resumed"):   # one torchrun job per run, as `torchrun -m blockzoo train` runs one
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               str(script), str(tmp_path / run)], env=env, capture_output=True, text=True,
                              timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]

    one = model_state(tmp_path / "one")
    for run in ("two", "resumed"):   # 2 processes from scratch; 1 process, then 2 from its checkpoint
        other = model_state(tmp_path / run)
        assert one.keys() == other.keys()
        for k in one:
            torch.testing.assert_close(other[k], one[k], rtol=1e-4, atol=1e-5, msg=f"{run}: {k}")
        result = json.loads((tmp_path / run / "result.json").read_text())
        assert result["world_size"] == 2 and result["steps"] == ref["steps"] == 8
        assert result["config_hash"] == ref["config_hash"]   # the same run: the world size is not in the hash
        assert result["final_test_acc"] == pytest.approx(ref["final_test_acc"], abs=1 / 32)
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["epoch"] for x in lines] == [1, 2]   # one writer: no line twice
        assert json.loads(lines[-1])["train_loss"] == pytest.approx(ref["final_train_loss"], rel=1e-4)

    seen = [json.loads((tmp_path / f"two.seen{r}.json").read_text()) for r in (0, 1)]
    assert [s["world_size"] for s in seen] == [2, 2] and seen[0]["acc"] == seen[1]["acc"]  # all-reduced eval
    steps = list(zip(seen[0]["seen"], seen[1]["seen"], strict=True))
    assert len(steps) == 8 and all(len(a) == len(b) == 8 and not set(a) & set(b) for a, b in steps)
    for epoch in (steps[:4], steps[4:]):   # each process saw half of every epoch, the two halves the whole
        assert sorted(i for a, b in epoch for i in a + b) == list(range(64))
    resumed = [json.loads((tmp_path / f"resumed.seen{r}.json").read_text())["seen"] for r in (0, 1)]
    assert [len(s) for s in resumed] == [4, 4]   # only epoch 2 was left to train
