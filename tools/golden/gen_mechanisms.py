"""gen_mechanisms.py — PyTorch golden files for the attention mechanisms (tests/test_golden.c reads them).

Rerun from the repository root (needs PyTorch; the tests themselves do not):

    /usr/bin/python3 tools/golden/gen_mechanisms.py            # writes tests/golden/mech_*.safetensors

Every case is computed in float64 with autograd, on small random inputs drawn with a fixed seed per case.
Inputs are drawn in float32 and widened, so the float32 values the C test feeds the library are exactly the
values PyTorch used. Stored per case, under "<case>/<name>" (all F64 except the masks):
    inputs      q k v (and wq wk wv for additive attention), scale (0-d)
    masks       valid_lens (I32, (B) or (B,T); metadata "<case>/valid_lens_kind" = none|per_batch|per_query),
                causal (metadata "<case>/causal" = 0|1), allow (U8, (B|1, H|1, T, S), nonzero = may attend),
                bias (F64, (B|1, H|1, T, S), -inf excludes); a size-1 batch/head axis means "broadcast"
    outputs     out, weights (after the mask and softmax), lse (log-sum-exp of the masked scaled scores,
                -inf for a fully masked row)
    backward    dout (the random linear functional: loss = sum(out * dout)) and the gradient of every input
                and parameter: dq dk dv (and dwq dwk dwv)
File metadata: "cases" (comma-separated, in order), "<case>/kind" = sdpa|additive, "<case>/note".
No dropout here (PyTorch's RNG cannot be matched); dropout is tested elsewhere.

Masked softmax: a key is excluded when any mask part excludes it (a -inf bias counts as excluding); the
softmax runs over the remaining keys; a row with no key left gives zero weights, zero output and zero
gradients (computed without NaN: such rows are softmaxed over zeros, then multiplied by the 0/1 mask).
"""
import math
import os
import sys

# Byte-reproducible output: one SIMD path for torch's CPU kernels (its vectorized randn and exp give other
# bits on the scalar path than on the AVX2/AVX-512 ones, and those two agree) and one thread, set before
# torch loads.
os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden")
F64 = torch.float64


def f32(x):
    """A python float rounded to the nearest float32, as the C side will hold it."""
    return float(np.float32(x))


class Case:
    def __init__(self, name, seed):
        self.name = name
        self.gen = torch.Generator().manual_seed(seed)
        self.tensors = {}
        self.meta = {}

    def randn(self, *shape, std=1.0):
        """float32 draws, widened to float64 (exactly representable back in float32)."""
        x = torch.randn(*shape, generator=self.gen, dtype=torch.float32) * np.float32(std)
        return x.double()

    def randint(self, lo, hi, shape):
        return torch.randint(lo, hi, shape, generator=self.gen)

    def put(self, key, value):
        self.tensors[f"{self.name}/{key}"] = value


# ---------------------------------------------------------------------------------------------------------
# The mechanisms, written out in torch.

def key_mask(B, H, T, S, valid_lens=None, vl_kind="none", causal=False, allow=None, bias=None):
    """(B,H,T,S) bool: True where the key may be attended."""
    keep = torch.ones(B, H, T, S, dtype=torch.bool)
    s = torch.arange(S)
    if vl_kind == "per_batch":
        keep &= (s[None, :] < valid_lens[:, None].long())[:, None, None, :]
    elif vl_kind == "per_query":
        keep &= (s[None, None, :] < valid_lens[:, :, None].long())[:, None, :, :]
    if causal:
        t = torch.arange(T)
        keep &= (s[None, :] <= t[:, None] + (S - T))[None, None, :, :]
    if allow is not None:
        keep &= allow.bool().expand(B, H, T, S)
    if bias is not None:
        keep &= ~torch.isneginf(bias).expand(B, H, T, S)
    return keep


def masked_softmax(scores, keep):
    """weights (zero rows where nothing is kept) and lse (-inf there)."""
    masked = scores.masked_fill(~keep, -math.inf)
    with torch.no_grad():
        lse = torch.logsumexp(masked, dim=-1)
    row_any = keep.any(dim=-1, keepdim=True)
    safe = masked.masked_fill(~row_any, 0.0)          # fully masked rows: softmax over zeros...
    w = torch.softmax(safe, dim=-1) * keep            # ...then multiplied by 0: no NaN, zero gradient
    return w, lse


def sdpa(q, k, v, scale, keep, bias=None):
    """q (B,H,T,D), k (B,Hkv,S,D), v (B,Hkv,S,Dv); query head h reads key/value head h // (H/Hkv)."""
    H, Hkv = q.shape[1], k.shape[1]
    kk = k.repeat_interleave(H // Hkv, dim=1)
    vv = v.repeat_interleave(H // Hkv, dim=1)
    scores = scale * (q @ kk.transpose(-1, -2))
    if bias is not None:
        scores = scores + torch.where(torch.isneginf(bias), torch.zeros_like(bias), bias)
    w, lse = masked_softmax(scores, keep)
    return w @ vv, w, lse


def additive(q, k, v, wq, wk, wv, keep, bias=None):
    """q (B,T,Dq), k (B,S,Dk), v (B,S,Dv), wq (Dh,Dq), wk (Dh,Dk), wv (Dh); scores (B,T,S); keep (B,1,T,S);
    bias (B|1,1,T,S) added to the scores."""
    qh = q @ wq.T                                     # (B,T,Dh)
    kh = k @ wk.T                                     # (B,S,Dh)
    feat = torch.tanh(qh[:, :, None, :] + kh[:, None, :, :])   # (B,T,S,Dh)
    scores = feat @ wv                                # (B,T,S)
    if bias is not None:
        scores = scores + torch.where(torch.isneginf(bias), torch.zeros_like(bias), bias)[:, 0]
    w, lse = masked_softmax(scores, keep[:, 0])
    return w @ v, w, lse


def check_finite(case):
    for key, t in case.tensors.items():
        if t.dtype in (torch.float64, torch.float32):
            bad = torch.isnan(t) | torch.isposinf(t)
            if key.endswith("/lse") or key.endswith("/bias"):
                pass                                  # -inf allowed there
            else:
                bad |= torch.isneginf(t)
            assert not bad.any(), f"{key} has NaN/inf"


# ---------------------------------------------------------------------------------------------------------
# Case builders.

def put_sdpa(c, q, k, v, scale, vl, allow, bias, out, w, lse, dout):
    """Stores a scaled dot-product case under c: inputs, masks, outputs, dout and the gradients (backward
    already run)."""
    for key, t in [("q", q), ("k", k), ("v", v)]:
        c.put(key, t.detach())
    c.put("scale", torch.tensor(scale, dtype=F64))
    if vl is not None:
        c.put("valid_lens", vl)
    if allow is not None:
        c.put("allow", allow.to(torch.uint8))
    if bias is not None:
        c.put("bias", bias)
    c.put("out", out.detach())
    c.put("weights", w.detach())
    c.put("lse", lse)
    c.put("dout", dout)
    c.put("dq", q.grad)
    c.put("dk", k.grad)
    c.put("dv", v.grad)


def sdpa_case(name, seed, B, H, T, S, D, Dv, Hkv=None, scale=None, vl_kind="none", valid_lens=None,
              causal=False, allow=None, bias=None, note=""):
    Hkv = Hkv or H
    c = Case(name, seed)
    q = c.randn(B, H, T, D).requires_grad_()
    k = c.randn(B, Hkv, S, D).requires_grad_()
    v = c.randn(B, Hkv, S, Dv).requires_grad_()
    scale = f32(1.0 / math.sqrt(D)) if scale is None else f32(scale)
    vl = None if valid_lens is None else torch.tensor(valid_lens, dtype=torch.int32)
    if callable(allow):
        allow = allow(c)
    if callable(bias):
        bias = bias(c)
    keep = key_mask(B, H, T, S, vl, vl_kind, causal, allow, bias)
    out, w, lse = sdpa(q, k, v, scale, keep, bias)
    dout = c.randn(*out.shape)
    (out * dout).sum().backward()

    c.meta = {"kind": "sdpa", "valid_lens_kind": vl_kind, "causal": str(int(causal)), "note": note}
    put_sdpa(c, q, k, v, scale, vl, allow, bias, out, w, lse, dout)
    check_finite(c)
    rows = (~keep.any(-1)).sum().item()
    print(f"  {name:16s} B={B} H={H} Hkv={Hkv} T={T} S={S} D={D} Dv={Dv} scale={scale:.6g} "
          f"fully-masked rows={rows}")
    return c


def additive_case(name, seed, B, T, S, Dq, Dk, Dv, Dh, vl_kind="none", valid_lens=None, causal=False,
                  allow=None, bias=None, note=""):
    c = Case(name, seed)
    q = c.randn(B, T, Dq).requires_grad_()
    k = c.randn(B, S, Dk).requires_grad_()
    v = c.randn(B, S, Dv).requires_grad_()
    wq = c.randn(Dh, Dq, std=1.0 / math.sqrt(Dq)).requires_grad_()
    wk = c.randn(Dh, Dk, std=1.0 / math.sqrt(Dk)).requires_grad_()
    wv = c.randn(Dh, std=1.0).requires_grad_()
    vl = None if valid_lens is None else torch.tensor(valid_lens, dtype=torch.int32)
    if callable(allow):
        allow = allow(c)
    if callable(bias):
        bias = bias(c)
    keep = key_mask(B, 1, T, S, vl, vl_kind, causal, allow, bias)
    out, w, lse = additive(q, k, v, wq, wk, wv, keep, bias)
    dout = c.randn(*out.shape)
    (out * dout).sum().backward()

    c.meta = {"kind": "additive", "valid_lens_kind": vl_kind, "causal": str(int(causal)), "note": note}
    for key, t in [("q", q), ("k", k), ("v", v), ("wq", wq), ("wk", wk), ("wv", wv)]:
        c.put(key, t.detach())
    if vl is not None:
        c.put("valid_lens", vl)
    if allow is not None:
        c.put("allow", allow.to(torch.uint8))
    if bias is not None:
        c.put("bias", bias)
    c.put("out", out.detach())
    c.put("weights", w.detach())
    c.put("lse", lse)
    c.put("dout", dout)
    for key, t in [("dq", q), ("dk", k), ("dv", v), ("dwq", wq), ("dwk", wk), ("dwv", wv)]:
        c.put(key, t.grad)
    check_finite(c)
    rows = (~keep.any(-1)).sum().item()
    print(f"  {name:16s} B={B} T={T} S={S} Dq={Dq} Dk={Dk} Dv={Dv} Dh={Dh} fully-masked rows={rows}")
    return c


def random_allow(shape, p_keep=0.6, dead_row=None):
    """A 0/1 mask; dead_row = (b, h, t) gets no key at all."""
    def make(c):
        a = (torch.rand(*shape, generator=c.gen) < p_keep)
        if dead_row is not None:
            a[dead_row] = False
        return a
    return make


def random_bias(shape, p_neginf=0.2, dead_row=None):
    """float32-valued bias with some -inf entries; dead_row = (b, h, t) is all -inf."""
    def make(c):
        b = c.randn(*shape, std=0.5)
        b[torch.rand(*shape, generator=c.gen) < p_neginf] = -math.inf
        if dead_row is not None:
            b[dead_row] = -math.inf
        return b
    return make


def save(fname, cases, generator="tools/golden/gen_mechanisms.py"):
    tensors, meta = {}, {"cases": ",".join(c.name for c in cases),
                         "generator": generator, "torch": torch.__version__}
    for c in cases:
        tensors.update(c.tensors)
        for k, v in c.meta.items():
            meta[f"{c.name}/{k}"] = v
    write_checked(os.path.normpath(os.path.join(OUT_DIR, fname)), tensors, meta, len(cases))


def write_checked(path, tensors, meta, n_cases):
    """Writes the file, then reads it back: what was written is what was computed."""
    st.save(path, tensors, meta)
    back, bmeta = st.load(path)
    assert bmeta == meta
    for k, v in tensors.items():
        assert np.array_equal(back[k], v.numpy()), k
    print(f"wrote {path}: {n_cases} cases, {os.path.getsize(path)} bytes")


def main():
    torch.set_grad_enabled(True)
    print("scaled dot-product attention: shapes")
    shapes = [
        sdpa_case("plain", 101, B=2, H=2, T=4, S=4, D=8, Dv=8, note="self-attention, scale 1/sqrt(D)"),
        sdpa_case("dot_scale1", 102, B=3, H=1, T=5, S=5, D=6, Dv=6, scale=1.0,
                  note="plain dot-product attention (scale 1), the (B,T,D) style"),
        sdpa_case("scale_eighth", 103, B=1, H=1, T=4, S=4, D=16, Dv=16, scale=0.125,
                  note="scale 1/8 whatever D (the IMDB layer)"),
        sdpa_case("cross", 104, B=2, H=2, T=3, S=7, D=4, Dv=4, note="cross-attention T != S"),
        sdpa_case("dv_ne_d", 105, B=2, H=1, T=5, S=6, D=4, Dv=6, note="Dv != D"),
        sdpa_case("heads3", 106, B=2, H=3, T=4, S=5, D=4, Dv=4, note="three heads"),
        sdpa_case("gqa", 107, B=2, H=4, Hkv=2, T=3, S=5, D=4, Dv=3, note="grouped-query heads H=4, Hkv=2"),
        sdpa_case("t1", 108, B=2, H=2, T=1, S=6, D=4, Dv=4, note="one query"),
        sdpa_case("s1", 109, B=2, H=1, T=5, S=1, D=4, Dv=4, note="one key"),
        sdpa_case("odd", 110, B=2, H=1, T=7, S=5, D=3, Dv=5, note="odd sizes"),
    ]
    save("mech_sdpa_shapes.safetensors", shapes)

    print("scaled dot-product attention: valid lengths and causal")
    lens = [
        sdpa_case("vl_batch", 201, B=3, H=2, T=4, S=6, D=4, Dv=4, vl_kind="per_batch", valid_lens=[7, 2, 0],
                  note="valid lengths per batch row: 7 (clamped to S), 2, 0 (fully masked)"),
        sdpa_case("vl_query", 202, B=2, H=2, T=4, S=5, D=4, Dv=3, vl_kind="per_query",
                  valid_lens=[[1, 2, 3, 5], [0, 5, 4, 2]], note="valid lengths per query, one 0"),
        sdpa_case("causal_eq", 203, B=2, H=2, T=5, S=5, D=4, Dv=4, causal=True, note="causal T == S"),
        sdpa_case("causal_t_lt_s", 204, B=2, H=1, T=3, S=6, D=4, Dv=4, causal=True,
                  note="causal T < S: query t sees keys s <= t + 3"),
        sdpa_case("causal_t_gt_s", 205, B=2, H=1, T=6, S=3, D=4, Dv=4, causal=True,
                  note="causal T > S: queries 0..2 see no key (fully masked)"),
    ]
    save("mech_sdpa_lens.safetensors", lens)

    print("scaled dot-product attention: boolean mask, bias, everything together")
    masks = [
        sdpa_case("allow", 301, B=2, H=2, T=4, S=5, D=4, Dv=4,
                  allow=random_allow((2, 2, 4, 5), dead_row=(1, 0, 2)),
                  note="boolean mask (B,H,T,S), true = may attend, one fully masked row"),
        sdpa_case("allow_bcast", 302, B=2, H=2, T=4, S=5, D=4, Dv=4,
                  allow=random_allow((1, 1, 4, 5), dead_row=(0, 0, 1)),
                  note="boolean mask (1,1,T,S) broadcast over batch and heads"),
        sdpa_case("bias", 303, B=2, H=2, T=4, S=5, D=4, Dv=4,
                  bias=random_bias((1, 2, 4, 5), dead_row=(0, 1, 3)),
                  note="additive bias (1,H,T,S) with -inf entries and one all -inf row"),
        sdpa_case("combined", 304, B=3, H=4, Hkv=2, T=5, S=7, D=5, Dv=3, causal=True,
                  vl_kind="per_batch", valid_lens=[7, 4, 1],
                  allow=random_allow((3, 4, 5, 7), p_keep=0.8, dead_row=(0, 3, 4)),
                  bias=random_bias((3, 4, 5, 7), p_neginf=0.1),
                  note="valid lengths + causal (T < S) + boolean mask + bias, grouped-query heads"),
    ]
    save("mech_sdpa_masks.safetensors", masks)

    print("additive attention")
    add = [
        additive_case("add_plain", 401, B=2, T=3, S=4, Dq=5, Dk=6, Dv=3, Dh=4, note="no mask, Dq != Dk, T != S"),
        additive_case("add_vl", 402, B=3, T=4, S=5, Dq=4, Dk=6, Dv=2, Dh=8, vl_kind="per_batch",
                      valid_lens=[5, 2, 0], note="valid lengths per batch row, one 0 (fully masked)"),
        additive_case("add_vl_query", 403, B=2, T=3, S=6, Dq=3, Dk=3, Dv=4, Dh=5, vl_kind="per_query",
                      valid_lens=[[6, 0, 3], [1, 4, 2]], note="valid lengths per query, one 0"),
        additive_case("add_masks", 404, B=2, T=4, S=6, Dq=4, Dk=5, Dv=3, Dh=6, causal=True,
                      allow=random_allow((2, 1, 4, 6), p_keep=0.7, dead_row=(1, 0, 3)),
                      bias=random_bias((1, 1, 4, 6), p_neginf=0.1),
                      note="causal (T < S) + boolean mask (B,1,T,S) with a fully masked row + bias (1,1,T,S)"),
    ]
    save("mech_additive.safetensors", add)


if __name__ == "__main__":
    main()
