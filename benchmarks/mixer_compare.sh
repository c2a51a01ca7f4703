#!/usr/bin/env bash
# Issue-4 benchmark: every `mixer` block in one shared small skeleton (convnext_atto_small: ConvNeXt-atto depths and
# widths, 2x2 patch stem) on Fashion-MNIST. Budget (about 40 min on one core of this 2-core machine, run side by
# side with another compare): a fixed class-balanced 2,000-image training subset, 3 epochs, 3 seeds, evaluated once
# on the full 10,000-image test set; default recipe (SGD nesterov one-cycle, label smoothing 0.1, crop+flip, bf16
# autocast + channels_last), 1 thread. The latency column is measured while the other compare runs: read the
# mixer latencies in benchmarks/results/mixer_scaling.md instead.
# Reports are copied to benchmarks/results/mixer_convnext_atto_small/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
MIXERS=$($BIN/python -c "import blockzoo; print(','.join(['dwconv'] + [b for b in blockzoo.list_blocks(slot='mixer') if b != 'dwconv']))")
$BIN/blockzoo compare convnext_atto_small --vary "mixer=$MIXERS" --data fashion-mnist --subset 2000 --epochs 3 \
  --seeds 3 --threads 1 --eval-every 3 --no-progress --out runs/bench/mixer_convnext_atto_small
mkdir -p benchmarks/results/mixer_convnext_atto_small
cp runs/bench/mixer_convnext_atto_small/{leaderboard.md,leaderboard.csv,results.json,tradeoff.png} \
  benchmarks/results/mixer_convnext_atto_small/
