"""gen_varlen.py — PyTorch golden file for packed variable-length batches (tests/test_varlen.c reads it).

Rerun from the repository root (needs PyTorch; the tests themselves do not):

    /usr/bin/python3 tools/golden/gen_varlen.py            # writes tests/golden/varlen.safetensors

Each case packs n sequences without padding, as FlashAttention's varlen: q (total_q, H, D), k (total_k, Hkv, D),
v (total_k, Hkv, Dv), cu_q and cu_k (n + 1, I32, cumulative lengths). Sequence i is scaled dot-product
attention of its own rows alone (grouped-query heads, scale 1/sqrt(D), causal bottom-right aligned when
"<case>/causal" is 1), in float64 with autograd. Stored: out (total_q, H, Dv), lse (total_q, H) (the
log-sum-exp of each row's scaled scores; -inf for a row with no keys), dout (loss = sum(out * dout)) and
dq dk dv. Inputs are drawn in float32 and widened.
"""
import math
import os
import sys

os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden")


def case(name, seed, lq, lk, H, Hkv, D, Dv, causal):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float32).double()

    cq = np.concatenate([[0], np.cumsum(lq)]).astype(np.int32)
    ck = np.concatenate([[0], np.cumsum(lk)]).astype(np.int32)
    q = randn(int(cq[-1]), H, D).requires_grad_()
    k = randn(int(ck[-1]), Hkv, D).requires_grad_()
    v = randn(int(ck[-1]), Hkv, Dv).requires_grad_()
    dout = randn(int(cq[-1]), H, Dv)
    outs, lses = [], []
    scale = float(np.float32(1.0 / math.sqrt(D)))
    for i in range(len(lq)):
        T, S = int(lq[i]), int(lk[i])
        qi = q[cq[i]:cq[i + 1]].transpose(0, 1)                       # (H,T,D)
        ki = k[ck[i]:ck[i + 1]].transpose(0, 1).repeat_interleave(H // Hkv, 0)   # (H,S,D)
        vi = v[ck[i]:ck[i + 1]].transpose(0, 1).repeat_interleave(H // Hkv, 0)
        if S == 0:
            outs.append(torch.zeros(T, H, Dv, dtype=torch.float64))
            lses.append(torch.full((T, H), -math.inf, dtype=torch.float64))
            continue
        s = scale * qi @ ki.transpose(-1, -2)                         # (H,T,S)
        if causal:
            keep = torch.arange(S)[None, :] <= torch.arange(T)[:, None] + (S - T)
            s = s.masked_fill(~keep, -math.inf)
        lse = torch.logsumexp(s, -1)                                  # (H,T)
        w = torch.softmax(s, -1).nan_to_num(0.0)
        outs.append((w @ vi).transpose(0, 1))
        lses.append(lse.transpose(0, 1))
    out = torch.cat(outs, 0)
    (out * dout).sum().backward()
    t = {"q": q, "k": k, "v": v, "out": out, "lse": torch.cat(lses, 0), "dout": dout, "dq": q.grad, "dk": k.grad,
         "dv": v.grad}
    tensors = {f"{name}/{n}": x.detach() for n, x in t.items()}
    tensors[f"{name}/cu_q"] = cq
    tensors[f"{name}/cu_k"] = ck
    return tensors, {f"{name}/causal": int(causal), f"{name}/heads": f"{H},{Hkv}"}


def main():
    cases = [
        # name, seed, query lengths, key lengths, H, Hkv, D, Dv, causal
        ("causal", 1, [5, 1, 9, 3], [5, 1, 9, 3], 2, 1, 4, 3, True),
        ("cross", 2, [3, 0, 6, 2], [7, 4, 2, 0], 2, 2, 5, 2, False),    # an empty sequence, one with no keys
    ]
    tensors, meta = {}, {"cases": ",".join(c[0] for c in cases), "generator": "tools/golden/gen_varlen.py",
                         "torch": torch.__version__}
    for c in cases:
        t, m = case(*c)
        tensors.update(t)
        meta.update(m)
    path = os.path.normpath(os.path.join(OUT_DIR, "varlen.safetensors"))
    st.save(path, tensors, meta)
    back, bmeta = st.load(path)
    assert bmeta == {k: str(v) for k, v in meta.items()}
    for k, v in tensors.items():
        assert np.array_equal(back[k], v.numpy() if hasattr(v, "numpy") else v), k
    print(f"wrote {path}: {len(cases)} cases, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
