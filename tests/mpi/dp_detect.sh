#!/bin/sh
# Data-parallel detector training under mpirun: a few steps with 1 and 2 ranks (each rank runs its shards'
# forward, the ranks exchange the batch's logits and boxes, every rank runs the set criterion on the whole
# batch, then its shards' backward; rank 0 adds the shards' gradients in shard order) must leave bitwise the
# checkpoint of one process without mpirun; only rank 0 writes; 3 ranks (not dividing the batch's 2
# shards) are refused with a message. Batches of 7 canvases: shards of 4 and 3, and a last batch of 6.
# Two decoder blocks, so the auxiliary losses' heads are exchanged too. On a tiny IDX fixture the script
# makes (tests/mpi/fixtures.sh).
# usage: dp_detect.sh MPIRUN ATTN   (MPIRUN may hold flags: it is split on spaces)
set -u
mpirun=$1; attn=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/fixtures.sh"
data=$tmp/fm
fmnist_fixture "$data" 40
fail=0
args="detect train --data $data --batch 7 --canvases 20 --val 4 --epochs 2 --max-steps 5 --threads 1 --patch 7 --queries 4 --dim 16 --heads 2 --ffn 16 --enc-blocks 1 --dec-blocks 2 --seed 3"
ck=detr.safetensors
mkdir -p "$tmp/plain" "$tmp/n1" "$tmp/n2"
if ! "$attn" $args --out "$tmp/plain" > "$tmp/logp" 2>&1; then echo "dp_detect: one process failed:"; cat "$tmp/logp"; exit 1; fi
for n in 1 2; do
  if ! $mpirun -np $n "$attn" $args --out "$tmp/n$n" > "$tmp/log$n" 2>&1; then
    echo "dp_detect: $n ranks: training failed:"; cat "$tmp/log$n"; exit 1
  fi
  grep -q "(step 5)" "$tmp/log$n" || { echo "dp_detect: $n ranks: no stop at step 5:"; cat "$tmp/log$n"; fail=1; }
  dp_same dp_detect "$n rank(s) and one process: checkpoints bitwise identical after 5 steps" \
    "$tmp/plain/$ck" "$tmp/n$n/$ck"
  # the losses in the history need every shard's outputs (the gradients alone would not show a bad exchange)
  dp_same dp_detect "$n rank(s) and one process: the same losses in the history" \
    "$tmp/plain/detr_history.csv" "$tmp/n$n/detr_history.csv"
done
# only rank 0 writes: a history row at the first epoch's end and at the stop, one line of the first epoch
dp_rank0_writes dp_detect "$tmp/log2" "$tmp/n2/detr_history.csv" 3
dp_refuses_3 dp_detect "$tmp/log3" "$mpirun" "$attn" $args --out "$tmp/n3"
exit $fail
