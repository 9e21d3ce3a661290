#!/usr/bin/env bash
# Launch train.py under torchrun (DDP; gloo on CPU, nccl on GPU).
#   NNODES=1 NPROC_PER_NODE=2 ./distributed.sh --cfg configs/X.yaml [train.py args...]
#   multi-node: NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 NPROC_PER_NODE=8 ./distributed.sh ...
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
NNODES=${NNODES:-1}
NPROC_PER_NODE=${NPROC_PER_NODE:-$( $PY -c "import torch; print(torch.cuda.device_count() or 2)")}
if [ "$NNODES" -eq 1 ] && [ -z "${MASTER_ADDR:-}" ]; then
  exec "$PY" -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node="$NPROC_PER_NODE" train.py "$@"
fi
exec "$PY" -m torch.distributed.run --nnodes="$NNODES" --node_rank="${NODE_RANK:-0}" \
  --nproc_per_node="$NPROC_PER_NODE" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --master_port="${MASTER_PORT:-29500}" train.py "$@"
