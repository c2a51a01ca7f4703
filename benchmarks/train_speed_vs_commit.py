"""Training throughput of blockzoo checkouts side by side (a regression check across a refactor).

    git clone -q . /tmp/old && git -C /tmp/old checkout -q <commit>
    for r in /tmp/old . /tmp/old .; do .venv/bin/python benchmarks/train_speed_vs_commit.py $r; done

Each call imports blockzoo from ``<checkout>/src`` and trains ResNet-20 for one epoch on 2,560 synthetic images
(default recipe: bf16 autocast, channels_last, batch 128, 2 threads) and prints the training images/s. Run the
checkouts interleaved, on an otherwise idle machine, and compare the ratios, not the absolute numbers.
"""
import sys
import tempfile

sys.path.insert(0, sys.argv[1] + "/src")

from blockzoo.train import TrainConfig, train  # noqa: E402

d = tempfile.mkdtemp()
r = train(TrainConfig(model="resnet20", data="synthetic", subset=2560, epochs=1, threads=2, progress=False, out_dir=d))
print(sys.argv[1], "img/s", round(r["img_per_s"]))
