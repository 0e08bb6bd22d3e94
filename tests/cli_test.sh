#!/bin/sh
# The `attn` program as a user meets it: help, bad flags (usage, exit 2), the walk-through's numbers.
attn=$1
case $attn in /*) ;; *) attn=$(pwd)/$attn ;; esac   # absolute: some checks run in other folders
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
expect_rc() {  # expected-rc description command...
  want=$1; what=$2; shift 2
  "$@" > /tmp/attn_cli_out.$$ 2>&1; rc=$?
  if [ "$rc" = "$want" ]; then ok; else bad "$what: exit $rc, expected $want"; cat /tmp/attn_cli_out.$$; fi
}
expect_rc 0 "attn --help" "$attn" --help
expect_rc 2 "attn with no command" "$attn"
expect_rc 2 "unknown command" "$attn" frobnicate
for c in demo score bench imdb translate plot vision caption detect; do
  expect_rc 0 "attn $c --help" "$attn" $c --help
  grep -q "usage: attn $c" /tmp/attn_cli_out.$$ || bad "attn $c --help prints no usage"
done
expect_rc 2 "demo --bogus" "$attn" demo --bogus
grep -q "usage: attn demo" /tmp/attn_cli_out.$$ || bad "bad flag prints no usage"
expect_rc 2 "demo --batch abc" "$attn" demo --batch abc
expect_rc 2 "demo --batch 0" "$attn" demo --batch 0
expect_rc 2 "demo --heads 3 (does not divide 128)" "$attn" demo --heads 3
expect_rc 2 "demo --batch (missing value)" "$attn" demo --batch
expect_rc 2 "score extra argument" "$attn" score extra
# a value the command rejects after parsing: the usage still shows the default, not the rejected value
expect_rc 2 "demo --batch 0 (usage)" "$attn" demo --batch 0
grep -q -- "--batch N.*(default 32)" /tmp/attn_cli_out.$$ || bad "usage after --batch 0 lacks '(default 32)'"
expect_rc 2 "translate train --dropout 1.5" "$attn" translate train --model transformer --dropout 1.5
grep -q -- "--dropout X.*(default 0.1)" /tmp/attn_cli_out.$$ || bad "usage after --dropout 1.5 lacks '(default 0.1)'"

# The walk-through's figures.
expect_rc 0 "attn score" "$attn" score --no-color
for want in "= 927" "= 397" "= 148" "= 929" "0.1192" "0.8808" "3.8808, 4.0728, 45.2642" "= inf" "NaN"; do
  grep -q -- "$want" /tmp/attn_cli_out.$$ || bad "attn score output lacks '$want'"
done
# The shapes tour.
expect_rc 0 "attn demo" "$attn" demo
for want in "(32, 10, 128)" "(32, 10, 10)" "(32, 4, 10, 10)"; do
  grep -qF -- "$want" /tmp/attn_cli_out.$$ || bad "attn demo output lacks '$want'"
done
# ---- Hardening: the defects users met, each checked on small data made here --------------------------
tmp=$(mktemp -d /tmp/attn_cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
out=/tmp/attn_cli_out.$$
# a fra.txt of 60 pairs over twelve words, and one line whose words appear nowhere else
mkdir -p "$tmp/data/fra-eng"
awk 'BEGIN { split("one two three four five six seven eight nine ten eleven twelve", en, " ");
             split("un deux trois quatre cinq six sept huit neuf dix onze douze", fr, " ");
             s = 7;
             for (i = 0; i < 60; i++) {
               a = (s % 12) + 1; s = (s * 31 + 11) % 997; b = (s % 12) + 1; s = (s * 31 + 11) % 997;
               printf "%s%s %s.\t%s%s %s.\tfixture\n", toupper(substr(en[a],1,1)), substr(en[a],2), en[b],
                      toupper(substr(fr[a],1,1)), substr(fr[a],2), fr[b] } }' > "$tmp/data/fra-eng/fra.txt"
printf 'Zebra.\tZebre.\tfixture\n' >> "$tmp/data/fra-eng/fra.txt"
: > "$tmp/afile"
quick="--data $tmp/data --examples 59 --batch 16 --every 1 --threads 1"

# 7. an output location that cannot be made is refused before any work
expect_rc 1 "translate train --out under a file" "$attn" translate train $quick --epochs 1 --out "$tmp/afile/deep/a/b"
grep -q -- "--out" $out || bad "translate train --out under a file: the message does not name --out"
grep -q "epoch" $out && bad "translate train --out under a file: trained before failing"
expect_rc 1 "imdb train --out under a file" "$attn" imdb train --data "$tmp/nodata" --out "$tmp/afile/x"
grep -q -- "--out" $out || bad "imdb train --out under a file: the message does not name --out"
expect_rc 1 "translate train --out ''" "$attn" translate train --data "$tmp/nodata" --out ""
grep -q "empty folder name" $out || bad "translate train --out '': no message on the empty name"
expect_rc 1 "score --png under a file" "$attn" score --png "$tmp/afile/x.png"
grep -q "Step 1" $out && bad "score --png under a file: ran before failing"

# a small Bahdanau model and a small Transformer
expect_rc 0 "translate train (small)" "$attn" translate train $quick --epochs 3 --out "$tmp/m"
expect_rc 0 "translate train --model transformer (small)" "$attn" translate train --model transformer $quick --epochs 1 --out "$tmp/tf"

# --resume: the translators go on from their checkpoint with the same bits: 3 steps, then 3 more (across
# the end of epoch 1: 4 steps of batch 16) equal 6 in one run, byte for byte, and the history goes on
for m in bahdanau transformer; do
  case $m in bahdanau) f=seq2seq;; *) f=transformer;; esac
  tq="translate train --model $m $quick --epochs 2 --seed 5"
  expect_rc 0 "translate $m: 6 steps" "$attn" $tq --max-steps 6 --out "$tmp/r6_$m"
  expect_rc 0 "translate $m: 3 steps" "$attn" $tq --max-steps 3 --out "$tmp/r3_$m"
  grep -q -- "--max-steps 3: stopped after step 3 (3 of 4 steps into epoch 1)" $out ||
    bad "translate $m --max-steps 3 does not say where it stopped: $(cat $out)"
  expect_rc 0 "translate $m: --resume 3 steps" "$attn" translate train --model $m --data "$tmp/data" --threads 1 \
    --resume --max-steps 3 --out "$tmp/r3_$m"
  grep -q "resuming .* after epoch 0 and part of the next" $out || bad "translate $m --resume does not say it goes on inside epoch 1"
  cmp -s "$tmp/r6_$m/$f.safetensors" "$tmp/r3_$m/$f.safetensors" ||
    bad "translate $m: 3 steps, then --resume 3 steps differ from 6 steps in one run"
  [ "$(cut -d, -f1,2 "$tmp/r6_$m/${f}_history.csv")" = "$(cut -d, -f1,2 "$tmp/r3_$m/${f}_history.csv")" ] ||
    bad "translate $m --resume: the history differs from one run's"
done
# a checkpoint cut inside an epoch is a model: predict reads it
expect_rc 0 "translate predict on a cut checkpoint" "$attn" translate predict --dir "$tmp/r3_bahdanau" --no-color "one two ."
# --resume refuses another --shards and another model (exit 2), a folder without a checkpoint, and a run
# that is done
expect_rc 2 "translate train --resume --shards 4 (trained with 2)" "$attn" translate train $quick --resume --shards 4 \
  --out "$tmp/r3_bahdanau"
grep -q "was trained with --shards 2" $out || bad "translate --resume with another --shards does not say why"
expect_rc 2 "translate train --resume --model transformer on a Bahdanau folder" "$attn" translate train \
  --model transformer $quick --resume --out "$tmp/r3_bahdanau"
grep -q "holds a bahdanau model; give --model bahdanau" $out || bad "translate --resume with another model does not say why"
expect_rc 1 "translate train --resume without a checkpoint" "$attn" translate train $quick --resume --out "$tmp/r_none"
grep -q "no checkpoint in" $out || bad "translate --resume without a checkpoint does not say so"
expect_rc 1 "translate train --resume --epochs 1 (done)" "$attn" translate train $quick --resume --epochs 1 \
  --out "$tmp/r3_bahdanau"
grep -q "already holds 1 of 1 epochs" $out || bad "translate --resume of a finished run does not say so"

# 8. runs of whitespace in the input are one separator
"$attn" translate predict --dir "$tmp/m" --no-color "one two ." > "$tmp/p1" 2>&1
for input in "one  two ." " one two ." "one	two ." "one two .  "; do
  expect_rc 0 "translate predict '$input'" "$attn" translate predict --dir "$tmp/m" --no-color "$input"
  grep -q "unk\|not in the" $out && bad "translate predict '$input' reads an unknown word"
  [ "$(grep '=>' $out)" = "$(grep '=>' "$tmp/p1")" ] || bad "translate predict '$input' differs from 'one two .'"
done

# 9. predict and bleu read which model a folder holds; train refuses to overwrite another model's folder
expect_rc 0 "translate predict --dir <transformer> without --model" "$attn" translate predict --dir "$tmp/tf" --no-color "one two ."
expect_rc 0 "translate bleu --dir <transformer> without --model" "$attn" translate bleu --dir "$tmp/tf" --data "$tmp/data" --from 1 --to 60
expect_rc 1 "translate train (bahdanau) --out <transformer>" "$attn" translate train $quick --epochs 1 --out "$tmp/tf"
grep -q "holds a transformer" $out || bad "translate train over a Transformer's folder does not say what it holds"
expect_rc 1 "translate predict --model bahdanau --dir <transformer>" "$attn" translate predict --model bahdanau --dir "$tmp/tf" "one ."
grep -q "holds a transformer" $out || bad "predict --model bahdanau on a Transformer's folder does not say what it holds"
grep -q "train one first" $out && bad "predict --model bahdanau on a Transformer's folder advises training over it"

# 10. a long input: the => line echoes what was read, and says it was cut
long=$(awk 'BEGIN { for (i = 0; i < 2000; i++) printf "one "; }')
expect_rc 0 "translate predict (2,000 words)" "$attn" translate predict --dir "$tmp/m" --no-color "$long"
n=$(grep "=>" $out | sed 's/=>.*//' | wc -w)
[ "$n" -le 20 ] || bad "translate predict (2,000 words) echoes $n words"
grep "=>" $out | grep -q "cut" || bad "translate predict (2,000 words) does not say the input was cut"

# 11. a bench case larger than the memory is refused at once
expect_rc 1 "bench larger than the memory" timeout 20 "$attn" bench --tq 100000 --tk 100000 --heads 64 --dim 256
grep -q "GiB" $out || bad "bench larger than the memory: no message on the memory needed"

# 11b. packed batches and linear attention in the bench: a bad list is a usage error; tiny runs validate
expect_rc 2 "bench --varlen 64,x" "$attn" bench --varlen 64,x
grep -q "usage: attn bench" $out || bad "bench --varlen 64,x prints no usage"
expect_rc 2 "bench --varlen with --dtype bf16" "$attn" bench --varlen 8,16 --dtype bf16
expect_rc 2 "bench --varlen with --window" "$attn" bench --varlen 8,16 --window 4
expect_rc 0 "bench --varlen tiny" "$attn" bench --varlen 5,17,70 --heads 2 --dim 8 --causal --backward --repeat 1
grep -q "packed / alone" $out || bad "bench --varlen prints no packed / alone ratio"
grep -q "padded (boolean mask) / packed" $out || bad "bench --varlen prints no boolean-mask padded ratio"
expect_rc 0 "bench --linear tiny" "$attn" bench --linear --tq 4096 --dim 8 --repeat 1
grep -q "faster than dense causal" $out || bad "bench --linear prints no comparison with dense attention"
# 11c. bench --window: bad values are usage errors; a small windowed case runs and counts visible pairs
for w in "abc" "-1" "3,x" "3,-2" "4,5,6"; do
  expect_rc 2 "bench --window $w" "$attn" bench --tq 8 --dim 8 --window "$w"
  grep -q "usage: attn bench" /tmp/attn_cli_out.$$ || bad "bench --window $w prints no usage"
done
expect_rc 2 "bench --sinks without --window" "$attn" bench --tq 8 --dim 8 --sinks 2
expect_rc 2 "bench --softcap -1" "$attn" bench --tq 8 --dim 8 --softcap -1
expect_rc 0 "bench --window" "$attn" bench --tq 64 --dim 8 --heads 1 --causal --window 3 --sinks 1 --alibi --softcap 20 --repeat 1 --json
grep -q '"visible_pairs":310,' /tmp/attn_cli_out.$$ || bad "bench --window 3 --sinks 1 causal T=64: visible pairs not 310"
# a run of microseconds gives no cores_busy: the process CPU clock counts other threads only at ticks
grep -q '"cores_busy":null,"gflops_per_busy_core":null,' /tmp/attn_cli_out.$$ ||
  bad "bench of a microseconds run prints a cores_busy figure the CPU clock cannot give"
# ATTN_ISA is the bench's default path (scalar: every CPU has it)
ATTN_ISA=scalar "$attn" bench --tq 16 --dim 8 --heads 1 --repeat 1 --json > $out 2>&1
grep -q '"isa":"scalar"' $out || bad "ATTN_ISA=scalar attn bench did not run the scalar path"
# a bf16 case's roof is the loop of the units that multiply it: AMX tiles, AVX512-BF16's vdpbf16ps, else fp32 FMA
"$attn" bench --dtype bf16 --tq 64 --dim 32 --heads 1 --repeat 1 --json > $out 2>&1
case "$(grep -o '"isa":"[a-z0-9]*"' $out)" in
  '"isa":"amx"') roof="amx bf16 tile" ;;
  '"isa":"avx512bf16"') roof="avx512bf16 vdpbf16ps" ;;
  *) roof="fma" ;;
esac
grep -q "\"peak_kind\":\"[a-z0-9 ]*$roof" $out || bad "bench --dtype bf16: the roof is not '$roof': $(cat $out)"

# 12. no help text cites a file the repository does not have
for c in "imdb --help" "imdb train --help" "translate --help" "translate train --help" "demo --help" "score --help"; do
  "$attn" $c > $out 2>&1
  grep -q "SPEC" $out && bad "attn $c cites SPEC"
done

# 13. settings that used to be ignored
ATTN_ISA=bogus "$attn" demo > $out 2>&1; rc=$?
[ $rc = 2 ] || bad "ATTN_ISA=bogus: exit $rc, expected 2"
grep -q "avx2" $out || bad "ATTN_ISA=bogus: the valid paths are not listed"
# (tiny sizes and no data: a binary that accepted the count would not run long)
for t in "bench --threads 100000 --tq 8 --dim 8" "translate train --threads 100000 --data $tmp/nodata --out $tmp/t1" \
         "imdb train --threads 1000 --data $tmp/nodata --out $tmp/i1"; do
  expect_rc 2 "$t" "$attn" $t
  grep -q -- "--threads 1000" $out || bad "$t: the message does not name --threads"
done
if command -v script > /dev/null 2>&1; then
  esc=$(printf '\033')
  TERM=xterm script -qec "$attn score" /dev/null > $out 2>&1
  grep -q "${esc}\[48;2" $out || echo "note: no colour codes on a pseudo-terminal here: the NO_COLOR checks prove little"
  NO_COLOR=1 TERM=xterm script -qec "$attn score" /dev/null > $out 2>&1
  grep -q "${esc}\[48;2" $out && bad "NO_COLOR=1: colour codes written"
  TERM=dumb script -qec "$attn score" /dev/null > $out 2>&1
  grep -q "${esc}\[48;2" $out && bad "TERM=dumb: colour codes written"
fi

# 14. predict without a model says how to train one
expect_rc 1 "imdb predict --out nowhere" "$attn" imdb predict --out "$tmp/nowhere" "good"
grep -q "attn imdb train" $out || bad "imdb predict --out nowhere does not say how to train a model"

# 15. imdb train says which epoch the checkpoint holds; --keep-best keeps the best one too (an aclImdb
# folder of 24 one-line reviews)
for split in train test; do
  for label in pos neg; do
    mkdir -p "$tmp/imdb/aclImdb/$split/$label"
    for i in 0 1 2 3 4 5; do
      if [ $label = pos ]; then w="good great"; else w="bad awful"; fi
      echo "the $w film $i $w" > "$tmp/imdb/aclImdb/$split/$label/${i}_5.txt"
    done
  done
done
iq="--data $tmp/imdb --out $tmp/io --batch 4 --threads 1 --lr 0.01"
expect_rc 0 "imdb train (small)" "$attn" imdb train $iq --epochs 2
grep -q "imdb.safetensors holds epoch 2 (the last)" $out || bad "imdb train does not say which epoch the checkpoint holds"
expect_rc 0 "imdb train --keep-best" "$attn" imdb train $iq --epochs 2 --keep-best --out "$tmp/io2"
grep -q "imdb_best.safetensors holds epoch" $out || bad "imdb train --keep-best does not say where the best epoch is"
[ -f "$tmp/io2/imdb_best.safetensors" ] || bad "imdb train --keep-best wrote no imdb_best.safetensors"
# --resume after --max-steps goes on inside the cut epoch: 2 + 2 steps (the second run crossing into epoch 2)
# leave bitwise the checkpoint of 4 steps in one run, with the one-batch step and with gradient groups
for g in "" "--grad-groups 2"; do
  rq="--data $tmp/imdb --batch 4 --threads 1 --lr 0.01 --epochs 2 $g"
  expect_rc 0 "imdb train --max-steps 2 $g" "$attn" imdb train $rq --out "$tmp/ir1" --max-steps 2
  grep -q "2 of 3 steps into epoch 1" $out || bad "imdb train --max-steps 2 $g does not say where it stopped"
  expect_rc 0 "imdb train --resume --max-steps 2 $g" "$attn" imdb train $rq --out "$tmp/ir1" --resume --max-steps 2
  grep -q "resuming .* after epoch 0 and 2 steps of epoch 1" $out || bad "imdb --resume $g does not say it goes on inside epoch 1"
  expect_rc 0 "imdb train --max-steps 4 $g" "$attn" imdb train $rq --out "$tmp/ir2" --max-steps 4
  cmp -s "$tmp/ir1/imdb.safetensors" "$tmp/ir2/imdb.safetensors" ||
    bad "imdb train $g: 2 steps, then --resume 2 steps differ from 4 steps in one run"
  rm -rf "$tmp/ir1" "$tmp/ir2"
done
echo "a good great film" > "$tmp/review.txt"
expect_rc 0 "imdb predict --file" "$attn" imdb predict --dir "$tmp/io" --no-color --file "$tmp/review.txt"
grep -q "positive probability" $out || bad "imdb predict --file gives no probability"
echo "a good great film" | "$attn" imdb predict --out "$tmp/io" --no-color - > $out 2>&1 || bad "imdb predict - failed"
grep -q "4 words" $out || bad "imdb predict - did not read the text from standard input"
# --maxlen and --window: bad values exit 2 with the usage, before anything is written; a windowed model
# keeps its maxlen and window in the checkpoint, for eval, predict and --resume
for v in "--window x" "--window -1" "--window 2,x" "--window 2," "--window ,2" "--window 1,-2" "--window 1,2,3" \
         "--maxlen 0" "--maxlen -5" "--maxlen 70000" "--maxlen x"; do
  expect_rc 2 "imdb train $v" "$attn" imdb train $iq --out "$tmp/iw0" $v
  grep -q "usage: attn imdb train" $out || bad "imdb train $v prints no usage"
done
[ -e "$tmp/iw0" ] && bad "imdb train with a bad --window or --maxlen wrote $tmp/iw0"
expect_rc 0 "imdb train --maxlen 8 --window 1,2" "$attn" imdb train $iq --out "$tmp/iw" --epochs 1 --maxlen 8 --window 1,2
grep -q "maxlen 8, window 1,2" $out || bad "imdb train --maxlen 8 --window 1,2: the header does not say so"
grep -aq '"window":"1,2"' "$tmp/iw/imdb.safetensors" || bad "imdb train --window 1,2: not in the checkpoint"
grep -aq '"maxlen":"8"' "$tmp/iw/imdb.safetensors" || bad "imdb train --maxlen 8: not in the checkpoint"
expect_rc 0 "imdb eval (maxlen 8, window)" "$attn" imdb eval --data "$tmp/imdb" --out "$tmp/iw" --threads 1
grep -q "12 test reviews" $out || bad "imdb eval of a --maxlen 8 model: $(cat $out)"
expect_rc 0 "imdb predict (window)" "$attn" imdb predict --out "$tmp/iw" --no-color --weights-out "$tmp/iw.csv" \
  "one two three four five six"
expect_rc 1 "imdb train --resume --window 3 (another window)" "$attn" imdb train $iq --out "$tmp/iw" --epochs 2 \
  --resume --window 3
grep -q "trained with maxlen 8, window 1,2" $out || bad "imdb train --resume with another window does not say why"
expect_rc 0 "imdb train --resume (window from the checkpoint)" "$attn" imdb train $iq --out "$tmp/iw" --epochs 2 --resume
grep -q "maxlen 8, window 1,2" $out || bad "imdb train --resume lost the window"

# 16. bleu: 1-based lines, ranges outside the file, overlap with the training lines, nothing scored
expect_rc 2 "bleu --from 0" "$attn" translate bleu --dir "$tmp/m" --data "$tmp/data" --from 0 --to 5
expect_rc 2 "bleu --from past the end" "$attn" translate bleu --dir "$tmp/m" --data "$tmp/data" --from 1000 --to 2000
grep -q "61 lines" $out || bad "bleu --from past the end does not give the file's length"
expect_rc 0 "bleu --to past the end" "$attn" translate bleu --dir "$tmp/m" --data "$tmp/data" --from 55 --to 999999
grep -q "lines 55-61:" $out || bad "bleu --to past the end is not clamped to the last line"
grep -q "overlap" $out || bad "bleu on training lines gives no warning"
expect_rc 1 "bleu, nothing scored" "$attn" translate bleu --dir "$tmp/m" --data "$tmp/data" --from 61 --to 61
expect_rc 0 "bleu --show" "$attn" translate bleu --dir "$tmp/m" --data "$tmp/data" --from 1 --to 1 --show 1
head -1 "$tmp/data/fra-eng/fra.txt" | cut -f1 | tr 'A-Z' 'a-z' | sed 's/\./ ./' > "$tmp/first"
grep -q "line 1: $(cat "$tmp/first") =>" $out || bad "bleu --from 1: line 1 is not the file's first line"

# 17. a bad value names its flag and range
expect_rc 2 "demo --batch 0 (message)" "$attn" demo --batch 0
grep -q -- "--batch 0: must be in 1..4096" $out || bad "demo --batch 0 does not name the flag and its range"
expect_rc 2 "translate train --heads 3" "$attn" translate train --model transformer --heads 3
grep -q -- "--heads 3: must divide --hidden 32" $out || bad "translate train --heads 3 does not name the flag"
grep -q -- "--epochs, --batch" $out && bad "translate train --heads 3 lists every constraint"

# 19. --out and --dir everywhere, --file and - for the text, ATTN_DATA
expect_rc 1 "imdb predict --dir nowhere" "$attn" imdb predict --dir "$tmp/nowhere" "good"
expect_rc 0 "translate predict --out" "$attn" translate predict --out "$tmp/m" --no-color "one two ."
printf 'one two .\n' > "$tmp/in.txt"
expect_rc 0 "translate predict --file" "$attn" translate predict --dir "$tmp/m" --no-color --file "$tmp/in.txt"
[ "$(grep '=>' $out)" = "$(grep '=>' "$tmp/p1")" ] || bad "translate predict --file differs from the argument"
printf 'one two .\n' | "$attn" translate predict --dir "$tmp/m" --no-color - > $out 2>&1 || bad "translate predict - failed"
[ "$(grep '=>' $out)" = "$(grep '=>' "$tmp/p1")" ] || bad "translate predict - (stdin) differs from the argument"
expect_rc 2 "translate predict without a text" "$attn" translate predict --dir "$tmp/m"
ATTN_DATA="$tmp/data" "$attn" translate bleu --dir "$tmp/m" --from 50 --to 60 > $out 2>&1 || bad "ATTN_DATA is not used"
ATTN_DATA="$tmp/nodata" "$attn" translate bleu --dir "$tmp/m" > $out 2>&1
grep -q "ATTN_DATA" $out || bad "a missing data folder from ATTN_DATA is not said"
(cd "$tmp" && "$attn" translate bleu --dir m > $out 2>&1)
grep -q "working directory" $out || bad "a missing default data folder does not say it is relative to the working directory"

# 20. training histories beside the checkpoints, their curves, and `attn plot`
png_size() {  # prints "W H" of a PNG (its IHDR), or nothing
  od -An -tu1 -j16 -N8 "$1" 2>/dev/null | awk '{ print $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8 }'
}
h="$tmp/io/imdb_history.csv"
[ "$(head -1 "$h")" = "epoch,loss,acc,val_loss,val_acc,seconds" ] || bad "imdb history header: $(head -1 "$h")"
[ "$(wc -l < "$h")" = 3 ] || bad "imdb history after 2 epochs has $(wc -l < "$h") lines, expected 3"
[ "$(cut -d, -f1 "$h" | tr '\n' ' ')" = "epoch 1 2 " ] || bad "imdb history epochs: $(cut -d, -f1 "$h" | tr '\n' ' ')"
awk -F, 'NR > 1 && ($2 <= 0 || $3 < 0 || $3 > 1 || $5 < 0 || $5 > 1 || $6 <= 0) { exit 1 }' "$h" || bad "imdb history values out of range"
ls "$tmp/io" | grep -q "\.tmp$" && bad "a temporary file is left in the imdb folder"
# resumed: the rows up to the checkpoint's epoch are kept, a row past it (written before a crash) is replaced
cp "$h" "$tmp/h2"
echo "3,9,9,9,9,9" >> "$h"
expect_rc 0 "imdb train --resume (history)" "$attn" imdb train $iq --epochs 3 --resume --plot "$tmp/imdb_curves.png"
grep -q "past the checkpoint's epoch 2" $out || bad "imdb train --resume does not say it drops the history's row past the checkpoint"
[ "$(head -3 "$h")" = "$(cat "$tmp/h2")" ] || bad "imdb train --resume changed the history's first rows"
[ "$(wc -l < "$h")" = 4 ] && ! grep -q "^3,9," "$h" || bad "imdb train --resume: history $(cat "$h")"
set -- $(png_size "$tmp/imdb_curves.png")
[ "${1:-0}" -gt 1000 ] && [ "${2:-0}" -gt 300 ] || bad "imdb train --plot: image size ${1:-?}x${2:-?}"
printf 'epoch,loss,acc,val_loss,val_acc,seconds\n1,x,1,1,1,1\n' > "$tmp/io/imdb_history.csv"
expect_rc 1 "imdb train --resume over a malformed history" "$attn" imdb train $iq --epochs 4 --resume
grep -q "imdb_history.csv: line 2" $out || bad "imdb train --resume over a malformed history does not name the file and line"
echo "other,columns" > "$tmp/io/imdb_history.csv"
expect_rc 1 "imdb train --resume over another history" "$attn" imdb train $iq --epochs 4 --resume
grep -q "other columns" $out || bad "imdb train --resume over another history does not say so"
# the translators: one row per epoch, written even without --plot
for m in "m seq2seq" "tf transformer"; do
  set -- $m
  h="$tmp/$1/$2_history.csv"
  [ "$(head -1 "$h" 2>/dev/null)" = "epoch,loss,tokens_per_sec,seconds" ] || bad "$2 history header: $(head -1 "$h" 2>&1)"
done
[ "$(wc -l < "$tmp/m/seq2seq_history.csv")" = 4 ] || bad "seq2seq history after 3 epochs: $(wc -l < "$tmp/m/seq2seq_history.csv") lines"
expect_rc 0 "translate train --plot" "$attn" translate train $quick --epochs 3 --out "$tmp/m3" --plot "$tmp/loss.png"
grep -q "history: $tmp/m3/seq2seq_history.csv, curve: $tmp/loss.png" $out || bad "translate train --plot does not say where the history and curve are"
set -- $(png_size "$tmp/loss.png")
[ "${1:-0}" -gt 500 ] && [ "${2:-0}" -gt 300 ] || bad "translate train --plot: image size ${1:-?}x${2:-?}"
expect_rc 1 "translate train --plot a folder" "$attn" translate train $quick --epochs 1 --out "$tmp/m4" --plot "$tmp"
grep -q "epoch" $out && bad "translate train --plot a folder: trained before failing"
# attn plot
expect_rc 0 "plot history" "$attn" plot "$tmp/m/seq2seq_history.csv" --out "$tmp/p.png"
grep -q "wrote $tmp/p.png (3 epochs)" $out || bad "attn plot does not say what it wrote"
expect_rc 0 "plot --columns" "$attn" plot "$tmp/io2/imdb_history.csv" --out "$tmp/p2.png" --columns loss,val_loss --title T
expect_rc 2 "plot without --out" "$attn" plot "$tmp/m/seq2seq_history.csv"
grep -q "usage: attn plot" $out || bad "plot without --out prints no usage"
expect_rc 2 "plot --out x.jpg" "$attn" plot "$tmp/m/seq2seq_history.csv" --out "$tmp/x.jpg"
expect_rc 2 "plot --bogus" "$attn" plot "$tmp/m/seq2seq_history.csv" --out "$tmp/p.png" --bogus
expect_rc 2 "plot without a file" "$attn" plot --out "$tmp/p.png"
expect_rc 2 "plot --columns nosuch" "$attn" plot "$tmp/m/seq2seq_history.csv" --out "$tmp/p.png" --columns nosuch
grep -q "no column 'nosuch'" $out && grep -q "epoch loss tokens_per_sec seconds" $out || bad "plot --columns nosuch does not list the columns"
printf 'epoch,loss\n1,0.5\n2,zero\n' > "$tmp/bad.csv"
expect_rc 1 "plot a malformed CSV" "$attn" plot "$tmp/bad.csv" --out "$tmp/p.png"
grep -q "bad.csv: line 3: field 2 (loss): 'zero' is not a number" $out || bad "plot a malformed CSV: $(cat $out)"
printf 'epoch,loss\n1,0.5\n2\n' > "$tmp/bad.csv"
expect_rc 1 "plot a short row" "$attn" plot "$tmp/bad.csv" --out "$tmp/p.png"
grep -q "bad.csv: line 3: 1 fields, expected 2" $out || bad "plot a short row: $(cat $out)"
: > "$tmp/empty.csv"
expect_rc 1 "plot an empty file" "$attn" plot "$tmp/empty.csv" --out "$tmp/p.png"
grep -q "empty" $out || bad "plot an empty file: no message"
printf 'epoch,loss\n' > "$tmp/norows.csv"
expect_rc 1 "plot a history without rows" "$attn" plot "$tmp/norows.csv" --out "$tmp/p.png"
expect_rc 1 "plot a missing file" "$attn" plot "$tmp/nosuch.csv" --out "$tmp/p.png"
grep -q "nosuch.csv" $out || bad "plot a missing file does not name it"

# 21. predict --weights-out: the numbers it draws, with the words
expect_rc 0 "translate predict --weights-out .npy" "$attn" translate predict --dir "$tmp/m" --no-color --weights-out "$tmp/w.npy" "one two ."
[ "$(head -c 6 "$tmp/w.npy" | tail -c 5)" = "NUMPY" ] || bad "--weights-out .npy: no NumPy magic"
head -c 128 "$tmp/w.npy" | grep -q "'shape': (" || bad "--weights-out .npy: no shape in the header"
grep -q '"cols": \["one", "two", ".", "<eos>"\]' "$tmp/w.labels.json" || bad "--weights-out .npy: labels file $(cat "$tmp/w.labels.json" 2>&1)"
expect_rc 0 "translate predict --weights-out .csv" "$attn" translate predict --dir "$tmp/m" --no-color --weights-out "$tmp/w.csv" "one two ."
[ "$(head -1 "$tmp/w.csv")" = "map,row,col,row_label,col_label,weight" ] || bad "--weights-out .csv header"
# every row of weights sums to 1
awk -F, 'NR > 1 { s[$2] += $NF } END { for (r in s) if (s[r] < 0.999 || s[r] > 1.001) exit 1 }' "$tmp/w.csv" || bad "--weights-out .csv rows do not sum to 1"
expect_rc 0 "transformer predict --weights-out .json" "$attn" translate predict --dir "$tmp/tf" --no-color --weights-out "$tmp/tw.json" "one two ."
[ "$(grep -c '"title": "block 2, head' "$tmp/tw.json")" = 4 ] || bad "transformer --weights-out .json does not hold the 4 heads"
expect_rc 0 "imdb predict --weights-out .json" "$attn" imdb predict --dir "$tmp/io2" --no-color --weights-out "$tmp/iw.json" "a good great film"
grep -q '"rows": \["<start>", "a?", "good", "great", "film"\]' "$tmp/iw.json" || bad "imdb --weights-out .json: $(head -c 300 "$tmp/iw.json")"
# 24. IMDB honesty: the padding's share of the attention, in the text and as the picture's last column;
# --mask-padding trains the same model with the padding keys masked, and predict reads that from the checkpoint
grep -q "padding: 59 of 64 positions take [0-9]*% of the review's attention (<start>" $out || bad "imdb predict: no padding share line"
grep -q '"cols": \["<start>", "a?", "good", "great", "film", "<pad> x59"\]' "$tmp/iw.json" || bad "imdb --weights-out .json: no padding column"
expect_rc 0 "imdb train --mask-padding" "$attn" imdb train $iq --epochs 2 --mask-padding --out "$tmp/iom"
expect_rc 0 "imdb predict (masked model)" "$attn" imdb predict --dir "$tmp/iom" --no-color --png "$tmp/im.png" "a good great film"
grep -q "take 0% of the review's attention.*the model masks it" $out || bad "imdb predict, masked model: padding not at 0%"
expect_rc 0 "imdb eval (masked model)" "$attn" imdb eval --data "$tmp/imdb" --dir "$tmp/iom" --threads 1
expect_rc 1 "imdb train --resume --mask-padding on an unmasked model" "$attn" imdb train $iq --epochs 3 --resume --mask-padding --out "$tmp/io2"
grep -q "trained without the padding mask" $out || bad "--resume --mask-padding on an unmasked model: no message"
# --precision: bf16 attention compute, saved in the checkpoint (eval reads it); bad values exit 2 with the usage
expect_rc 2 "imdb train --precision fp8" "$attn" imdb train $iq --precision fp8 --out "$tmp/iob"
grep -q -- "--precision fp8: must be f32 or bf16" $out && grep -q "usage: attn imdb train" $out || bad "imdb --precision fp8: $(cat $out)"
expect_rc 2 "vision train --precision half" "$attn" vision train --precision half --out "$tmp/vb"
grep -q "usage: attn vision train" $out || bad "vision --precision half prints no usage"
expect_rc 2 "translate train --precision fp8 (bahdanau)" "$attn" translate train --precision fp8 --out "$tmp/mb"
grep -q "usage: attn translate train" $out || bad "translate --precision fp8 (bahdanau) prints no usage"
expect_rc 0 "translate train --precision bf16 (bahdanau)" "$attn" translate train $quick --epochs 1 --precision bf16 --out "$tmp/mb"
# the banner says what runs: bf16 where the path has bf16 units, else f32 with the reason
bf_word="attention compute (bf16|f32 \(bf16 asked: the kernel path in use runs this model's attention in fp32\))"
grep -Eq "additive attention 32.*$bf_word" $out || bad "translate --precision bf16 (bahdanau) does not say so: $(cat $out)"
expect_rc 0 "translate predict (bf16 Bahdanau model)" "$attn" translate predict --dir "$tmp/mb" --no-color "go ."
expect_rc 2 "translate train --model transformer --precision x" "$attn" translate train --model transformer --precision x --out "$tmp/mb"
# the Transformer's 10-step heads: bf16 where the path has bf16 units (AMX or AVX512-BF16, which takes such
# short heads of fp32 tensors on bf16 copies), f32 with the reason on a path without them
"$attn" bench --tq 16 --dim 8 --heads 1 --repeat 1 --json > $out 2>&1
tf_word="attention compute f32 (bf16 asked"
grep -Eq '"isa":"(amx|avx512bf16)"' $out && tf_word="attention compute bf16"
expect_rc 0 "translate train --model transformer --precision bf16" "$attn" translate train --model transformer $quick --epochs 1 --precision bf16 --out "$tmp/tfb"
grep -qF "$tf_word" $out || bad "transformer --precision bf16: the banner does not say '$tf_word': $(cat $out)"
ATTN_ISA=scalar "$attn" translate train --model transformer $quick --epochs 1 --precision bf16 --out "$tmp/tfb" \
  > $out 2>&1 || bad "transformer --precision bf16 on the scalar path failed"
grep -qF "attention compute f32 (bf16 asked" $out ||
  bad "transformer --precision bf16, scalar path: the banner does not say it runs fp32: $(cat $out)"
expect_rc 0 "imdb train --precision bf16" "$attn" imdb train $iq --epochs 1 --precision bf16 --out "$tmp/iob"
grep -Eq "$bf_word" $out || bad "imdb train --precision bf16 does not say so"
expect_rc 0 "imdb eval (bf16 model)" "$attn" imdb eval --data "$tmp/imdb" --dir "$tmp/iob" --threads 1
grep -Eq "$bf_word" $out || bad "imdb eval of a bf16 model does not read its compute: $(cat $out)"
expect_rc 1 "imdb train --resume --precision f32 on a bf16 model" "$attn" imdb train $iq --epochs 2 --resume --precision f32 --out "$tmp/iob"
grep -q "was trained with --precision bf16" $out || bad "--resume --precision f32 on a bf16 model: no message"
expect_rc 2 "predict --weights-out .txt" "$attn" translate predict --dir "$tmp/m" --weights-out "$tmp/w.txt" "one ."
grep -q "must end in .npy, .csv or .json" $out || bad "--weights-out .txt: no message on the format"
expect_rc 2 "imdb predict --weights-out .txt" "$attn" imdb predict --dir "$tmp/io2" --weights-out "$tmp/w.txt" "good"
mkdir -p "$tmp/d.json"
expect_rc 1 "predict --weights-out a folder" "$attn" translate predict --dir "$tmp/m" --weights-out "$tmp/d.json" "one ."
grep -q "is a folder" $out || bad "predict --weights-out a folder: no message"

# 22. --annotate: numbers in the cells (the cells grow to hold them)
expect_rc 0 "score --png" "$attn" score --no-color --png "$tmp/s1.png"
expect_rc 0 "score --annotate --png" "$attn" score --no-color --annotate --png "$tmp/s2.png"
set -- $(png_size "$tmp/s1.png") $(png_size "$tmp/s2.png")
[ "${1:-0}" -gt 0 ] && [ "${3:-0}" -ge "${1:-0}" ] || bad "score --annotate: sizes ${1:-?} and ${3:-?}"
# 23. one's own query and keys, the walk-through's six panels, and d2l's masked_softmax
expect_rc 0 "score --query --keys --values" "$attn" score --no-color --query "1,0,2" --keys "1,1,1;0,2,1;3,0,0" --values "1,0;0,1;1,1"
for want in "score(s, h1) = 1·1 + 0·1 + 2·1 = 3" "weight(h2) = exp(2 - 3) / Σ = 0.1554" "context                [0.8446, 0.5777]" "does not overflow"; do
  grep -qF -- "$want" $out || bad "score with own vectors lacks '$want'"
done
expect_rc 2 "score keys longer than the query" "$attn" score --query "1,2" --keys "1,2,3"
grep -q "must match" $out || bad "score, keys longer than the query: no message"
expect_rc 2 "score ragged keys" "$attn" score --query "1,2" --keys "1,2;3"
expect_rc 2 "score values for fewer keys" "$attn" score --query "1,2" --keys "1,2;3,4" --values "1"
expect_rc 2 "score not a number" "$attn" score --query "1,x"
expect_rc 2 "score infinite" "$attn" score --query "1,inf" --keys "1,2"
set -- $(png_size "$tmp/s1.png")
[ "${1:-0}" -ge 600 ] && [ "${2:-0}" -ge 500 ] || bad "score --png: six panels expected, image ${1:-?}x${2:-?}"
expect_rc 0 "score --masked-softmax" "$attn" score --no-color --masked-softmax --png "$tmp/ms.png"
for want in "0.3655, 0.6345, 0.0000, 0.0000" "[[1.0000, 0.0000, 0.0000, 0.0000]," "0.2397, 0.3154, 0.2502, 0.1948"; do
  grep -qF -- "$want" $out || bad "score --masked-softmax lacks '$want'"
done
expect_rc 2 "score --masked-softmax --query" "$attn" score --masked-softmax --query "1,2"
set -- $(png_size "$tmp/ms.png")
[ "${1:-0}" -gt 0 ] || bad "score --masked-softmax --png wrote no PNG"
expect_rc 0 "translate predict --annotate" "$attn" translate predict --dir "$tmp/m" --no-color --annotate --png "$tmp/a.png" "one two ."
expect_rc 0 "transformer predict --annotate" "$attn" translate predict --dir "$tmp/tf" --no-color --annotate --png "$tmp/ta.png" "one two ."
grep -q "heatmaps: encoder self-attention, decoder self-attention and cross-attention, 2 blocks x 4 heads" $out ||
  bad "transformer predict --png does not draw the three kinds of attention of every block and head"
set -- $(png_size "$tmp/ta.png")
[ "${2:-0}" -gt "$((6 * 100))" ] || bad "transformer predict --png: 6 rows of heads expected, height ${2:-?}"
expect_rc 0 "transformer predict --png --layer 1 --head 2" "$attn" translate predict --dir "$tmp/tf" --no-color --layer 1 --head 2 --png "$tmp/tb.png" "one two ."
grep -q "wrote .*tb.png (3 heatmaps" $out || bad "transformer predict --png --layer 1 --head 2: not 3 maps"
expect_rc 0 "imdb predict --annotate" "$attn" imdb predict --dir "$tmp/io2" --no-color --annotate --png "$tmp/ia.png" "a good great film"
# --html: the explorer page of each predict, checked before any work; --palette: known names only
expect_rc 0 "translate predict --html" "$attn" translate predict --dir "$tmp/m" --no-color --html "$tmp/b.html" "one two ."
grep -q '"group":"additive attention"' "$tmp/b.html" || bad "translate predict --html: no attention map in the page"
grep -q "wrote .*b.html (the explorer: 1 map" $out || bad "translate predict --html does not say what it wrote"
expect_rc 0 "transformer predict --html" "$attn" translate predict --dir "$tmp/tf" --no-color --html "$tmp/t.html" "one two ."
for g in "encoder self-attention" "decoder self-attention" "cross-attention"; do
  grep -q "\"group\":\"$g\",\"layer\":2,\"head\":4" "$tmp/t.html" || bad "transformer predict --html: no $g of block 2, head 4"
  grep -q "\"group\":\"$g\",\"layer\":2,\"head\":0,\"title\":\"$g, block 2, mean of 4 heads\"" "$tmp/t.html" ||
    bad "transformer predict --html: no mean of the heads of $g, block 2"
done
expect_rc 0 "imdb predict --html" "$attn" imdb predict --dir "$tmp/io" --no-color --html "$tmp/i.html" "a good great film"
grep -q "padding positions take" "$tmp/i.html" || bad "imdb predict --html: the page does not give the padding's share"
grep -q '"\\u003cpad\\u003e x' "$tmp/i.html" || bad "imdb predict --html: no padding column in the map"
grep -q 'src=\|href=' "$tmp/i.html" && bad "imdb predict --html: the page refers to another file"
expect_rc 1 "imdb predict --html under a file" "$attn" imdb predict --dir "$tmp/io" --html "$tmp/afile/x.html" "good"
grep -q -- "--html" $out || bad "imdb predict --html under a file: the message does not name --html"
grep -q "probability" $out && bad "imdb predict --html under a file: classified before failing"
expect_rc 1 "translate predict --html under a file" "$attn" translate predict --dir "$tmp/tf" --html "$tmp/afile/x.html" "one ."
grep -q "=>" $out && bad "translate predict --html under a file: translated before failing"
for c in "score" "imdb predict --dir $tmp/io good" "translate predict --dir $tmp/m one" "translate predict --dir $tmp/tf one"; do
  expect_rc 2 "$c --palette inferno" "$attn" $c --palette inferno
  grep -q "magma, viridis, gray, blues" $out || bad "$c --palette inferno: the palettes are not listed"
done
expect_rc 0 "score --palette blues --png" "$attn" score --no-color --palette blues --png "$tmp/sb.png"
# every command that prints a heatmap: colours on a terminal, in the palette asked for (the scale ends at
# viridis's yellow); none under NO_COLOR or TERM=dumb
if command -v script > /dev/null 2>&1; then
  esc=$(printf '\033')
  for c in "score" "score --masked-softmax" "imdb predict --dir $tmp/io good" "translate predict --dir $tmp/m one" \
           "translate predict --dir $tmp/tf one"; do
    TERM=xterm script -qec "$attn $c --palette viridis" /dev/null > $out 2>&1
    if grep -q "${esc}\[48;2" $out; then
      grep -q "${esc}\[48;2;253;231;37m" $out || bad "$c --palette viridis: the terminal's colours are not viridis"
    else
      echo "note: $c: no colour codes on a pseudo-terminal here"
    fi
    NO_COLOR=1 TERM=xterm script -qec "$attn $c" /dev/null > $out 2>&1
    grep -q "${esc}\[48;2" $out && bad "$c: NO_COLOR=1: colour codes written"
    TERM=dumb script -qec "$attn $c" /dev/null > $out 2>&1
    grep -q "${esc}\[48;2" $out && bad "$c: TERM=dumb: colour codes written"
  done
fi
"$attn" plot --help > $out 2>&1
grep -q "SPEC" $out && bad "attn plot --help cites SPEC"

# vision: a Fashion-MNIST-shaped fixture of 20 random 28x28 images (all labelled 0), gzip IDX as Debian ships.
vd="$tmp/fm"; mkdir -p "$vd"
for s in train t10k; do
  { printf '\0\0\10\3\0\0\0\24\0\0\0\34\0\0\0\34'; head -c 15680 /dev/urandom; } | gzip > "$vd/$s-images-idx3-ubyte.gz"
  { printf '\0\0\10\1\0\0\0\24'; head -c 20 /dev/zero; } | gzip > "$vd/$s-labels-idx1-ubyte.gz"
done
vq="--data $vd --out $tmp/vo --batch 10 --threads 1 --patch 7 --dim 8 --heads 2 --blocks 1 --mlp 8"
expect_rc 2 "vision (no subcommand)" "$attn" vision
expect_rc 2 "vision frobnicate" "$attn" vision frobnicate
expect_rc 2 "vision train --bogus" "$attn" vision train --bogus
grep -q "usage: attn vision train" $out || bad "vision train --bogus prints no usage"
expect_rc 2 "vision train --patch 5" "$attn" vision train $vq --patch 5
expect_rc 2 "vision train --heads 3" "$attn" vision train $vq --heads 3
expect_rc 2 "vision train --lr 0" "$attn" vision train $vq --lr 0
expect_rc 2 "vision train --blocks 0" "$attn" vision train $vq --blocks 0
expect_rc 1 "vision train --data nowhere" "$attn" vision train --data "$tmp/nowhere" --out "$tmp/vo0"
grep -q "$tmp/nowhere/train-images-idx3-ubyte.gz" $out || bad "vision train --data nowhere does not say where it looked"
expect_rc 0 "vision train (fixture)" "$attn" vision train $vq --epochs 1
grep -q "test_acc: " $out || bad "vision train prints no test_acc"
[ -f "$tmp/vo/vit.safetensors" ] && [ -f "$tmp/vo/vit_history.csv" ] || bad "vision train wrote no checkpoint or history"
expect_rc 0 "vision train --resume" "$attn" vision train --data "$vd" --out "$tmp/vo" --threads 1 --resume --epochs 2
grep -q "resuming .* after epoch 1" $out || bad "vision train --resume does not say where it resumes"
# --resume after --max-steps goes on inside the cut epoch (5 steps an epoch): 3 + 4 steps equal 7 in one run
vr="--data $vd --batch 4 --threads 1 --patch 7 --dim 8 --heads 2 --blocks 1 --mlp 8 --epochs 2"
expect_rc 0 "vision train --max-steps 3" "$attn" vision train $vr --out "$tmp/vr1" --max-steps 3
grep -q "3 of 5 steps into epoch 1" $out || bad "vision train --max-steps 3 does not say where it stopped"
expect_rc 0 "vision train --resume --max-steps 4" "$attn" vision train --data "$vd" --threads 1 --out "$tmp/vr1" --resume --max-steps 4
expect_rc 0 "vision train --max-steps 7" "$attn" vision train $vr --out "$tmp/vr2" --max-steps 7
cmp -s "$tmp/vr1/vit.safetensors" "$tmp/vr2/vit.safetensors" ||
  bad "vision train: 3 steps, then --resume 4 steps differ from 7 steps in one run"
expect_rc 2 "vision train --max-steps -1" "$attn" vision train $vr --out "$tmp/vr3" --max-steps -1
# a seed past 2^53 (a double's whole numbers) resumes as itself: 3 + 4 steps equal 7 with it
big=18446744073709551557
expect_rc 0 "vision train --seed $big --max-steps 3" "$attn" vision train $vr --seed $big --out "$tmp/vs1" --max-steps 3
expect_rc 0 "vision train --resume (seed $big)" "$attn" vision train --data "$vd" --threads 1 --out "$tmp/vs1" --resume --max-steps 4
grep -q "seed $big," $out || bad "vision train --resume does not give back the seed $big"
expect_rc 0 "vision train --seed $big --max-steps 7" "$attn" vision train $vr --seed $big --out "$tmp/vs2" --max-steps 7
cmp -s "$tmp/vs1/vit.safetensors" "$tmp/vs2/vit.safetensors" ||
  bad "vision train --seed $big: 3 steps, then --resume 4 steps differ from 7 steps in one run"
# the augmentation's flags and their persistence: crops padded by 1 without flips, cut and resumed
expect_rc 2 "vision train --crop -1" "$attn" vision train $vr --out "$tmp/vr3" --crop -1
expect_rc 2 "vision train --crop 9" "$attn" vision train $vr --out "$tmp/vr3" --crop 9
expect_rc 0 "vision train --crop 1 --no-flip --max-steps 3" "$attn" vision train $vr --crop 1 --no-flip --out "$tmp/vr4" --max-steps 3
grep -q "crop (pad 1)," $out || bad "vision train --crop 1 --no-flip does not say its augmentation"
expect_rc 0 "vision train --resume (crop 1, no flip)" "$attn" vision train --data "$vd" --threads 1 --out "$tmp/vr4" --resume --max-steps 4
expect_rc 0 "vision train --crop 1 --no-flip --max-steps 7" "$attn" vision train $vr --crop 1 --no-flip --out "$tmp/vr5" --max-steps 7
cmp -s "$tmp/vr4/vit.safetensors" "$tmp/vr5/vit.safetensors" ||
  bad "vision train --crop 1 --no-flip: 3 steps, then --resume 4 steps differ from 7 steps in one run"
cmp -s "$tmp/vr2/vit.safetensors" "$tmp/vr5/vit.safetensors" && bad "vision train: --crop 1 --no-flip changed nothing"
# A run setting kept in the checkpoint (--patch-kernel, --label-smoothing): bad values refused with the usage;
# the banner says it; --resume keeps it (3 + 4 steps equal 7 in one run) and refuses another; it changes the
# run, and its plain value gives the plain run's checkpoint byte for byte.
#   kept_setting FLAG VALUE OTHER PLAIN BANNER DIR BAD...
kept_setting() {
  flag=$1; val=$2; other=$3; plain=$4; banner=$5; d=$6; shift 6
  for x in "$@"; do
    expect_rc 2 "vision train $flag $x" "$attn" vision train $vr --out "$d.bad" $flag $x
    grep -q "usage: attn vision train" $out || bad "vision train $flag $x prints no usage"
  done
  expect_rc 0 "vision train $flag $val --max-steps 3" "$attn" vision train $vr $flag $val --out "$d.1" --max-steps 3
  grep -q "$banner" $out || bad "vision train $flag $val: the banner does not say it"
  expect_rc 2 "vision train --resume $flag $other" "$attn" vision train --data "$vd" --threads 1 --out "$d.1" --resume $flag $other --max-steps 4
  grep -q "trained with $flag $val" $out || bad "vision train --resume $flag $other does not say the checkpoint's"
  expect_rc 0 "vision train --resume ($flag $val)" "$attn" vision train --data "$vd" --threads 1 --out "$d.1" --resume --max-steps 4
  grep -q "$banner" $out || bad "vision train --resume does not keep the checkpoint's $flag"
  expect_rc 0 "vision train $flag $val --max-steps 7" "$attn" vision train $vr $flag $val --out "$d.2" --max-steps 7
  cmp -s "$d.1/vit.safetensors" "$d.2/vit.safetensors" ||
    bad "vision train $flag $val: 3 steps, then --resume 4 steps differ from 7 steps in one run"
  cmp -s "$tmp/vr2/vit.safetensors" "$d.2/vit.safetensors" && bad "vision train: $flag $val changed nothing"
  expect_rc 0 "vision train $flag $plain --max-steps 7" "$attn" vision train $vr $flag $plain --out "$d.3" --max-steps 7
  cmp -s "$tmp/vr2/vit.safetensors" "$d.3/vit.safetensors" ||
    bad "vision train: $flag $plain is not the plain run's checkpoint byte for byte"
}
kept_setting --patch-kernel 13 11 7 "patch 7 (kernel 13, overlapping)" "$tmp/vk" 5 8 23
expect_rc 0 "vision eval (kernel 13)" "$attn" vision eval --data "$vd" --out "$tmp/vk.2"
expect_rc 0 "vision predict --png (kernel 13)" "$attn" vision predict --data "$vd" --out "$tmp/vk.2" --png "$tmp/vkp.png" 3
[ -s "$tmp/vkp.png" ] || bad "vision predict --png (kernel 13) wrote no picture"
kept_setting --label-smoothing 0.1 0.2 0 "label smoothing 0.1," "$tmp/vl" -0.1 1 nan
[ "$(head -1 "$tmp/vo/vit_history.csv")" = "epoch,loss,acc,test_loss,test_acc,seconds" ] ||
  bad "vision history header: $(head -1 "$tmp/vo/vit_history.csv")"
# a history begun with the older names (val_loss, val_acc) goes on under them when resumed
mkdir -p "$tmp/vo_old"; cp "$tmp/vo/vit.safetensors" "$tmp/vo_old/"
sed '1s/test_/val_/g' "$tmp/vo/vit_history.csv" > "$tmp/vo_old/vit_history.csv"
expect_rc 0 "vision train --resume (older history)" "$attn" vision train --data "$vd" --out "$tmp/vo_old" --threads 1 --resume --epochs 3
[ "$(head -1 "$tmp/vo_old/vit_history.csv")" = "epoch,loss,acc,val_loss,val_acc,seconds" ] &&
  [ "$(wc -l < "$tmp/vo_old/vit_history.csv")" -eq 4 ] || bad "vision train --resume: the older history was not continued"
expect_rc 0 "plot vit_history.csv" "$attn" plot "$tmp/vo/vit_history.csv" --out "$tmp/vh.png"
[ -s "$tmp/vh.png" ] || bad "attn plot drew nothing from the vision history"
# test_ columns share their quantity's chart as val_ ones do: one row of charts, the height of a val_ history's
# picture (IHDR's height; unpaired, the four quantities take two rows)
printf 'epoch,loss,acc,val_loss,val_acc,seconds\n1,.5,.7,.6,.6,1\n2,.4,.8,.5,.7,1\n' > "$tmp/hv.csv"
sed 's/val_/test_/g' "$tmp/hv.csv" > "$tmp/ht.csv"
expect_rc 0 "plot (val_ columns)" "$attn" plot "$tmp/hv.csv" --out "$tmp/hv.png"
expect_rc 0 "plot (test_ columns)" "$attn" plot "$tmp/ht.csv" --out "$tmp/ht.png"
[ "$(head -c 24 "$tmp/hv.png" | tail -c 4 | od -An -tx1)" = "$(head -c 24 "$tmp/ht.png" | tail -c 4 | od -An -tx1)" ] ||
  bad "attn plot: test_loss/test_acc are not drawn with loss/acc (the picture's height differs from val_'s)"
expect_rc 0 "vision eval" "$attn" vision eval --data "$vd" --out "$tmp/vo"
grep -q "^test_acc [01]\.[0-9][0-9][0-9][0-9]$" $out || bad "vision eval prints no 'test_acc 0.xxxx' line"
expect_rc 0 "vision predict --png" "$attn" vision predict --data "$vd" --out "$tmp/vo" --png "$tmp/vp.png" 3
[ -s "$tmp/vp.png" ] || bad "vision predict --png wrote no picture"
expect_rc 0 "vision predict --html" "$attn" vision predict --data "$vd" --out "$tmp/vo" --html "$tmp/vp.html" 3
grep -q '"group":"self-attention","layer":1,"head":2' "$tmp/vp.html" && grep -q '"group":"rollout"' "$tmp/vp.html" &&
  grep -q '"image":{"rows":28,"cols":28,"grid_rows":4,"grid_cols":4,"first":1,' "$tmp/vp.html" ||
  bad "vision predict --html: no rollout, no block 1 head 2 or no 28x28 image of 4x4 patches"
expect_rc 1 "vision predict --html (unwritable)" "$attn" vision predict --data "$vd" --out "$tmp/vo" --html "$tmp/vp.png/x.html" 3
grep -q -- "--html" $out || bad "vision predict --html (unwritable) does not name the flag"
grep -q "predicted" $out && bad "vision predict --html (unwritable) did the work before failing"
expect_rc 2 "vision predict 20 (out of range)" "$attn" vision predict --data "$vd" --out "$tmp/vo" 20
expect_rc 2 "vision predict abc" "$attn" vision predict --data "$vd" --out "$tmp/vo" abc
expect_rc 2 "vision predict (no index)" "$attn" vision predict --data "$vd" --out "$tmp/vo"
expect_rc 1 "vision eval --out nowhere" "$attn" vision eval --data "$vd" --out "$tmp/nowhere"
grep -q "attn vision train" $out || bad "vision eval --out nowhere does not say how to train a model"

# caption: the same fixture (random items, all class 0), strips of 3.
cq="--data $vd --out $tmp/co --batch 10 --threads 1 --strips 20 --val 10 --dim 8 --heads 2 --ffn 8 --dec-blocks 1"
expect_rc 2 "caption (no subcommand)" "$attn" caption
expect_rc 2 "caption frobnicate" "$attn" caption frobnicate
expect_rc 2 "caption train --bogus" "$attn" caption train --bogus
grep -q "usage: attn caption train" $out || bad "caption train --bogus prints no usage"
expect_rc 2 "caption train --patch 5" "$attn" caption train $cq --patch 5
expect_rc 2 "caption train --heads 3" "$attn" caption train $cq --heads 3
expect_rc 2 "caption train --lr 0" "$attn" caption train $cq --lr 0
expect_rc 2 "caption train --dec-blocks 0" "$attn" caption train $cq --dec-blocks 0
expect_rc 2 "caption eval --strips 0" "$attn" caption eval --data "$vd" --out "$tmp/co" --strips 0
expect_rc 1 "caption train --data nowhere" "$attn" caption train --data "$tmp/nowhere" --out "$tmp/co0"
expect_rc 0 "caption train (fixture)" "$attn" caption train $cq --epochs 1
grep -q "exact_match: " $out || bad "caption train prints no exact_match"
[ -f "$tmp/co/caption.safetensors" ] && [ -f "$tmp/co/caption_history.csv" ] || bad "caption train wrote no checkpoint or history"
expect_rc 0 "caption train --resume" "$attn" caption train --data "$vd" --out "$tmp/co" --threads 1 --resume --epochs 2
grep -q "resuming .* after epoch 1" $out || bad "caption train --resume does not say where it resumes"
expect_rc 0 "caption eval" "$attn" caption eval --data "$vd" --out "$tmp/co" --strips 30
grep -q "^exact_match [01]\.[0-9][0-9][0-9][0-9] attention_on_item [01]\.[0-9][0-9][0-9]$" $out || bad "caption eval prints no 'exact_match 0.xxxx attention_on_item 0.xxx' line"
expect_rc 0 "caption predict --png" "$attn" caption predict --data "$vd" --out "$tmp/co" --png "$tmp/cp.png" 3
[ -s "$tmp/cp.png" ] || bad "caption predict --png wrote no picture"
expect_rc 2 "caption predict abc" "$attn" caption predict --data "$vd" --out "$tmp/co" abc
expect_rc 2 "caption predict (no index)" "$attn" caption predict --data "$vd" --out "$tmp/co"
expect_rc 1 "caption eval --out nowhere" "$attn" caption eval --data "$vd" --out "$tmp/nowhere"
grep -q "attn caption train" $out || bad "caption eval --out nowhere does not say how to train a model"

# detect: the same fixture on 56x56 canvases of 1-3 items.
dq="--data $vd --out $tmp/do --batch 8 --threads 1 --canvases 16 --val 8 --dim 8 --heads 2 --ffn 8 --queries 4 --enc-blocks 1 --dec-blocks 1"
expect_rc 2 "detect (no subcommand)" "$attn" detect
expect_rc 2 "detect frobnicate" "$attn" detect frobnicate
expect_rc 2 "detect train --bogus" "$attn" detect train --bogus
grep -q "usage: attn detect train" $out || bad "detect train --bogus prints no usage"
expect_rc 2 "detect train --patch 5" "$attn" detect train $dq --patch 5
expect_rc 2 "detect train --heads 3" "$attn" detect train $dq --heads 3
expect_rc 2 "detect train --queries 2" "$attn" detect train $dq --queries 2
expect_rc 2 "detect train --lr 0" "$attn" detect train $dq --lr 0
expect_rc 2 "detect train --max-steps -1" "$attn" detect train $dq --max-steps -1
expect_rc 2 "detect eval --canvases 0" "$attn" detect eval --data "$vd" --out "$tmp/do" --canvases 0
expect_rc 2 "detect eval --threshold 2" "$attn" detect eval --data "$vd" --out "$tmp/do" --threshold 2
expect_rc 1 "detect train --data nowhere" "$attn" detect train --data "$tmp/nowhere" --out "$tmp/do0"
grep -q "dataset-fashion-mnist" $out || bad "detect train --data nowhere does not say what to install"
expect_rc 1 "detect train --out (a file)" "$attn" detect train $dq --out "$vd/train-images-idx3-ubyte.gz"
expect_rc 0 "detect train (fixture)" "$attn" detect train $dq --epochs 2 --max-steps 3 --plot "$tmp/det_curves.png"
[ -s "$tmp/det_curves.png" ] || bad "detect train --plot drew no curves"
grep -q "f1: .* mean_iou: " $out || bad "detect train prints no f1 and mean_iou"
[ -f "$tmp/do/detr.safetensors" ] && [ -f "$tmp/do/detr_history.csv" ] || bad "detect train wrote no checkpoint or history"
expect_rc 0 "detect train --resume" "$attn" detect train --data "$vd" --out "$tmp/do" --threads 1 --resume --max-steps 4
grep -q "resuming .* at step 3" $out || bad "detect train --resume does not say where it resumes"
expect_rc 1 "detect train --resume (done)" "$attn" detect train --data "$vd" --out "$tmp/do" --threads 1 --resume
# overlapping patches: refused with the usage when bad; kept by --resume, a different one refused; eval reads it
expect_rc 2 "detect train --patch-kernel 8" "$attn" detect train $dq --out "$tmp/dk0" --patch-kernel 8
grep -q "usage: attn detect train" $out || bad "detect train --patch-kernel 8 prints no usage"
expect_rc 0 "detect train --patch-kernel 11" "$attn" detect train $dq --out "$tmp/dk1" --patch-kernel 11 --max-steps 2
grep -q "patch 7 (kernel 11, overlapping" $out || bad "detect train --patch-kernel 11: the banner does not say the kernel"
expect_rc 2 "detect train --resume --patch-kernel 13" "$attn" detect train --data "$vd" --out "$tmp/dk1" --threads 1 --resume --max-steps 3 --patch-kernel 13
expect_rc 0 "detect train --resume (kernel 11)" "$attn" detect train --data "$vd" --out "$tmp/dk1" --threads 1 --resume --max-steps 3
grep -q "kernel 11" $out || bad "detect train --resume does not keep the checkpoint's patch kernel"
expect_rc 0 "detect eval (kernel 11)" "$attn" detect eval --data "$vd" --out "$tmp/dk1" --canvases 20 --val 8
expect_rc 0 "detect eval" "$attn" detect eval --data "$vd" --out "$tmp/do" --canvases 20 --val 8
grep -q "^f1 [01]\.[0-9][0-9][0-9] mean_iou [01]\.[0-9][0-9][0-9]$" $out || bad "detect eval prints no 'f1 0.xxx mean_iou 0.xxx' line"
grep -q "class right in [0-9]* of the matched" $out || bad "detect eval does not count the matched pairs of the right class"
grep -q "rule chosen on 8 validation canvases (training items): confidence cut 0\.[0-9]*, duplicates" $out || bad "detect eval does not choose its rule on the validation canvases"
expect_rc 0 "detect eval --threshold 0 --dedup 0.5" "$attn" detect eval --data "$vd" --out "$tmp/do" --canvases 20 --threshold 0 --dedup 0.5
grep -q "rule chosen" $out && bad "detect eval --threshold 0 --dedup 0.5 still chooses a rule"
expect_rc 2 "detect eval --dedup 2" "$attn" detect eval --data "$vd" --out "$tmp/do" --dedup 2
expect_rc 0 "detect eval --on val" "$attn" detect eval --data "$vd" --out "$tmp/do" --canvases 20 --val 8 --on val
grep -q "20 validation canvases" $out || bad "detect eval --on val does not say it scored validation canvases"
expect_rc 2 "detect eval --on train" "$attn" detect eval --data "$vd" --out "$tmp/do" --on train
expect_rc 0 "detect predict --png" "$attn" detect predict --data "$vd" --out "$tmp/do" --png "$tmp/dp.png" 3
[ -s "$tmp/dp.png" ] || bad "detect predict --png wrote no picture"
expect_rc 2 "detect predict abc" "$attn" detect predict --data "$vd" --out "$tmp/do" abc
expect_rc 2 "detect predict (no index)" "$attn" detect predict --data "$vd" --out "$tmp/do"
expect_rc 1 "detect eval --out nowhere" "$attn" detect eval --data "$vd" --out "$tmp/nowhere"
grep -q "attn detect train" $out || bad "detect eval --out nowhere does not say how to train a model"

# Under an address-space limit OpenBLAS hung instead of failing: the program goes single-threaded.
if [ -z "$ATTN_SANITIZED" ]; then
  expect_rc 0 "demo under ulimit -v 350000" sh -c "ulimit -v 350000 && exec timeout 60 '$attn' demo"
fi
rm -f /tmp/attn_cli_out.$$
echo "cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
