#!/bin/sh
# The translators' checkpoints under mpirun: written by rank 0 after every epoch and when --max-steps cuts
# one, with Adam's state, the epochs and steps done, the random state and --shards, so that --resume goes
# on with the same bits. For both models: 4 steps on 2 ranks, then --resume 4 more on 2 ranks (crossing
# the end of epoch 1: 5 steps of batch 64), equal 8 steps of one process, byte for byte, and the history
# goes on with the same losses. A rank that dies (ATTN_TEST_DIE_AT_STEP) inside a resumed run stops the job
# naming it; the last checkpoint is byte-identical to before and `translate predict` reads it.
# On pairs the script makes (tests/mpi/fixtures.sh).
# usage: dp_translate_resume.sh MPIRUN ATTN   (MPIRUN may hold flags: it is split on spaces)
set -u
mpirun=$1; attn=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/fixtures.sh"
fra_fixture "$tmp/data" 400
fail=0

# run TAG LOG CMD...: runs CMD with its output in LOG; a failure ends the test
run() {
  tag=$1; log=$2; shift 2
  "$@" > "$log" 2>&1 || { echo "dp_translate_resume: $tag failed:"; cat "$log"; exit 1; }
}

for m in bahdanau transformer; do
  args="translate train --model $m --data $tmp/data --examples 300 --epochs 3 --threads 1 --seed 3"
  case $m in bahdanau) f=seq2seq;; *) f=transformer;; esac
  run "$m: 8 steps, one process" "$tmp/log1" "$attn" $args --max-steps 8 --out "$tmp/one_$m"
  run "$m: 4 steps, 2 ranks" "$tmp/log2" $mpirun -np 2 "$attn" $args --max-steps 4 --out "$tmp/two_$m"
  run "$m: --resume 4 steps, 2 ranks" "$tmp/log3" $mpirun -np 2 "$attn" $args --resume --max-steps 4 --out "$tmp/two_$m"
  grep -q "resuming .* after epoch 0 and part of the next" "$tmp/log3" ||
    { echo "dp_translate_resume: $m: --resume does not say it goes on inside epoch 1:"; cat "$tmp/log3"; fail=1; }
  dp_same dp_translate_resume "$m: 4 + 4 steps on 2 ranks (--resume across an epoch's end) and 8 steps of one process: checkpoints bitwise identical" \
    "$tmp/one_$m/$f.safetensors" "$tmp/two_$m/$f.safetensors"
  if [ "$(cut -d, -f1,2 "$tmp/one_$m/${f}_history.csv")" = "$(cut -d, -f1,2 "$tmp/two_$m/${f}_history.csv")" ]; then
    echo "dp_translate_resume: $m: the resumed history has the same epochs and losses: ok"
  else
    echo "dp_translate_resume: $m: histories differ:"; cat "$tmp/one_$m/${f}_history.csv" "$tmp/two_$m/${f}_history.csv"; fail=1
  fi
  # rank 1 kills itself at the second step of a resumed run (steps 4 and 5 of epoch 2: no checkpoint due)
  cp "$tmp/two_$m/$f.safetensors" "$tmp/before.safetensors"
  if ATTN_TEST_DIE_AT_STEP=1 $mpirun -np 2 "$attn" $args --resume --max-steps 2 --out "$tmp/two_$m" > "$tmp/logdie" 2>&1; then
    echo "dp_translate_resume: $m: a rank died but the job succeeded:"; cat "$tmp/logdie"; fail=1
  elif grep -q "rank 1" "$tmp/logdie"; then
    echo "dp_translate_resume: $m: a dead rank stopped the job, naming it: ok"
  else
    echo "dp_translate_resume: $m: the job stopped without naming the dead rank 1:"; cat "$tmp/logdie"; fail=1
  fi
  dp_same dp_translate_resume "$m: the checkpoint is unchanged after the failed run" "$tmp/before.safetensors" \
    "$tmp/two_$m/$f.safetensors"
  if "$attn" translate predict --dir "$tmp/two_$m" --no-color "one two ." > "$tmp/logp" 2>&1 && grep -q "=>" "$tmp/logp"; then
    echo "dp_translate_resume: $m: translate predict reads the checkpoint after the failed run: ok"
  else
    echo "dp_translate_resume: $m: translate predict fails on the checkpoint after the failed run:"; cat "$tmp/logp"; fail=1
  fi
done
exit $fail
