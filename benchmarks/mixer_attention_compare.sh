#!/usr/bin/env bash
# Issue-10 benchmark: the attention mixers in the shared small skeleton of the issue-4 mixer benchmark
# (convnext_atto_small: ConvNeXt-atto depths and widths, 2x2 patch stem; 14/7/4/2 px stage maps at 28 px) on
# Fashion-MNIST, next to dwconv (ConvNeXt's own mixer, the baseline of the paired statistics). The budget is the
# issue-4 one, so the accuracies stand next to benchmarks/results/mixer_convnext_atto_small/ (ConvNet mixers): a fixed
# class-balanced 2,000-image training subset, 3 epochs, 3 seeds, evaluated once on the full 10,000-image test set;
# default recipe (SGD nesterov one-cycle, label smoothing 0.1, crop+flip, bf16 autocast + channels_last), 1 thread.
# Reports are copied to benchmarks/results/mixer_attention_convnext_atto_small/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
MIXERS=dwconv,mhsa,reattn,gpsa,window_attn,window_attn_v2,halo_attn,sliced_attn
$BIN/blockzoo compare convnext_atto_small --vary "mixer=$MIXERS" --data fashion-mnist --subset 2000 --epochs 3 \
  --seeds 3 --threads 1 --eval-every 3 --no-progress --out runs/bench/mixer_attention_convnext_atto_small
mkdir -p benchmarks/results/mixer_attention_convnext_atto_small
cp runs/bench/mixer_attention_convnext_atto_small/{leaderboard.md,leaderboard.csv,results.json,tradeoff.png} \
  benchmarks/results/mixer_attention_convnext_atto_small/
