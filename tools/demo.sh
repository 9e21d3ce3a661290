#!/usr/bin/env bash
# The demo on the embedded synthetic data set (generated on first use into data/synthetic):
#   first-order fabric search, 8 weight-only + 4 bilevel epochs (with --show_arch_value: softmaxed alpha/beta, entropy, Hessian
#   eigenvalue) -> prune -> genotype.json -> fabric.svg/png and arch_values.png -> retrain of the derived
#   network from the supernet's weights, 12 epochs -> test.py without and with flip test.
# Every phase counts epochs, so the same seed gives the same genotype and AP. The last line is "AP <value>".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=output/demo
CFG=configs/synthetic_search_demo.yaml
rm -rf "$OUT"
$PY train.py --cfg $CFG --show_arch_value OUTPUT_DIR $OUT
$PY train.py --cfg $CFG --genotype $OUT/genotype.json --inherit $OUT/last.pth OUTPUT_DIR $OUT/retrain \
  SEARCH.STRATEGY none TRAIN.EPOCHS 12 TRAIN.LR_SCHEDULE cosine TRAIN.EVAL_INTERVAL 12
echo "without flip test:"
$PY test.py --cfg $CFG --genotype $OUT/genotype.json --ckpt $OUT/retrain/last.pth OUTPUT_DIR $OUT/retrain | tail -n 1
echo "with flip test:"
$PY test.py --cfg $CFG --genotype $OUT/genotype.json --ckpt $OUT/retrain/last.pth --flip-test OUTPUT_DIR $OUT/retrain \
  | tail -n 1
