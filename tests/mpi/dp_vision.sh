#!/bin/sh
# Data-parallel ViT training under mpirun: a few steps with 1 and 2 ranks (each rank computes its shards of
# every batch; rank 0 adds them in shard order) must leave bitwise the checkpoint of one process without
# mpirun; only rank 0 writes; 3 ranks (not dividing the batch's 2 shards) are refused with a message.
# On a tiny IDX fixture the script makes (tests/mpi/fixtures.sh).
# usage: dp_vision.sh MPIRUN ATTN   (MPIRUN may hold flags: it is split on spaces)
set -u
mpirun=$1; attn=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/fixtures.sh"
data=$tmp/fm
fmnist_fixture "$data" 40
fail=0
args="vision train --data $data --batch 8 --epochs 2 --max-steps 6 --threads 1 --patch 7 --dim 16 --heads 2 --blocks 1 --mlp 16 --seed 3"
mkdir -p "$tmp/plain" "$tmp/n1" "$tmp/n2"
if ! "$attn" $args --out "$tmp/plain" > "$tmp/logp" 2>&1; then echo "dp_vision: one process failed:"; cat "$tmp/logp"; exit 1; fi
for n in 1 2; do
  if ! $mpirun -np $n "$attn" $args --out "$tmp/n$n" > "$tmp/log$n" 2>&1; then
    echo "dp_vision: $n ranks: training failed:"; cat "$tmp/log$n"; exit 1
  fi
  grep -q "stopped; .* after step 6" "$tmp/log$n" || { echo "dp_vision: $n ranks: no stop at step 6:"; cat "$tmp/log$n"; fail=1; }
  dp_same dp_vision "$n rank(s) and one process: checkpoints bitwise identical after 6 steps" \
    "$tmp/plain/vit.safetensors" "$tmp/n$n/vit.safetensors"
done
# only rank 0 writes: one epoch's row in the history (the cut second epoch has none), one log of the epoch
dp_rank0_writes dp_vision "$tmp/log2" "$tmp/n2/vit_history.csv" 2
dp_refuses_3 dp_vision "$tmp/log3" "$mpirun" "$attn" $args --out "$tmp/n3"
exit $fail
