#!/usr/bin/env bash
# The demo on the embedded synthetic data set: everything lands in output/demo/, the last line is "AP <value>".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=output/demo
CFG=configs/synthetic_baseline.yaml
$PY train.py --cfg $CFG OUTPUT_DIR $OUT
$PY test.py --cfg $CFG --ckpt $OUT/best.pth --flip-test OUTPUT_DIR $OUT | tail -n 1
