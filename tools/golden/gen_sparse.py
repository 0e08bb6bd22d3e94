"""gen_sparse.py — PyTorch golden file for the sparse mask parts of scaled dot-product attention
(tests/test_golden.c reads it with the mechanisms' files).

Rerun from the repository root (needs PyTorch; the tests themselves do not):

    /usr/bin/python3 tools/golden/gen_sparse.py            # writes tests/golden/mech_sdpa_sparse.safetensors

Float64 autograd on float32-representable inputs, as gen_mechanisms.py (whose helpers it uses). Beyond that
file's tensors and metadata, a case may have:
    metadata   "<case>/window" = "left,right" (absent: no window), "<case>/sinks" = n,
               "<case>/softcap" = c (absent: none; c·tanh(score / c) on the scaled scores, before the bias),
               "<case>/block_size" = bs with the tensor block_map (U8, (B|1, H|1, ceil(T/bs), ceil(S/bs)))
    tensors    sink_logits (F64, (H)) and its gradient dsink (F64, (H)); alibi_slopes (F64, (H))
The rules written out here (the library's documented meaning): with ta = t + (S - T), key s is visible
when (ta - left <= s or s < sinks) and s <= ta + right (the sinks are exempt from the window's left edge
only), and every other mask part allows it; ALiBi adds
slope_h * (s - ta) to the scaled scores after the bias; a sink logit z_h is one more column of every row's
softmax, with no value, so lse includes it and a row with no key left has weights 0, out 0 and lse z_h.
"""
import math
import os
import sys

os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_mechanisms as gm  # noqa: E402

F64 = torch.float64


def alibi_slopes(H):
    """The ALiBi paper's slopes, as attn_alibi_slopes computes them (rounded to float32)."""
    n = 1
    while n * 2 <= H:
        n *= 2
    s = [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]
    s += [2.0 ** (-8.0 * (2 * (h - n) + 1) / (2 * n)) for h in range(n, H)]
    return torch.tensor([gm.f32(x) for x in s], dtype=F64)


def sparse_case(name, seed, B, H, T, S, D, Dv, Hkv=None, vl_kind="none", valid_lens=None, causal=False,
                allow=None, bias=None, window=None, sinks=0, sink_logits=False, alibi=False, softcap=0.0,
                block_map=None, block_size=0, note=""):
    Hkv = Hkv or H
    c = gm.Case(name, seed)
    q = c.randn(B, H, T, D).requires_grad_()
    k = c.randn(B, Hkv, S, D).requires_grad_()
    v = c.randn(B, Hkv, S, Dv).requires_grad_()
    scale = gm.f32(1.0 / math.sqrt(D))
    vl = None if valid_lens is None else torch.tensor(valid_lens, dtype=torch.int32)
    allow = allow(c) if callable(allow) else allow
    bias = bias(c) if callable(bias) else bias
    z = c.randn(H, std=1.5).requires_grad_() if sink_logits else None
    slopes = alibi_slopes(H) if alibi else None

    keep = gm.key_mask(B, H, T, S, vl, vl_kind, causal, allow, bias)
    s_idx = torch.arange(S)[None, :]
    ta = (torch.arange(T) + (S - T))[:, None]
    if window is not None:
        left, right = window
        win = ((s_idx >= ta - left) | (s_idx < sinks)) & (s_idx <= ta + right)   # sinks pass the left edge
        keep &= win[None, None]
    bmap = None
    if block_map is not None:                          # (B|1, H|1, nqb, nkb): block (t // bs, s // bs)
        bmap = block_map(c) if callable(block_map) else block_map
        ti, si = torch.arange(T) // block_size, torch.arange(S) // block_size
        keep &= bmap[:, :, ti][:, :, :, si].bool().expand(B, H, T, S)

    G = H // Hkv
    kk, vv = k.repeat_interleave(G, dim=1), v.repeat_interleave(G, dim=1)
    scores = scale * (q @ kk.transpose(-1, -2))
    if softcap > 0:                                    # Gemma 2's order: cap the scaled scores, then the rest
        scores = softcap * torch.tanh(scores / softcap)
    if bias is not None:
        scores = scores + torch.where(torch.isneginf(bias), torch.zeros_like(bias), bias)
    if slopes is not None:
        scores = scores + slopes[None, :, None, None] * (s_idx - ta).to(F64)[None, None]
    masked = scores.masked_fill(~keep, -math.inf)
    if z is not None:                                  # one more column per row: the sink, no value
        cols = torch.cat([masked, z[None, :, None, None].expand(B, H, T, 1)], dim=-1)
        p = torch.softmax(cols, dim=-1)
        w = p[..., :S]
        with torch.no_grad():
            lse = torch.logsumexp(cols, dim=-1)
    else:
        w, lse = gm.masked_softmax(scores, keep)
    out = w @ vv
    dout = c.randn(*out.shape)
    (out * dout).sum().backward()

    c.meta = {"kind": "sdpa", "valid_lens_kind": vl_kind, "causal": str(int(causal)), "note": note}
    if softcap > 0:
        c.meta["softcap"] = repr(softcap)
    if bmap is not None:
        c.meta["block_size"] = str(block_size)
        c.put("block_map", bmap.to(torch.uint8))
    if window is not None:
        c.meta["window"] = f"{window[0]},{window[1]}"
        c.meta["sinks"] = str(sinks)
    gm.put_sdpa(c, q, k, v, scale, vl, allow, bias, out, w, lse, dout)
    if z is not None:
        c.put("sink_logits", z.detach())
        c.put("dsink", z.grad)
    if slopes is not None:
        c.put("alibi_slopes", slopes)
    gm.check_finite(c)
    rows = (~keep.any(-1)).sum().item()
    print(f"  {name:18s} B={B} H={H} Hkv={Hkv} T={T} S={S} D={D} Dv={Dv} window={window} sinks={sinks} "
          f"sink_logits={sink_logits} alibi={alibi} softcap={softcap} rows with no key={rows}")
    return c


def main():
    cases = [
        sparse_case("win_causal", 101, 1, 2, 24, 24, 8, 8, causal=True, window=(5, 0),
                    note="causal sliding window of 6 keys"),
        sparse_case("win_twosided", 102, 1, 2, 16, 22, 8, 6, window=(4, 3), note="two-sided window, T < S"),
        sparse_case("win_sinks_lens", 103, 2, 1, 24, 24, 8, 8, causal=True, window=(5, 0), sinks=3,
                    vl_kind="per_batch", valid_lens=[19, 24], note="StreamingLLM: window + 3 sinks, lengths"),
        sparse_case("sink_logits", 104, 1, 4, 12, 12, 8, 8, Hkv=2, causal=True, sink_logits=True,
                    note="learned per-head sink logits, GQA"),
        sparse_case("gpt_oss", 105, 1, 4, 20, 20, 8, 8, Hkv=1, causal=True, window=(6, 0), sink_logits=True,
                    note="gpt-oss: causal window and sink logits, grouped heads"),
        sparse_case("alibi", 106, 1, 8, 12, 12, 4, 4, causal=True, alibi=True, note="ALiBi, 8 heads"),
        sparse_case("alibi_masks", 107, 1, 6, 10, 13, 6, 4, alibi=True,
                    allow=gm.random_allow((1, 6, 10, 13), dead_row=(0, 2, 4)),
                    bias=gm.random_bias((1, 1, 10, 13)), note="ALiBi with 6 heads, allow and bias"),
        sparse_case("everything", 108, 2, 4, 12, 5, 6, 7, Hkv=2, window=(0, 0), sinks=1, sink_logits=True,
                    alibi=True, vl_kind="per_query",
                    valid_lens=[[5, 4, 3, 5, 0, 5, 2, 5, 5, 1, 5, 5], [1, 5, 5, 5, 5, 3, 5, 5, 5, 5, 4, 5]],
                    bias=gm.random_bias((2, 4, 12, 5), p_neginf=0.1),
                    note="window 1 + a sink, sink logits, ALiBi, lengths, bias: rows with no key"),
        sparse_case("softcap", 109, 1, 2, 16, 16, 8, 8, causal=True, softcap=1.5, note="soft cap 1.5 (Gemma 2)"),
        sparse_case("softcap_all", 110, 1, 4, 14, 18, 8, 8, Hkv=2, window=(5, 2), sinks=2, sink_logits=True,
                    alibi=True, softcap=2.0, bias=gm.random_bias((1, 4, 14, 18), p_neginf=0.1),
                    note="soft cap with window, sinks, sink logits, ALiBi and bias"),
        sparse_case("block_map", 111, 2, 2, 20, 23, 8, 8, block_size=4,
                    block_map=gm.random_allow((2, 2, 5, 6), p_keep=0.5, dead_row=(1, 0, 2)),
                    note="a random block map per (b, h) of 4 x 4 blocks, a block row with nothing"),
        sparse_case("block_map_all", 112, 1, 4, 18, 18, 8, 8, Hkv=2, causal=True, block_size=3,
                    block_map=gm.random_allow((1, 1, 6, 6), p_keep=0.6), window=(7, 0), sinks=1,
                    sink_logits=True, alibi=True, softcap=3.0, note="a broadcast block map with everything"),
    ]
    gm.save("mech_sdpa_sparse.safetensors", cases, generator="tools/golden/gen_sparse.py")


if __name__ == "__main__":
    main()
