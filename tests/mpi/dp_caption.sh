#!/bin/sh
# Data-parallel captioner training under mpirun: a few steps with 1 and 2 ranks (each rank computes its
# shards of every batch; rank 0 adds them in shard order) must leave bitwise the checkpoint of one process
# without mpirun, also when the run is cut by --max-steps and resumed; only rank 0 writes; 3 ranks (not dividing the batch's 2
# shards) are refused with a message. Batches of 7 strips: shards of 4 and 3, and a last batch of 6.
# On a tiny IDX fixture the script makes (tests/mpi/fixtures.sh).
# usage: dp_caption.sh MPIRUN ATTN   (MPIRUN may hold flags: it is split on spaces)
set -u
mpirun=$1; attn=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/fixtures.sh"
data=$tmp/fm
fmnist_fixture "$data" 40
fail=0
args="caption train --data $data --batch 7 --strips 20 --val 4 --epochs 2 --threads 1 --patch 7 --dim 16 --heads 2 --ffn 16 --enc-blocks 1 --dec-blocks 1 --seed 3"
ck=caption.safetensors
mkdir -p "$tmp/plain" "$tmp/n1" "$tmp/n2" "$tmp/r2"
if ! "$attn" $args --max-steps 4 --out "$tmp/plain" > "$tmp/logp" 2>&1; then echo "dp_caption: one process failed:"; cat "$tmp/logp"; exit 1; fi
for n in 1 2; do
  if ! $mpirun -np $n "$attn" $args --max-steps 4 --out "$tmp/n$n" > "$tmp/log$n" 2>&1; then
    echo "dp_caption: $n ranks: training failed:"; cat "$tmp/log$n"; exit 1
  fi
  grep -q "stopped; .* after step 4" "$tmp/log$n" || { echo "dp_caption: $n ranks: no stop at step 4:"; cat "$tmp/log$n"; fail=1; }
  dp_same dp_caption "$n rank(s) and one process: checkpoints bitwise identical after 4 steps" \
    "$tmp/plain/$ck" "$tmp/n$n/$ck"
done
# only rank 0 writes: one epoch's row in the history (the cut second epoch has none), one line of the epoch
dp_rank0_writes dp_caption "$tmp/log2" "$tmp/n2/caption_history.csv" 2
# resume: 2 steps, then 2 more from the checkpoint (inside the first epoch), with 2 ranks: the same bits
if ! $mpirun -np 2 "$attn" $args --max-steps 2 --out "$tmp/r2" > "$tmp/logr" 2>&1 ||
   ! $mpirun -np 2 "$attn" caption train --data "$data" --resume --max-steps 2 --threads 1 --out "$tmp/r2" >> "$tmp/logr" 2>&1; then
  echo "dp_caption: 2 ranks, cut and resumed: training failed:"; cat "$tmp/logr"; exit 1
fi
dp_same dp_caption "2 + 2 steps resumed and 4 steps: checkpoints bitwise identical" "$tmp/plain/$ck" "$tmp/r2/$ck"
dp_refuses_3 dp_caption "$tmp/log3" "$mpirun" "$attn" $args --out "$tmp/n3"
exit $fail
