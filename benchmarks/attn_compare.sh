#!/usr/bin/env bash
# Issue-3 benchmark: the `attn` blocks in ResNet-20 and in a small-input MobileNetV2 on Fashion-MNIST, evaluated on
# the full 10,000-image test set, default recipe (SGD nesterov one-cycle, label smoothing 0.1, crop+flip, bf16
# autocast + channels_last), 3 seeds, one thread per model, the two models in parallel.
# - resnet20: every registered attn block (plus none), a fixed class-balanced 6,000-image training subset, 3 epochs.
# - mobilenetv2_050_small: MobileNetV2 trains at ~90 img/s on one core here (depthwise convs), so within the hour it
#   gets the blocks the CA and ECA papers compare in MobileNetV2 (none, se, eca, coord, cbam), a 3,000-image subset,
#   3 epochs.
# Reports (leaderboard.md/csv, results.json, tradeoff.png) are copied to benchmarks/results/attn_<model>/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
ALL=$($BIN/python -c "import blockzoo; print(','.join(['none'] + [b for b in blockzoo.list_blocks(slot='attn') if b != 'none']))")
run() {  # model variants subset
  $BIN/blockzoo compare "$1" --vary "attn=$2" --data fashion-mnist --subset "$3" --epochs 3 --seeds 3 \
    --threads 1 --eval-every 3 --no-progress --out "runs/bench/attn_$1"
  mkdir -p "benchmarks/results/attn_$1"
  cp runs/bench/attn_$1/{leaderboard.md,leaderboard.csv,results.json,tradeoff.png} "benchmarks/results/attn_$1/"
}
run resnet20 "$ALL" 6000 > runs/bench-attn-resnet20.log 2>&1 &
run mobilenetv2_050_small none,se,eca,coord,cbam 3000 > runs/bench-attn-mobilenetv2.log 2>&1 &
wait
