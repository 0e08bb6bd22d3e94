#!/usr/bin/python3
"""torch_attention.py — attn's bf16 forward against PyTorch's unfused bf16 attention, in the same run.

Alternates, round by round, `attn bench --json` (which validates against the reference and reports the
best of --repeat) and PyTorch's softmax(q @ kᵀ · scale) @ v on bf16 tensors (best of --repeat after a
warm-up), and prints each round, the best of each side and their ratio, with the load average before
and after. FLOPs: 4·B·H·T·S·D for both (the two products; the softmax not counted), as attn bench counts.
Only those two calls are timed. Forward, no mask.

    /usr/bin/python3 tools/bench/torch_attention.py --attn build/attn --threads 2 --rounds 5

Needs PyTorch (1.13 here, /usr/bin/python3) and a built attn.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch


def torch_best(q, k, v, scale, repeat):
    """Best seconds of `repeat` runs of the unfused bf16 attention, after one warm-up run."""
    with torch.no_grad():
        torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1) @ v
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1) @ v
            best = min(best, time.perf_counter() - t0)
    return best


def torch_check(q, k, v, scale):
    """Largest |error| of head 0's bf16 result against the same in float64 on the bf16 inputs."""
    with torch.no_grad():
        got = (torch.softmax((q[:1, :1] @ k[:1, :1].transpose(-2, -1)) * scale, dim=-1) @ v[:1, :1]).double()
        qd, kd, vd = q[:1, :1].double(), k[:1, :1].double(), v[:1, :1].double()
        want = torch.softmax((qd @ kd.transpose(-2, -1)) * scale, dim=-1) @ vd
    return (got - want).abs().max().item()


def attn_run(args):
    cmd = [args.attn, "bench", "--isa", args.isa, "--dtype", "bf16", "--threads", str(args.threads),
           "--batch", str(args.batch), "--heads", str(args.heads), "--tq", str(args.tq), "--tk", str(args.tk),
           "--dim", str(args.dim), "--repeat", str(args.repeat), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if len(rows) != 1:
        sys.exit("torch_attention: expected one JSON line from: " + " ".join(cmd))
    return rows[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--attn", default="build/attn", help="the attn program (default build/attn)")
    ap.add_argument("--isa", default="auto",
                    help="attn's path (default auto: the best this CPU has, amx where there is AMX)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--tq", type=int, default=2048)
    ap.add_argument("--tk", type=int, default=2048)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per round and side (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    args = ap.parse_args()
    for name in ("threads", "batch", "heads", "tq", "tk", "dim", "repeat", "rounds"):
        if getattr(args, name) < 1:
            ap.error("--%s must be at least 1" % name)
    if not os.access(args.attn, os.X_OK):
        ap.error("%s is not an executable attn (build it first: make build)" % args.attn)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, H, T, S, D = args.batch, args.heads, args.tq, args.tk, args.dim
    q = torch.randn(B, H, T, D).bfloat16()
    k = torch.randn(B, H, S, D).bfloat16()
    v = torch.randn(B, H, S, D).bfloat16()
    scale = D ** -0.5
    flops = 4.0 * B * H * T * S * D

    err = torch_check(q, k, v, scale)
    print("PyTorch %s bf16 unfused, head 0 against float64: max |error| %.3g" % (torch.__version__, err))
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    best_attn, best_torch = 0.0, 0.0
    for r in range(args.rounds):
        row = attn_run(args)
        if not row.get("agree", False):
            sys.exit("torch_attention: attn bench did not agree with its reference: %s" % row)
        ga = row["gflops"]
        gt = flops / torch_best(q, k, v, scale, args.repeat) * 1e-9
        best_attn, best_torch = max(best_attn, ga), max(best_torch, gt)
        isa = row.get("isa", args.isa)   # the path auto chose
        print("round %d: attn %s bf16 %.1f GFLOP/s   torch bf16 unfused %.1f GFLOP/s" % (r + 1, isa, ga, gt))
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())
    print("best of %d rounds x %d runs, B=%d H=%d T=%d S=%d D=%d, %d threads: attn %.1f GFLOP/s, torch %.1f "
          "GFLOP/s, ratio %.1fx" % (args.rounds, args.repeat, B, H, T, S, D, args.threads, best_attn, best_torch,
                                    best_attn / best_torch))


if __name__ == "__main__":
    main()
