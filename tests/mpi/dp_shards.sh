#!/bin/sh
# --shards G, the fixed parts of every batch, is a run setting: any number of ranks that divides it trains
# with the same bits. G = 4 for a translator (the Transformer) and an image model (the ViT): one process
# with 1 and 2 threads, 1, 2 and 4 ranks (4 oversubscribed) must leave byte-identical checkpoints, and 3
# ranks are refused with a message. The ViT's checkpoint keeps G: 3 steps, then 3 more with --resume (no
# --shards given), equal the 6 steps of one run, and --resume with another --shards is refused. Under 2
# ranks only rank 0 says it read the data. A ViT rank that dies mid-run (ATTN_TEST_DIE_AT_STEP) stops the
# job with an error, and the last checkpoint is unchanged and loads.
# On tiny fixtures the script makes (tests/mpi/fixtures.sh).
# usage: dp_shards.sh MPIRUN ATTN   (MPIRUN may hold flags: it is split on spaces)
set -u
mpirun=$1; attn=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/fixtures.sh"
fail=0

# run TAG LOG CMD...: runs CMD with its output in LOG; a failure ends the test
run() {
  tag=$1; log=$2; shift 2
  "$@" > "$log" 2>&1 || { echo "dp_shards: $tag failed:"; cat "$log"; exit 1; }
}

# --- the Transformer translator, 12 steps of batch 64 in 4 shards
fra_fixture "$tmp/fra" 400
targs="translate train --model transformer --data $tmp/fra --examples 300 --max-steps 12 --seed 3 --shards 4"
run "transformer, one process x 1 thread" "$tmp/tlog1" "$attn" $targs --threads 1 --out "$tmp/t1"
run "transformer, one process x 2 threads" "$tmp/tlog1t2" "$attn" $targs --threads 2 --out "$tmp/t1t2"
for n in 1 2 4; do
  run "transformer, $n ranks" "$tmp/tlog$n" $mpirun -np $n "$attn" $targs --threads 1 --out "$tmp/tn$n"
done
for o in t1t2 tn1 tn2 tn4; do
  for f in "$tmp/t1"/*.safetensors; do
    b=$(basename "$f")
    dp_same dp_shards "transformer --shards 4: $o and one process x 1 thread: $b bitwise identical" "$f" "$tmp/$o/$b"
  done
done
if $mpirun -np 3 "$attn" $targs --threads 1 --out "$tmp/t3" > "$tmp/tlog3" 2>&1; then
  echo "dp_shards: transformer: 3 ranks with --shards 4 were not refused"; fail=1
elif grep -q "3 ranks do not divide the 4 shards" "$tmp/tlog3"; then echo "dp_shards: transformer: 3 ranks refused: ok"
else echo "dp_shards: transformer: 3 ranks: no message saying why:"; cat "$tmp/tlog3"; fail=1; fi

# --- the ViT, 6 steps of batch 8 in 4 shards
fmnist_fixture "$tmp/fm" 40
vargs="vision train --data $tmp/fm --batch 8 --epochs 3 --patch 7 --dim 16 --heads 2 --blocks 1 --mlp 16 --seed 3"
run "vit, one process x 1 thread" "$tmp/vlog1" "$attn" $vargs --shards 4 --max-steps 6 --threads 1 --out "$tmp/v1"
run "vit, one process x 2 threads" "$tmp/vlog1t2" "$attn" $vargs --shards 4 --max-steps 6 --threads 2 --out "$tmp/v1t2"
for n in 1 2 4; do
  run "vit, $n ranks" "$tmp/vlog$n" $mpirun -np $n "$attn" $vargs --shards 4 --max-steps 6 --threads 1 --out "$tmp/vn$n"
done
for o in v1t2 vn1 vn2 vn4; do
  dp_same dp_shards "vit --shards 4: $o and one process x 1 thread: checkpoints bitwise identical after 6 steps" \
    "$tmp/v1/vit.safetensors" "$tmp/$o/vit.safetensors"
done
grep -q "data parallel: 4 ranks, shards 1 of 4 each" "$tmp/vlog4" || { echo "dp_shards: vit: 4 ranks: the log does not say 1 shard of 4 each:"; cat "$tmp/vlog4"; fail=1; }
# only rank 0 says what it read
reads=$(grep -c ": read .* test images" "$tmp/vlog2")
[ "$reads" -eq 1 ] && echo "dp_shards: vit: 2 ranks: one 'read' line: ok" || { echo "dp_shards: vit: 2 ranks printed $reads 'read' lines, want 1:"; cat "$tmp/vlog2"; fail=1; }
# the same G changes the bits (the test can fail): --shards 2 is another run
run "vit, --shards 2" "$tmp/vlogg2" "$attn" $vargs --shards 2 --max-steps 6 --threads 1 --out "$tmp/vg2"
if cmp -s "$tmp/v1/vit.safetensors" "$tmp/vg2/vit.safetensors"; then
  echo "dp_shards: vit: --shards 2 and --shards 4 gave the same checkpoint (the shards do not take effect?): FAIL"; fail=1
else echo "dp_shards: vit: --shards 2 and 4 differ: ok"; fi
# --resume keeps G from the checkpoint: 3 + 3 steps (4 ranks, then 2) equal 6 in one run
run "vit, 3 steps" "$tmp/vlogr1" $mpirun -np 4 "$attn" $vargs --shards 4 --max-steps 3 --threads 1 --out "$tmp/vr"
run "vit, 3 more steps" "$tmp/vlogr2" $mpirun -np 2 "$attn" $vargs --resume --max-steps 3 --threads 1 --out "$tmp/vr"
dp_same dp_shards "vit --shards 4: 3 steps on 4 ranks, then --resume 3 on 2 ranks, and 6 steps in one run: bitwise identical" \
  "$tmp/v1/vit.safetensors" "$tmp/vr/vit.safetensors"
if "$attn" $vargs --resume --shards 2 --max-steps 1 --threads 1 --out "$tmp/vr" > "$tmp/vlogr3" 2>&1; then
  echo "dp_shards: vit: --resume --shards 2 on a --shards 4 checkpoint was not refused"; fail=1
elif grep -q "was trained with --shards 4" "$tmp/vlogr3"; then echo "dp_shards: vit: --resume with another --shards refused: ok"
else echo "dp_shards: vit: --resume --shards 2: no message saying why:"; cat "$tmp/vlogr3"; fail=1; fi
# a usage error every rank finds alike ends every rank with status 2, said once, without MPI_Abort
$mpirun -np 3 "$attn" $vargs --shards 4 --max-steps 1 --threads 1 --out "$tmp/v3" > "$tmp/vlog3" 2>&1
rc=$?
if [ "$rc" -eq 0 ]; then echo "dp_shards: vit: 3 ranks with --shards 4 were not refused"; fail=1
elif [ "$(grep -c 'do not divide the 4 shards' "$tmp/vlog3")" != 1 ] || grep -q "MPI_ABORT\|failed: stopping" "$tmp/vlog3"; then
  echo "dp_shards: vit: 3 ranks: not one message, or an abort (status $rc):"; cat "$tmp/vlog3"; fail=1
else echo "dp_shards: vit: 3 ranks refused once, no abort: ok"; fi

# --- a ViT rank that dies: rank 1 kills itself at the second step of a resumed run, before the epoch's end
cp "$tmp/vn2/vit.safetensors" "$tmp/before.safetensors"
if ATTN_TEST_DIE_AT_STEP=2 $mpirun -np 2 "$attn" $vargs --resume --max-steps 3 --threads 1 --out "$tmp/vn2" > "$tmp/vlogdie" 2>&1; then
  echo "dp_shards: vit: a rank died but the job succeeded:"; cat "$tmp/vlogdie"; fail=1
elif grep -q "rank 1" "$tmp/vlogdie"; then
  echo "dp_shards: vit: a dead rank stopped the job, naming it: ok"
else
  echo "dp_shards: vit: the job stopped without naming the dead rank 1:"; cat "$tmp/vlogdie"; fail=1
fi
dp_same dp_shards "vit: the checkpoint is unchanged after the failed run" "$tmp/before.safetensors" "$tmp/vn2/vit.safetensors"
if "$attn" vision eval --data "$tmp/fm" --out "$tmp/vn2" > "$tmp/vlogeval" 2>&1; then
  echo "dp_shards: vit: the checkpoint loads after the failed run: ok"
else
  echo "dp_shards: vit: the checkpoint does not load after the failed run: FAIL"; cat "$tmp/vlogeval"; fail=1
fi
exit $fail
