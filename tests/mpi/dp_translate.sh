#!/bin/sh
# Data-parallel translator training under mpirun: each rank computes its shards of every batch and rank 0
# adds all the shards' gradients in shard order, as one process does; so 2 ranks must leave checkpoints
# bitwise equal to one process without mpirun (both models, 12 steps).
# usage: dp_translate.sh MPIRUN ATTN   (MPIRUN may hold flags: it is split on spaces)
set -u
mpirun=$1; attn=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/fixtures.sh"
data=$tmp/data
fra_fixture "$data" 400   # pairs made here (tests/mpi/fixtures.sh)
fail=0
for m in bahdanau transformer; do
  args="translate train --model $m --data $data --examples 300 --max-steps 12 --threads 1 --seed 3"
  "$attn" $args --out "$tmp/one_$m" > "$tmp/log1" 2>&1 || { echo "dp_translate: $m: one process failed:"; cat "$tmp/log1"; exit 1; }
  $mpirun -np 2 "$attn" $args --out "$tmp/two_$m" > "$tmp/log2" 2>&1 || { echo "dp_translate: $m: 2 ranks failed:"; cat "$tmp/log2"; exit 1; }
  for f in "$tmp/one_$m"/*.safetensors; do
    b=$(basename "$f")
    if cmp -s "$f" "$tmp/two_$m/$b"; then echo "dp_translate: $m: one process and 2 ranks: $b bitwise identical: ok"
    else echo "dp_translate: $m: one process and 2 ranks: $b differs: FAIL"; fail=1; fi
  done
done
# more ranks than the models' 2 shards per batch: refused with a message, exit 2
$mpirun -np 3 "$attn" translate train --data "$data" --examples 300 --max-steps 1 --out "$tmp/three" > "$tmp/log3" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "3 ranks do not divide the 2 shards" "$tmp/log3"; then echo "dp_translate: 3 ranks refused: ok"
else echo "dp_translate: 3 ranks: rc $rc, want a refusal:"; cat "$tmp/log3"; fail=1; fi
exit $fail
