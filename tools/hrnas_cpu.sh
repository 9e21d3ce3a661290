#!/usr/bin/env bash
# CPU-sized HR-NAS on the embedded synthetic set (configs/synthetic_hrnas_cpu.yaml, or CFG=...: e.g.
# configs/synthetic_seg_hrnas.yaml for segmentation), end to end:
#   slimming search of the HR supernet to its FLOPs target (shrunk during training)
#   -> genotype.json of the shrunk network (written by the search)
#   -> retrain of the shrunk network from the search's weights (--genotype ... --inherit ..., SLIM.METHOD none)
#   -> test.py without and with flip test.
# Run length is counted in epochs (same seed, same result on any machine); wall time of each phase is printed.
# Everything lands in output/hrnas_cpu/ (OUT=...); extra KEY VALUE words go to both train.py runs
# (SEARCH_OPTS / RETRAIN_OPTS: to one of them).
# One intra-op thread (the config's data worker uses the second core): on a shared 2-core machine two
# threads stall at every parallel region while another process holds a core, and a fixed thread count
# keeps float reductions, hence the result, the same on every machine. Override with OMP_NUM_THREADS.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-output/hrnas_cpu}
CFG=${CFG:-configs/synthetic_hrnas_cpu.yaml}
# retrain recipe of the shrunk network (the search's recipe is the config's)
RETRAIN=(SLIM.METHOD none TRAIN.EPOCHS 5 TRAIN.LR 0.005 TRAIN.LR_SCHEDULE multistep TRAIN.LR_STEPS "[4]"
         TRAIN.EVAL_INTERVAL 100)
rm -rf "$OUT"
mkdir -p "$OUT"
echo "load before: $(uptime)"
t0=$(date +%s)
$PY train.py --cfg $CFG OUTPUT_DIR "$OUT" ${SEARCH_OPTS:-} "$@"
t1=$(date +%s)
grep -o "epoch [0-9]* shrink: FLOPs [0-9.]*M -> [0-9.]*M" "$OUT/train.log" || echo "(no shrink)"
if [ ! -f "$OUT/genotype.json" ]; then  # written by the search once it shrank the supernet
  echo "error: $OUT/genotype.json missing: the search never shrank the supernet" >&2; exit 1
fi
$PY train.py --cfg $CFG --genotype "$OUT/genotype.json" --inherit "$OUT/last.pth" OUTPUT_DIR "$OUT/retrain" \
  "${RETRAIN[@]}" ${RETRAIN_OPTS:-} "$@"
t2=$(date +%s)
echo "without flip test:"
$PY test.py --cfg $CFG --genotype "$OUT/genotype.json" --ckpt "$OUT/retrain/last.pth" OUTPUT_DIR "$OUT/retrain" \
  | tail -n 1
echo "with flip test:"
$PY test.py --cfg $CFG --genotype "$OUT/genotype.json" --ckpt "$OUT/retrain/last.pth" --flip-test \
  OUTPUT_DIR "$OUT/retrain" | tail -n 1
t3=$(date +%s)
echo "wall time: search $((t1 - t0)) s, retrain $((t2 - t1)) s, test $((t3 - t2)) s, total $((t3 - t0)) s"
echo "load after: $(uptime)"
