"""gen_bf16.py — the bf16 accuracy table's golden file, tests/golden/bf16_accuracy.safetensors.

For randomized shapes and masks (odd sizes, decoding T <= 4, grouped-query heads, valid lengths, causal,
boolean masks, bias, fully masked rows), inputs rounded to bf16 (q, k, v, dout; stored as float32, which
holds bf16 values exactly), then:
  - the reference: float64 autograd on those inputs (out, dq, dk, dv, stored rounded to float32: far below
    bf16's error);
  - PyTorch's own bf16 attention, unfused (scores, softmax, products and autograd all in bf16, the way a
    PyTorch 1.13 user computes it), and its error against the reference per output and gradient, written
    beside the case ("torch_rms": ‖x - ref‖₂ / ‖ref‖₂, "torch_max": max|x - ref| / max|ref|, each for out,
    dq, dk, dv).
tests/test_bf16.c reads the file and requires attn's bf16 paths to be within 2x PyTorch's error, per
output and gradient. Run with /usr/bin/python3 (torch 1.13): `make golden`.

The same for additive (Bahdanau) attention with bf16 compute, tests/golden/bf16_additive.safetensors:
q, k, v, W_q, W_k, w_v and dout rounded to bf16; the float64 reference (out and the six gradients); and
PyTorch's additive attention computed wholly in bf16, with its errors.
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_mechanisms import additive, key_mask, masked_softmax, write_checked  # noqa: E402

GOLDEN = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden"))
OUT = os.path.join(GOLDEN, "bf16_accuracy.safetensors")
OUT_ADDITIVE = os.path.join(GOLDEN, "bf16_additive.safetensors")
BF16, F64 = torch.bfloat16, torch.float64


def sdpa(q, k, v, scale, keep, bias):
    """q (B,H,T,D), k (B,Hkv,S,D), v (B,Hkv,S,Dv) in any one dtype; bias (B,H,T,S) in that dtype or None."""
    G = q.shape[1] // k.shape[1]
    kk, vv = k.repeat_interleave(G, dim=1), v.repeat_interleave(G, dim=1)
    scores = (q @ kk.transpose(-1, -2)) * scale
    if bias is not None:
        scores = scores + torch.where(torch.isneginf(bias), torch.zeros_like(bias), bias)
    w, _ = masked_softmax(scores, keep)
    return w @ vv


def grads(q, k, v, dout, scale, keep, bias, dtype):
    xs = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
    out = sdpa(*xs, scale, keep, None if bias is None else bias.to(dtype))
    (out * dout.to(dtype)).sum().backward()
    return [out.detach()] + [t.grad for t in xs]


def rms_err(x, ref):
    x, ref = x.double(), ref.double()
    n = ref.norm().item()
    return (x - ref).norm().item() / (n if n > 0 else 1.0)


def max_err(x, ref):
    x, ref = x.double(), ref.double()
    m = ref.abs().max().item() if ref.numel() else 0.0
    return (x - ref).abs().max().item() / (m if m > 0 else 1.0) if ref.numel() else 0.0


def put_case(tensors, meta, name, named, vl, allow, bias, rms, mx, dims, vl_kind, causal):
    """One case's tensors (inputs and references as float32, then its masks and PyTorch's errors) and its
    metadata (dims, valid_lens_kind, causal)."""
    def put(key, t):
        tensors[f"{name}/{key}"] = t

    for key, t in named:
        put(key, t.float())
    if vl is not None:
        put("valid_lens", vl)
    if allow is not None:
        put("allow", allow.to(torch.uint8))
    if bias is not None:
        put("bias", bias.float())
    put("torch_rms", torch.tensor(rms, dtype=F64))
    put("torch_max", torch.tensor(mx, dtype=F64))
    meta[f"{name}/dims"] = dims
    meta[f"{name}/valid_lens_kind"] = vl_kind
    meta[f"{name}/causal"] = str(int(causal))


def save_checked(path, tensors, meta, names):
    """The case list into the metadata, then gen_mechanisms' checked write."""
    meta["cases"] = ",".join(names)
    write_checked(path, tensors, meta, len(names))


def main():
    gen = torch.Generator().manual_seed(0xbf16)
    rnd = np.random.default_rng(20261130)
    tensors, meta, names = {}, {"generator": "tools/golden/gen_bf16.py", "torch": torch.__version__}, []
    print(f"{'case':8s} {'shape':44s} {'masks':28s} torch bf16 error (rms; max) out dq dk dv")
    for i in range(12):
        name = f"c{i:02d}"
        Hkv = int(rnd.integers(1, 3))
        H = Hkv * int(rnd.integers(1, 3))
        B = int(rnd.integers(1, 3)) if i % 3 == 0 else 1   # batches of two only when decoding: a small file
        T = int(rnd.integers(1, 5)) if i % 3 == 0 else int(rnd.integers(16, 41))   # decoding, or blocks
        S = int(rnd.integers(1, 65)) if i % 5 else 1 + int(rnd.integers(0, 3))
        D = int(rnd.integers(8, 49))
        Dv = D if rnd.integers(0, 2) else int(rnd.integers(8, 49))
        causal = bool(rnd.integers(0, 2))
        vl_kind = ["none", "per_batch", "per_query"][int(rnd.integers(0, 3))]
        use_allow, use_bias = bool(rnd.integers(0, 3) == 0), bool(rnd.integers(0, 3) == 0)
        qs = float(rnd.integers(1, 4))

        def rounded(*shape, std=1.0):
            return (torch.randn(*shape, generator=gen) * std).to(BF16).double()

        q, k, v = rounded(B, H, T, D, std=qs), rounded(B, Hkv, S, D), rounded(B, Hkv, S, Dv)
        dout = rounded(B, H, T, Dv)
        vl = None
        if vl_kind == "per_batch":
            vl = torch.tensor(rnd.integers(0, S + 3, size=B), dtype=torch.int32)
        elif vl_kind == "per_query":
            vl = torch.tensor(rnd.integers(0, S + 3, size=(B, T)), dtype=torch.int32)
        allow = torch.tensor(rnd.random((B, H, T, S)) < 0.7) if use_allow else None
        bias = None
        if use_bias:
            bias = torch.tensor(rnd.standard_normal((B, H, T, S)), dtype=torch.float32).double()
            bias[torch.tensor(rnd.random((B, H, T, S)) < 0.1)] = -math.inf
        scale = float(np.float32(1.0 / math.sqrt(D)))
        keep = key_mask(B, H, T, S, vl, vl_kind, causal, allow, bias)

        ref = grads(q, k, v, dout, scale, keep, bias, F64)
        tb = grads(q, k, v, dout, scale, keep, bias, BF16)
        rms = [rms_err(x, r) for x, r in zip(tb, ref)]
        mx = [max_err(x, r) for x, r in zip(tb, ref)]

        put_case(tensors, meta, name, [("q", q), ("k", k), ("v", v), ("dout", dout)] +
                 list(zip(("out", "dq", "dk", "dv"), ref)), vl, allow, bias, rms, mx,
                 f"{B},{H},{Hkv},{T},{S},{D},{Dv}", vl_kind, causal)
        names.append(name)
        shape = f"B={B} H={H} Hkv={Hkv} T={T} S={S} D={D} Dv={Dv}"
        masks = f"{vl_kind[:9]}{' causal' if causal else ''}{' allow' if use_allow else ''}{' bias' if use_bias else ''}"
        print(f"{name:8s} {shape:44s} {masks:28s} " + " ".join(f"{a:.1e}" for a in rms) + " ; " +
              " ".join(f"{a:.1e}" for a in mx))
    save_checked(OUT, tensors, meta, names)


def additive_grads(x, dout, keep, bias, dtype):
    """out and the gradients of q, k, v, wq, wk, wv, every operation in dtype."""
    xs = [t.detach().to(dtype).requires_grad_() for t in x]
    out, _, _ = additive(*xs, keep, None if bias is None else bias.to(dtype))
    (out * dout.to(dtype)).sum().backward()
    return [out.detach()] + [t.grad for t in xs]


def additive_main():
    gen = torch.Generator().manual_seed(0xadd16)
    rnd = np.random.default_rng(20261201)
    tensors, meta, names = {}, {"generator": "tools/golden/gen_bf16.py", "torch": torch.__version__}, []
    print(f"{'case':8s} {'shape':44s} {'masks':24s} torch bf16 error (rms) out dq dk dv dwq dwk dwv")
    for i in range(10):
        name = f"a{i:02d}"
        B = int(rnd.integers(1, 4))
        T = 1 if i % 2 == 0 else int(rnd.integers(2, 9))          # decoder steps, and whole calls
        S = int(rnd.integers(1, 25))
        Dq, Dk = int(rnd.integers(3, 41)), int(rnd.integers(3, 41))
        Dv = Dk if rnd.integers(0, 2) else int(rnd.integers(3, 41))
        Dh = int(rnd.integers(4, 49))
        causal = bool(rnd.integers(0, 4) == 0)
        vl_kind = ["none", "per_batch", "per_query"][int(rnd.integers(0, 3))]
        use_allow, use_bias = bool(rnd.integers(0, 3) == 0), bool(rnd.integers(0, 3) == 0)

        def rounded(*shape, std=1.0):
            return (torch.randn(*shape, generator=gen) * std).to(BF16).double()

        q, k, v = rounded(B, T, Dq), rounded(B, S, Dk), rounded(B, S, Dv)
        wq, wk = rounded(Dh, Dq, std=1.0 / math.sqrt(Dq)), rounded(Dh, Dk, std=1.0 / math.sqrt(Dk))
        wv, dout = rounded(Dh), rounded(B, T, Dv)
        vl = None
        if vl_kind == "per_batch":
            vl = torch.tensor(rnd.integers(0, S + 3, size=B), dtype=torch.int32)
        elif vl_kind == "per_query":
            vl = torch.tensor(rnd.integers(0, S + 3, size=(B, T)), dtype=torch.int32)
        allow = torch.tensor(rnd.random((B, 1, T, S)) < 0.7) if use_allow else None
        bias = None
        if use_bias:
            bias = torch.tensor(rnd.standard_normal((B, 1, T, S)), dtype=torch.float32).double()
            bias[torch.tensor(rnd.random((B, 1, T, S)) < 0.1)] = -math.inf
        keep = key_mask(B, 1, T, S, vl, vl_kind, causal, allow, bias)
        x = (q, k, v, wq, wk, wv)
        ref = additive_grads(x, dout, keep, bias, F64)
        tb = additive_grads(x, dout, keep, bias, BF16)
        rms = [rms_err(a, r) for a, r in zip(tb, ref)]
        mx = [max_err(a, r) for a, r in zip(tb, ref)]

        put_case(tensors, meta, name, list(zip(("q", "k", "v", "wq", "wk", "wv", "dout"), x + (dout,))) +
                 list(zip(("out", "dq", "dk", "dv", "dwq", "dwk", "dwv"), ref)), vl, allow, bias, rms, mx,
                 f"{B},{T},{S},{Dq},{Dk},{Dv},{Dh}", vl_kind, causal)
        names.append(name)
        shape = f"B={B} T={T} S={S} Dq={Dq} Dk={Dk} Dv={Dv} Dh={Dh}"
        masks = f"{vl_kind[:9]}{' causal' if causal else ''}{' allow' if use_allow else ''}{' bias' if use_bias else ''}"
        print(f"{name:8s} {shape:44s} {masks:24s} " + " ".join(f"{a:.1e}" for a in rms))
    save_checked(OUT_ADDITIVE, tensors, meta, names)


if __name__ == "__main__":
    main()
    additive_main()
