"""Training throughput of blockzoo checkouts side by side (a regression check across a refactor).

    git clone -q . /tmp/old && git -C /tmp/old checkout -q <commit>
    for r in /tmp/old . /tmp/old .; do .venv/bin/python benchmarks/train_speed_vs_commit.py $r; done
    for r in /tmp/old . /tmp/old .; do .venv/bin/python benchmarks/train_speed_vs_commit.py $r --step; done

Each call imports blockzoo from ``<checkout>/src`` and trains ResNet-20 for one epoch on 2,560 synthetic images
(default recipe: bf16 autocast, channels_last, batch 128, 2 threads) and prints the training images/s. Run the
checkouts interleaved, on an otherwise idle machine, and compare the ratios, not the absolute numbers. ``--step``
times a bare training step instead (1x28x28, batch 128, bf16 autocast, channels_last, SGD; median of 20 after 5
warm-up steps).
"""
import sys
import tempfile

sys.path.insert(0, sys.argv[1] + "/src")

from blockzoo.train import TrainConfig, train  # noqa: E402

if "--step" in sys.argv:
    import time

    import torch

    import blockzoo

    torch.set_num_threads(2)
    m = blockzoo.create_model("resnet20", num_classes=10, in_chans=1, img_size=28).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(128, 1, 28, 28).to(memory_format=torch.channels_last), torch.randint(0, 10, (128,))

    def step() -> float:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(m(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    for _ in range(5):
        step()
    med = sorted(step() for _ in range(20))[10]
    print(sys.argv[1], "step img/s", round(128 / med))
    sys.exit(0)

d = tempfile.mkdtemp()
r = train(TrainConfig(model="resnet20", data="synthetic", subset=2560, epochs=1, threads=2, progress=False, out_dir=d))
print(sys.argv[1], "img/s", round(r["img_per_s"]))
