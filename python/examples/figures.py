"""figures.py — the Python package's figures, measured in one run on this machine:

  1. call overhead at a tiny shape (B=H=1, T=S=16, D=16): attn.sdpa (NumPy) and attn.torch's
     scaled_dot_product_attention against a ctypes call to a C function that does nothing but return
     (attn_get_num_threads), best of 1,000 each;
  2. forward + backward at B=1, H=8, T=S=2048, D=64: attn.torch against PyTorch's unfused attention
     (softmax(q kᵀ/√D) v with autograd), best of N alternating in the same run, and the peak memory of each
     measured in a fresh process (the kernel's peak RSS, reset just before one forward + backward, less the
     RSS then; it counts the gradients and the output, which both sides allocate);
  3. one training epoch of the d2l Transformer replica with the book's attention and with attn's, alternating;
  4. 100,000 calls (NumPy forward with masks + backward, PyTorch forward + backward) leak nothing: RSS
     after warm-up against RSS after the calls.

    PYTHONPATH=python /usr/bin/python3 python/examples/figures.py [--reps 5] [--calls 100000] [--data DIR]
                                                                  [--only overhead|speed|transformer|leaks]
"""
import argparse
import math
import os
import subprocess
import sys
import time

import numpy as np

import attn

FLOPS_FWD = 4 * 1 * 8 * 2048 * 2048 * 64           # 4·B·H·T·S·D; backward counted as 2.5× forward


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def best_us(f, n):
    b = math.inf
    for _ in range(n):
        t = time.perf_counter()
        f()
        b = min(b, time.perf_counter() - t)
    return b * 1e6


def overhead():
    from attn._lib import lib
    q = np.random.default_rng(0).standard_normal((1, 1, 16, 16)).astype(np.float32)
    noop = lib.attn_get_num_threads
    for _ in range(200):
        attn.sdpa(q, q, q)
    t_noop = best_us(noop, 1000)
    t_np = best_us(lambda: attn.sdpa(q, q, q), 1000)
    print("call overhead, B=H=1 T=S=16 D=16, best of 1000:")
    print(f"  ctypes no-op (attn_get_num_threads)   {t_noop:7.2f} us")
    print(f"  attn.sdpa (NumPy)                      {t_np:7.2f} us   = no-op + {t_np - t_noop:.2f} us")
    try:
        import torch
        import attn.torch as at
    except ImportError:
        return
    qt = torch.from_numpy(q)
    t_t = best_us(lambda: at.scaled_dot_product_attention(qt, qt, qt), 1000)
    print(f"  attn.torch sdpa, no grad               {t_t:7.2f} us   = no-op + {t_t - t_noop:.2f} us")


def unfused(q, k, v):
    import torch
    s = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]))
    return torch.softmax(s, -1) @ v


def big_inputs():
    import torch
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, 8, 2048, 64, generator=g).requires_grad_() for _ in range(3)]


def fwd_bwd(which, q, k, v, dout):
    import attn.torch as at
    out = at.scaled_dot_product_attention(q, k, v) if which == "attn" else unfused(q, k, v)
    out.backward(dout)
    return out


def peak_child(which):
    """Runs in a fresh process: peak RSS growth of one forward + backward."""
    import torch
    torch.set_num_threads(2)
    q, k, v = big_inputs()
    dout = torch.randn(1, 8, 2048, 64)
    small = [x[:, :, :64].detach().clone().requires_grad_() for x in (q, k, v)]
    fwd_bwd(which, *small, dout[:, :, :64])          # loads kernels, starts thread pools
    for x in (q, k, v):
        x.grad = None
    with open("/proc/self/clear_refs", "w") as f:     # resets the peak RSS (VmHWM) to the current RSS
        f.write("5")
    before = rss_mib()
    fwd_bwd(which, q, k, v, dout)
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    print(f"{max(peak - before, 0.0):.1f}")


def speed(reps):
    import torch
    torch.set_num_threads(2)
    q, k, v = big_inputs()
    dout = torch.randn(1, 8, 2048, 64)
    # validate before timing
    out_a = fwd_bwd("attn", q, k, v, dout)
    ga = [x.grad.clone() for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    out_u = fwd_bwd("torch", q, k, v, dout)
    gu = [x.grad.clone() for x in (q, k, v)]
    err = max((out_a - out_u).abs().max().item(), *[(a - b).abs().max().item() for a, b in zip(ga, gu)])
    print(f"forward + backward, B=1 H=8 T=S=2048 D=64 (fp32, {torch.get_num_threads()} torch threads, "
          f"{attn.get_num_threads()} attn threads, attn path {attn.get_isa()}); max |attn - torch| over out, "
          f"dq, dk, dv = {err:.2e}")
    best = {"attn": math.inf, "torch": math.inf}
    for _ in range(reps):
        for which in ("attn", "torch"):
            for x in (q, k, v):
                x.grad = None
            t = time.perf_counter()
            fwd_bwd(which, q, k, v, dout)
            best[which] = min(best[which], time.perf_counter() - t)
    flops = FLOPS_FWD * 3.5
    for which, label in (("attn", "attn.torch (fused)"), ("torch", "torch 1.13 unfused + autograd")):
        print(f"  {label:30s} best of {reps}: {best[which] * 1e3:8.1f} ms  {flops / best[which] / 1e9:6.1f} GFLOP/s")
    print(f"  speed-up (same run): {best['torch'] / best['attn']:.2f}x   "
          f"(FLOPs: 4·B·H·T·S·D forward, backward 2.5x forward)")
    mem = {}
    for which in ("attn", "torch"):
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--peak", which], capture_output=True,
                           text=True, env=dict(os.environ), check=True)
        mem[which] = float(r.stdout.strip().splitlines()[-1])
    print(f"  peak memory of one forward + backward (fresh process each): attn {mem['attn']:.1f} MiB, "
          f"torch {mem['torch']:.1f} MiB, ratio 1/{mem['torch'] / max(mem['attn'], 1e-9):.1f}")


def leaks(calls):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 2, 16, 16)).astype(np.float32)
    lens = np.array([16, 9], np.int32)
    mask = rng.random((16, 16)) > 0.2

    def np_call():
        out, stats = attn.sdpa(q, q, q, valid_lens=lens, mask=mask, causal=True, return_stats=True)
        attn.sdpa_backward(out, q, q, q, out, stats, valid_lens=lens, mask=mask, causal=True)

    tests = [("NumPy sdpa with masks + sdpa_backward", np_call)]
    try:
        import torch
        import attn.torch as at
        qt = torch.from_numpy(q).requires_grad_()
        bm = torch.from_numpy(mask)

        def torch_call():
            at.scaled_dot_product_attention(qt, qt, qt, attn_mask=bm).sum().backward()
        tests.append(("attn.torch forward + backward", torch_call))
    except ImportError:
        pass
    for name, f in tests:
        for _ in range(2000):
            f()
        r0 = rss_mib()
        t = time.perf_counter()
        for _ in range(calls):
            f()
        r1 = rss_mib()
        print(f"leak check, {name}: {calls} calls in {time.perf_counter() - t:.1f} s; RSS {r0:.1f} -> {r1:.1f} MiB "
              f"({r1 - r0:+.2f} MiB)")


def transformer_epochs(data, reps):
    """One training epoch of the d2l Transformer replica with the book's attention and with attn's,
    alternating, best of reps each (the same batches, model and seed for both)."""
    import importlib.util
    import torch
    here = os.path.dirname(os.path.abspath(__file__))

    def load(name, path):
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    example = load("attn_transformer_example", os.path.join(here, "transformer.py"))   # puts d2l on the path
    rep = load("replica_transformer", os.path.join(here, "..", "..", "tools", "replica", "transformer.py"))
    import d2l
    path = os.path.join(data, "fra-eng", "fra.txt")
    if not os.path.exists(path):
        print(f"d2l Transformer epoch: skipped ({path} not found; --data DIR)")
        return
    with open(path, encoding="utf-8") as f:
        text = rep.preprocess_nmt(f.read())
    source, target = rep.tokenize_nmt(text, 0, 600)
    sv, tv = rep.Vocab(source, 2, [rep.PAD, rep.BOS, rep.EOS]), rep.Vocab(target, 2, [rep.PAD, rep.BOS, rep.EOS])
    X, X_len = rep.build_array(source, sv, 10)
    Y, Y_len = rep.build_array(target, tv, 10)
    torch.set_num_threads(int(os.environ.get("FIGURES_TORCH_THREADS", "2")))
    book_forward = d2l.MultiHeadAttention.forward
    best = {"book": math.inf, "attn": math.inf}
    losses = {}
    for _ in range(reps):
        for which in ("book", "attn"):
            d2l.MultiHeadAttention.forward = book_forward if which == "book" else example.attn_mha_forward
            torch.manual_seed(1)
            net = d2l.EncoderDecoder(d2l.TransformerEncoder(len(sv), 32, 64, 4, 2, 0.1),
                                     d2l.TransformerDecoder(len(tv), 32, 64, 4, 2, 0.1))
            opt = torch.optim.Adam(net.parameters(), lr=0.005)
            net.train()
            t = time.perf_counter()
            total = 0.0
            for idx in torch.randperm(X.shape[0]).split(64):
                opt.zero_grad()
                x, xl, y, yl = X[idx], X_len[idx], Y[idx], Y_len[idx]
                dec_in = torch.cat([torch.full((y.shape[0], 1), tv[rep.BOS]), y[:, :-1]], 1)
                loss = rep.masked_ce(net.decoder(dec_in, net.encoder(x, xl), xl), y, yl).sum()
                loss.backward()
                opt.step()
                total += float(loss)
            best[which] = min(best[which], time.perf_counter() - t)
            losses[which] = total
    d2l.MultiHeadAttention.forward = book_forward
    print(f"d2l Transformer, one training epoch (601 pairs, batch 64, same seed), best of {reps}: book attention "
          f"{best['book'] * 1e3:.0f} ms, attn {best['attn'] * 1e3:.0f} ms, speed-up {best['book'] / best['attn']:.2f}x; "
          f"epoch loss sums {losses['book']:.4f} / {losses['attn']:.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--calls", type=int, default=100000)
    ap.add_argument("--peak", choices=["attn", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--only", choices=["overhead", "speed", "leaks", "transformer"])
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                                   "shared", "data"))
    a = ap.parse_args()
    if a.peak:
        return peak_child(a.peak)
    print(f"attn {attn.version()} from {attn.library_path}")
    if a.only in (None, "overhead"):
        overhead()
    if a.only in (None, "speed"):
        try:
            speed(a.reps)
        except ImportError:
            print("forward + backward: skipped (no PyTorch)")
    if a.only in (None, "transformer"):
        try:
            transformer_epochs(a.data, a.reps)
        except ImportError:
            print("d2l Transformer epoch: skipped (no PyTorch)")
    if a.only in (None, "leaks"):
        leaks(a.calls)


if __name__ == "__main__":
    main()
