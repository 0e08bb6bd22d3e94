#!/bin/sh
# Data-parallel IMDB training under mpirun: 50 steps with 1, 2 and 4 ranks (4 oversubscribed) at the same
# global batch and seed must leave bitwise the same parameters (the checkpoints are compared byte for
# byte: parameters, Adam state, vocabulary, settings); 2 ranks stopped by --max-steps 25 and resumed for 25
# more must equal the 50 steps in one run; so must 60 steps across the epoch's end, in one run or two. Then a rank that dies mid-run must stop the job with an error,
# leaving the previous checkpoint loadable.
# The reviews are a fixture made here (tests/mpi/fixtures.sh): 200 per label and split.
# usage: dp_imdb.sh MPIRUN ATTN   (MPIRUN may hold flags: it is split on spaces)
set -u
mpirun=$1; attn=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/fixtures.sh"
data=$tmp/data
imdb_fixture "$data" 200
fail=0
args="imdb train --data $data --limit 400 --batch 8 --grad-groups 4 --max-steps 50 --epochs 1 --threads 1 --seed 7"
for n in 1 2 4; do
  mkdir -p "$tmp/n$n"
  if ! $mpirun -np $n "$attn" $args --out "$tmp/n$n" > "$tmp/log$n" 2>&1; then
    echo "dp_imdb: $n ranks: training failed:"; cat "$tmp/log$n"; exit 1
  fi
  grep -q "stopped; .* after step 50" "$tmp/log$n" || { echo "dp_imdb: $n ranks: no stop at step 50:"; cat "$tmp/log$n"; fail=1; }
done
for n in 2 4; do
  if cmp -s "$tmp/n1/imdb.safetensors" "$tmp/n$n/imdb.safetensors"; then
    echo "dp_imdb: 1 and $n ranks: checkpoints bitwise identical after 50 steps: ok"
  else
    echo "dp_imdb: 1 and $n ranks: checkpoints differ after 50 steps: FAIL"; fail=1
  fi
done
# --resume inside the epoch under mpirun: 25 steps, then 25 more, equal 50 in one run
mkdir -p "$tmp/r2"
if $mpirun -np 2 "$attn" $args --max-steps 25 --out "$tmp/r2" > "$tmp/logr1" 2>&1 &&
   $mpirun -np 2 "$attn" $args --max-steps 25 --resume --out "$tmp/r2" > "$tmp/logr2" 2>&1; then
  if cmp -s "$tmp/n1/imdb.safetensors" "$tmp/r2/imdb.safetensors"; then
    echo "dp_imdb: 2 ranks, 25 steps and --resume 25 more = 50 steps in one run, bitwise: ok"
  else
    echo "dp_imdb: 2 ranks, 25 steps and --resume 25 more differ from 50 steps in one run: FAIL"; fail=1
  fi
else
  echo "dp_imdb: the runs of 25 steps failed:"; cat "$tmp/logr1" "$tmp/logr2"; fail=1
fi
# across the epoch's end (50 steps an epoch): 60 steps with 2 ranks equal 60 with 1, and 30 then 30 more
# with --resume (the rows each rank owns and the rows the next epoch's first step reads, after rank 0's
# gather for the evaluation and the checkpoint)
eargs="imdb train --data $data --limit 400 --batch 8 --grad-groups 4 --epochs 2 --threads 1 --seed 7"
mkdir -p "$tmp/e1" "$tmp/e2" "$tmp/er"
if $mpirun -np 1 "$attn" $eargs --max-steps 60 --out "$tmp/e1" > "$tmp/loge1" 2>&1 &&
   $mpirun -np 2 "$attn" $eargs --max-steps 60 --out "$tmp/e2" > "$tmp/loge2" 2>&1 &&
   $mpirun -np 2 "$attn" $eargs --max-steps 30 --out "$tmp/er" > "$tmp/loger1" 2>&1 &&
   $mpirun -np 2 "$attn" $eargs --max-steps 30 --resume --out "$tmp/er" > "$tmp/loger2" 2>&1; then
  for x in e2 er; do
    if cmp -s "$tmp/e1/imdb.safetensors" "$tmp/$x/imdb.safetensors"; then
      echo "dp_imdb: 60 steps over an epoch's end, 1 rank and 2 ranks ($x) bitwise: ok"
    else
      echo "dp_imdb: 60 steps over an epoch's end, 1 rank and 2 ranks ($x) differ: FAIL"; fail=1
    fi
  done
else
  echo "dp_imdb: the runs across an epoch's end failed:"; cat "$tmp/loge1" "$tmp/loge2" "$tmp/loger1" "$tmp/loger2"; fail=1
fi
# only rank 0 writes: one history row, no stray files
rows=$(wc -l < "$tmp/n2/imdb_history.csv")
[ "$rows" -eq 2 ] || { echo "dp_imdb: history has $rows lines, want 2 (header + 1)"; fail=1; }
# a rank that dies: rank 1 kills itself at the second step of a resumed run; the job must fail, the
# checkpoint of the earlier run must still load
cp "$tmp/n2/imdb.safetensors" "$tmp/before.safetensors"
if ATTN_TEST_DIE_AT_STEP=2 $mpirun -np 2 "$attn" $args --resume --epochs 2 --max-steps 4 --out "$tmp/n2" > "$tmp/logdie" 2>&1; then
  echo "dp_imdb: a rank died but the job succeeded:"; cat "$tmp/logdie"; fail=1
else
  echo "dp_imdb: a dead rank stopped the job: ok"
fi
if "$attn" imdb eval --data "$data" --out "$tmp/n2" > "$tmp/logeval" 2>&1; then
  echo "dp_imdb: the checkpoint is intact after the failed run: ok"
else
  echo "dp_imdb: the checkpoint does not load after the failed run: FAIL"; cat "$tmp/logeval"; fail=1
fi
exit $fail
