#!/usr/bin/env bash
# Issue-3 benchmark: every `attn` block (plus none) in ResNet-20 and in a small-input MobileNetV2 on Fashion-MNIST.
# Budget (chosen to fit about an hour of compute on 2 CPU cores for both models): a fixed, class-balanced 6,000-image
# subset of the training set, 3 epochs, 3 seeds, evaluated on the full 10,000-image test set; default recipe
# (SGD nesterov one-cycle, label smoothing 0.1, crop+flip, bf16 autocast + channels_last). The two models run in
# parallel, one thread each. Reports (leaderboard.md/csv, results.json, tradeoff.png) are copied to
# benchmarks/results/attn_<model>/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
ATTN=$($BIN/python -c "import blockzoo; print(','.join(['none'] + [b for b in blockzoo.list_blocks(slot='attn') if b != 'none']))")
run() {  # model out
  $BIN/blockzoo compare "$1" --vary "attn=$ATTN" --data fashion-mnist --subset 6000 --epochs 3 --seeds 3 \
    --threads 1 --eval-every 3 --no-progress --out "runs/bench/attn_$1"
  mkdir -p "benchmarks/results/attn_$1"
  cp runs/bench/attn_$1/{leaderboard.md,leaderboard.csv,results.json,tradeoff.png} "benchmarks/results/attn_$1/"
}
run resnet20 > runs/bench-attn-resnet20.log 2>&1 &
run mobilenetv2_050_small > runs/bench-attn-mobilenetv2.log 2>&1 &
wait
