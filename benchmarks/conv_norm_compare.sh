#!/usr/bin/env bash
# Issue-12 benchmark: the conv units (conv slot: conv3x3 = the baseline, ghost, mgic, sk) and the norm blocks (norm
# slot: bn = the baseline, ibn_a, ibn_b, gn) swapped into ResNet-20 on Fashion-MNIST, at the issue-3 attention benchmark's
# budget so the numbers stand next to benchmarks/results/attn_resnet20/: a fixed class-balanced 6,000-image training
# subset, 3 epochs, 3 seeds, evaluated once on the full 10,000-image test set; default recipe (SGD nesterov one-cycle,
# label smoothing 0.1, crop+flip, precision auto, channels_last), one thread per compare (the conv and the norm sweeps
# run side by side on the 2 cores). Reports (leaderboard.md/csv, results.json, tradeoff.png, with the cost table:
# params, MACs, latency) are copied to benchmarks/results/{conv,norm}_resnet20/.
#   bash benchmarks/conv_norm_compare.sh            # both sweeps, side by side
#   bash benchmarks/conv_norm_compare.sh conv       # one of them
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
run() {  # slot variants
  local slot=$1 variants=$2
  $BIN/blockzoo compare resnet20 --vary "$slot=$variants" --data fashion-mnist --subset 6000 --epochs 3 \
    --seeds 3 --threads 1 --eval-every 3 --no-progress --out "runs/bench/${slot}_resnet20"
  mkdir -p "benchmarks/results/${slot}_resnet20"
  cp "runs/bench/${slot}_resnet20"/{leaderboard.md,leaderboard.csv,results.json,tradeoff.png} \
    "benchmarks/results/${slot}_resnet20/"
}
case "${1:-both}" in
  conv) run conv conv3x3,ghost,mgic,sk ;;
  norm) run norm bn,ibn_a,ibn_b,gn ;;
  both) run conv conv3x3,ghost,mgic,sk & run norm bn,ibn_a,ibn_b,gn; wait ;;
  *) echo "usage: $0 [conv|norm|both]" >&2; exit 2 ;;
esac
