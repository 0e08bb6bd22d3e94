"""shapes_tour.py — the multi-head attention tutorial's shapes tour in NumPy (and PyTorch, when present):
dot-product, additive and multi-head attention on random (32, 10, 128) inputs, printing every shape.

    PYTHONPATH=python /usr/bin/python3 python/examples/shapes_tour.py
"""
import numpy as np

import attn

rng = np.random.default_rng(0)
B, T, D, H = 32, 10, 128, 4
x = rng.standard_normal((B, T, D)).astype(np.float32)
q, k, v = x, rng.standard_normal((B, T, D)).astype(np.float32), rng.standard_normal((B, T, D)).astype(np.float32)
print(f"queries {q.shape}  keys {k.shape}  values {v.shape}")

# dot-product attention (unscaled: scale = 1)
out, w = attn.sdpa(q, k, v, scale=1.0, return_weights=True)
print(f"dot-product attention:        out {out.shape}  weights {w.shape}")

# scaled dot-product attention, the second half of the keys masked for batch rows 0..15
lens = np.where(np.arange(B) < 16, T // 2, T)
out, w = attn.sdpa(q, k, v, valid_lens=lens, return_weights=True)
print(f"scaled, valid lengths:        out {out.shape}  weights {w.shape}  "
      f"(row 0 weight on masked keys: {w[0, :, T // 2:].sum():.1f})")

# additive (Bahdanau) attention with 64 hidden units
Dh = 64
wq, wk, wv = (rng.uniform(-0.1, 0.1, s).astype(np.float32) for s in ((Dh, D), (Dh, D), (Dh,)))
out, w = attn.additive(q, k, v, wq, wk, wv, return_weights=True)
print(f"additive attention (h = {Dh}):  out {out.shape}  weights {w.shape}")

# multi-head attention, dimension 128 and 4 heads of 32: projections in NumPy, then the heads are read
# in place as (B, H, T, 32) views of the (B, T, 128) projections (no copies)
def linear(n_in, n_out):
    bound = 1 / np.sqrt(n_in)
    return (rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32),
            rng.uniform(-bound, bound, n_out).astype(np.float32))


(Wq, bq), (Wk, bk), (Wv, bv), (Wo, bo) = (linear(D, D) for _ in range(4))
heads = lambda a: a.reshape(B, T, H, D // H).transpose(0, 2, 1, 3)    # noqa: E731
qh, kh, vh = heads(q @ Wq.T + bq), heads(k @ Wk.T + bk), heads(v @ Wv.T + bv)
o, w = attn.sdpa(qh, kh, vh, return_weights=True)                      # scale 1/sqrt(32)
out = o.transpose(0, 2, 1, 3).reshape(B, T, D) @ Wo.T + bo
print(f"multi-head attention ({H} heads): per-head q {qh.shape}  out {out.shape}  weights {w.shape}")

try:
    import torch
    import attn.torch as at
except ImportError:
    print("(PyTorch not found: attn.torch.MultiheadAttention skipped)")
else:
    mha = at.MultiheadAttention(D, H, batch_first=True)
    xt = torch.from_numpy(x)
    out, w = mha(xt, xt, xt, average_attn_weights=False)
    print(f"attn.torch.MultiheadAttention: out {tuple(out.shape)}  weights {tuple(w.shape)}")
    out.sum().backward()
    print(f"  gradients: in_proj_weight {tuple(mha.in_proj_weight.grad.shape)}  "
          f"out_proj.weight {tuple(mha.out_proj.weight.grad.shape)}")
