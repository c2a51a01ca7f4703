#!/usr/bin/env bash
# Issue-10 / issue-11 benchmark: the attention mixers in the shared small skeleton of the issue-4 mixer benchmark
# (convnext_atto_small: ConvNeXt-atto depths and widths, 2x2 patch stem; 14/7/4/2 px stage maps at 28 px) on
# Fashion-MNIST, next to dwconv (ConvNeXt's own mixer, the baseline of the paired statistics). The budget is the
# issue-4 one, so the accuracies stand next to benchmarks/results/mixer_convnext_atto_small/ (ConvNet mixers): a fixed
# class-balanced 2,000-image training subset, 3 epochs, 3 seeds, evaluated once on the full 10,000-image test set;
# default recipe (SGD nesterov one-cycle, label smoothing 0.1, crop+flip, channels_last; precision: the default),
# 1 thread. Reports are copied to benchmarks/results/<name>/.
#   bash benchmarks/mixer_attention_compare.sh            # issue 10's mixers (recorded in bf16, the default then)
#   bash benchmarks/mixer_attention_compare.sh hybrids    # issue 11's: TransNeXt's aggregated_attn, MOAT's moat_attn
# (the issue-10 sweep was recorded when the default precision was bf16: re-running it under today's `auto` default
# retrains it; add `--precision bf16` to reuse its runs)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
case "${1:-transformers}" in
  transformers) NAME=mixer_attention_convnext_atto_small
                MIXERS=dwconv,mhsa,reattn,gpsa,window_attn,window_attn_v2,halo_attn,sliced_attn ;;
  hybrids) NAME=mixer_hybrid_attention_convnext_atto_small; MIXERS=dwconv,aggregated_attn,moat_attn ;;
  *) echo "usage: $0 [transformers|hybrids]" >&2; exit 2 ;;
esac
$BIN/blockzoo compare convnext_atto_small --vary "mixer=$MIXERS" --data fashion-mnist --subset 2000 --epochs 3 \
  --seeds 3 --threads 1 --eval-every 3 --no-progress --out "runs/bench/$NAME"
mkdir -p "benchmarks/results/$NAME"
cp "runs/bench/$NAME"/{leaderboard.md,leaderboard.csv,results.json,tradeoff.png} "benchmarks/results/$NAME/"
