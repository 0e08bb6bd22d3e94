#!/bin/sh
# bf16_figures.sh — the bf16 attention figures in one table, measured in one run on this machine:
#   forward D = 64, D = 128, causal D = 64 and backward D = 64 (B 1, H 8, T = S = 2048), bf16 tensors, with
#     the fp32 path's figure for the same shape beside each (rounds alternating bf16 and fp32; best kept);
#   decoding (T 1, S 4096, H 32, Hkv 8, D 128): bf16 K/V time over fp32 K/V time, in cache and out of cache
#     (tools/bench/decode_ratio.c: both types call by call in one process);
#   the forward against PyTorch 1.13's unfused bf16 attention (tools/bench/torch_attention.py), when
#     /usr/bin/python3 has torch.
# Each line gives the target the figure is held to. The GFLOP/s targets were set for a CPU with AMX tiles;
# on a CPU with AVX512-BF16 only (a Zen 4) the path's roof, its vdpbf16ps loop, is below some of them, so
# the roof measured in the same run is printed too.
#
#   sh tools/bench/bf16_figures.sh [--rounds R] [--repeat N] [--attn PATH] [--threads T]
set -eu

rounds=3 repeat=5 threads=2
here=$(cd "$(dirname "$0")" && pwd)
attn="$here/../../build/attn"
usage() {
    echo "usage: sh tools/bench/bf16_figures.sh [--rounds R] [--repeat N] [--attn PATH] [--threads T]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help)
            sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        --rounds | --repeat | --attn | --threads) [ $# -ge 2 ] || usage ;;
        *) usage ;;
    esac
    case "$1" in
        --rounds) rounds=$2 ;;
        --repeat) repeat=$2 ;;
        --attn) attn=$2 ;;
        --threads) threads=$2 ;;
    esac
    shift 2
done
for n in "$rounds" "$repeat" "$threads"; do
    case "$n" in '' | *[!0-9]* | 0) echo "bf16_figures.sh: '$n' is not a positive whole number" >&2; usage ;; esac
done
[ -x "$attn" ] || { echo "bf16_figures.sh: no attn program at $attn (run make first, or pass --attn)" >&2; exit 1; }
ratio_prog="$(dirname "$attn")/decode_ratio"
[ -x "$ratio_prog" ] || { echo "bf16_figures.sh: no decode_ratio beside $attn (it is built with the library)" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# the best of the rounds of one JSON field for one pass: best FILE PASS FIELD
best() {
    grep "\"pass\":\"$2\"" "$1" | sed -n "s/.*\"$3\":\([0-9.eE+-]*\).*/\1/p" |
        awk 'BEGIN { m = 0 } { if ($1 > m) m = $1 } END { printf "%.1f", m }'
}
field() { grep "\"pass\":\"$2\"" "$1" | head -1 | sed -n "s/.*\"$3\":\"\{0,1\}\([^\",}]*\).*/\1/p"; }

echo "bf16 attention figures, $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 |
    sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "best of $rounds rounds x $repeat runs, $threads threads; bf16 and fp32 alternating"
echo
printf '%-34s %10s %10s %9s %8s  %s\n' "figure" "bf16" "fp32" "bf16/fp32" "roof" "target"
run_case() {   # name dim extra-flags target-gflops pass
    name=$1 dim=$2 flags=$3 target=$4 pass=$5
    : >"$out/b" && : >"$out/f"
    i=1
    while [ "$i" -le "$rounds" ]; do
        # shellcheck disable=SC2086
        "$attn" bench --dtype bf16 --heads 8 --tq 2048 --tk 2048 --dim "$dim" $flags --repeat "$repeat" \
            --threads "$threads" --json 2>/dev/null >>"$out/b"
        # shellcheck disable=SC2086
        "$attn" bench --heads 8 --tq 2048 --tk 2048 --dim "$dim" $flags --repeat "$repeat" --threads "$threads" \
            --json 2>/dev/null >>"$out/f"
        i=$((i + 1))
    done
    b=$(best "$out/b" "$pass" gflops) f=$(best "$out/f" "$pass" gflops)
    roof=$(best "$out/b" "$pass" peak_gflops)
    isa=$(field "$out/b" "$pass" isa)
    met=$(echo "$b $target" | awk '{ print ($1 >= $2) ? "met" : "not met" }')
    printf '%-34s %10s %10s %9s %8s  >= %s GFLOP/s: %s (%s)\n' "$name" "$b" "$f" \
        "$(echo "$b $f" | awk '{ printf "%.2f", $1 / $2 }')" "$roof" "$target" "$met" "$isa"
}
run_case "forward D 64 (GFLOP/s)" 64 "" 1000 forward
run_case "forward D 128" 128 "" 1500 forward
run_case "forward causal D 64" 64 "--causal" 800 forward
run_case "backward D 64" 64 "--backward" 600 backward

case "$(grep -o -w -m1 'amx_bf16' /proc/cpuinfo || true)" in
    amx_bf16) isa=amx ;;
    *) if grep -q -w avx512_bf16 /proc/cpuinfo; then isa=avx512bf16; else isa=avx512; fi ;;
esac
echo
for copies in 1 48; do
    where=$([ "$copies" = 1 ] && echo "in cache" || echo "out of cache ($copies copies)")
    line=$("$ratio_prog" $((rounds * 20)) "$copies" "$threads" "$isa" 2>&1 | tail -1)
    r=$(echo "$line" | sed -n 's/.*bf16\/fp32 \([0-9.]*\).*/\1/p')
    met=$(echo "${r:-9} 0.55" | awk '{ print ($1 <= $2) ? "met" : "not met" }')
    echo "decoding $where: ${r:-?} of fp32's time (<= 0.55: $met) — $line"
done

echo
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
    line=$(/usr/bin/python3 "$here/torch_attention.py" --attn "$attn" --threads "$threads" --rounds "$rounds" \
        --repeat "$repeat" 2>&1 | tail -1)
    r=$(echo "$line" | sed -n 's/.*ratio \([0-9.]*\)x.*/\1/p')
    met=$(echo "${r:-0} 10" | awk '{ print ($1 >= $2) ? "met" : "not met" }')
    echo "against PyTorch bf16 unfused, forward: ${r:-?}x (>= 10x: $met) — $line"
else
    echo "against PyTorch: skipped (/usr/bin/python3 cannot import torch: Debian's python3-torch)"
fi
