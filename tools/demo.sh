#!/usr/bin/env bash
# The demo on the embedded synthetic data set (generated on first use into data/synthetic):
#   second-order fabric search (with --show_arch_value) -> prune -> genotype.json -> fabric.svg/png and
#   arch_values.png -> short retrain of the derived network from the supernet's weights -> test.py --flip-test.
# Everything lands in output/demo/; the last line is "AP <value>".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=output/demo
CFG=configs/synthetic_search_demo.yaml
rm -rf "$OUT"
$PY train.py --cfg $CFG --search second_order_gradient --show_arch_value OUTPUT_DIR $OUT
$PY train.py --cfg $CFG --genotype $OUT/genotype.json --inherit $OUT/last.pth \
  OUTPUT_DIR $OUT/retrain SEARCH.STRATEGY none TRAIN.TIME_BUDGET_MIN 6.5 TRAIN.EVAL_INTERVAL 100
echo "without flip test:"
$PY test.py --cfg $CFG --genotype $OUT/genotype.json --ckpt $OUT/retrain/best.pth OUTPUT_DIR $OUT/retrain | tail -n 1
echo "with flip test:"
$PY test.py --cfg $CFG --genotype $OUT/genotype.json --ckpt $OUT/retrain/best.pth --flip-test OUTPUT_DIR $OUT/retrain \
  | tail -n 1
