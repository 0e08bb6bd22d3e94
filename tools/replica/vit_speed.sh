#!/bin/sh
# vit_speed.sh — the ViT's speed against its PyTorch replica: training seconds of one epoch of `attn vision
# train` and of tools/replica/vit.py (the same model, data and batch), in the same run, rounds alternating.
#
#   sh tools/replica/vit_speed.sh [--limit N] [--rounds R] [--threads T] [--data DIR] [--attn PATH]
#
# Both multiply through the same OpenBLAS (Debian's PyTorch 1.13 links it for its linear layers), whose
# kernels depend on OPENBLAS_CORETYPE: when the variable is unset, `attn` picks a core itself where
# OpenBLAS would fall back to its slow Prescott kernels, and the replica would not. So the replica runs with
# OPENBLAS_CORETYPE set to the core `attn` reports in its banner ("BLAS <core>"): the ratio compares the
# programs, not two BLAS kernels. Prints each round's training seconds (as the programs print them, to 0.1 s:
# the default 20,000 images take a few seconds) and the ratio of the best of each.
set -eu

limit=20000 rounds=2 threads=2 data=/usr/share/datasets/fashion-mnist
here=$(cd "$(dirname "$0")" && pwd)
attn="$here/../../build/attn"
usage() {
    echo "usage: sh tools/replica/vit_speed.sh [--limit N] [--rounds R] [--threads T] [--data DIR] [--attn PATH]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --limit | --rounds | --threads | --data | --attn) [ $# -ge 2 ] || usage ;;
    esac
    case "$1" in
        --limit) limit=$2 ;;
        --rounds) rounds=$2 ;;
        --threads) threads=$2 ;;
        --data) data=$2 ;;
        --attn) attn=$2 ;;
        -h | --help)
            sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) usage ;;
    esac
    shift 2
done
for n in "$limit" "$rounds" "$threads"; do
    case "$n" in '' | *[!0-9]* | 0) echo "vit_speed.sh: '$n' is not a positive whole number" >&2; usage ;; esac
done
[ -x "$attn" ] || { echo "vit_speed.sh: no attn program at $attn (run make first, or pass --attn)" >&2; exit 1; }
[ -d "$data" ] || { echo "vit_speed.sh: no Fashion-MNIST folder at $data (--data DIR)" >&2; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null ||
    { echo "vit_speed.sh: the replica needs Debian's python3-torch (/usr/bin/python3 cannot import torch)" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
best_c="" best_r="" core=""
i=1
while [ "$i" -le "$rounds" ]; do
    "$attn" vision train --data "$data" --limit "$limit" --epochs 1 --threads "$threads" --out "$out/run" \
        >"$out/c.log" 2>&1 || { cat "$out/c.log" >&2; exit 1; }
    core=$(grep -o 'BLAS [A-Za-z0-9_]*' "$out/c.log" | head -1 | cut -d' ' -f2)
    c=$(grep -o '(train [0-9.]*s' "$out/c.log" | tail -1 | tr -dc '0-9.')
    OPENBLAS_CORETYPE=$core /usr/bin/python3 "$here/vit.py" --data "$data" --limit "$limit" --epochs 1 \
        --threads "$threads" >"$out/r.log" 2>&1 || { cat "$out/r.log" >&2; exit 1; }
    r=$(grep -o '(train [0-9.]*s' "$out/r.log" | tail -1 | tr -dc '0-9.')
    echo "round $i: attn ${c}s, replica ${r}s (training seconds of $limit images, $threads threads, BLAS $core)"
    best_c=$(echo "$best_c $c" | awk '{m = $1; for (i = 2; i <= NF; i++) if ($i < m) m = $i; print m}')
    best_r=$(echo "$best_r $r" | awk '{m = $1; for (i = 2; i <= NF; i++) if ($i < m) m = $i; print m}')
    rm -rf "$out/run"
    i=$((i + 1))
done
echo "best: attn ${best_c}s, replica ${best_r}s: the replica takes $(echo "$best_r $best_c" |
    awk '{printf "%.2f", $1 / $2}')x as long"
