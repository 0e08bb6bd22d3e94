"""gen_linear.py — PyTorch golden file for linear attention (tests/test_linear_attn.c reads it).

Rerun from the repository root (needs PyTorch; the tests themselves do not):

    /usr/bin/python3 tools/golden/gen_linear.py            # writes tests/golden/linear_attn.safetensors

Linear attention as Katharopoulos et al. (2020) write it, in float64 with autograd: phi(x) = elu(x) + 1,
    out_t = phi(q_t)^T sum_s phi(k_s) v_s^T / (phi(q_t) . sum_s phi(k_s) + eps)
over every key, or causal over s <= t (written here as the masked quadratic form, not by prefix sums, so
it shares no algorithm with the library's chunked kernel). Inputs are drawn in float32 and widened.
Stored per case under "<case>/<name>", all F64: q (B,H,T,D) k (B,H,S,D) v (B,H,S,Dv), out, den (B,H,T)
(the normaliser, eps included), dout (loss = sum(out * dout)) and dq dk dv. Metadata "<case>/causal",
"<case>/eps", and "cases".

Linformer (Wang et al. 2020), the layer of src/layers/linformer.c, under "linformer/<name>": q (B,T,Dm),
k and v (B,S,Dm), params (every parameter flattened in the layer's bind order: wq bq wk bk wv bv wo bo E F),
out, dout, dq dk dv and grads (the parameters' gradients in the same order); metadata "linformer/sizes" =
"B,T,S,Dm,H,N,Kp".
"""
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


def linear_attention(q, k, v, causal, eps):
    f = torch.nn.functional.elu(q) + 1
    g = torch.nn.functional.elu(k) + 1
    a = f @ g.transpose(-1, -2)                       # (B,H,T,S)
    if causal:
        T, S = a.shape[-2], a.shape[-1]
        a = a * torch.tril(torch.ones(T, S, dtype=a.dtype))
    den = a.sum(-1) + eps
    return (a @ v) / den.unsqueeze(-1), den


def case(name, seed, B, H, T, S, D, Dv, causal, eps=1e-6, scale=1.0):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return (torch.randn(*shape, generator=gen, dtype=torch.float32) * np.float32(scale)).double()

    q = randn(B, H, T, D).requires_grad_()
    k = randn(B, H, S, D).requires_grad_()
    v = randn(B, H, S, Dv).requires_grad_()
    dout = randn(B, H, T, Dv)
    out, den = linear_attention(q, k, v, causal, np.float32(eps).item())
    (out * dout).sum().backward()
    t = {"q": q, "k": k, "v": v, "out": out, "den": den, "dout": dout, "dq": q.grad, "dk": k.grad, "dv": v.grad}
    tensors = {f"{name}/{n}": x.detach() for n, x in t.items()}
    meta = {f"{name}/causal": int(causal), f"{name}/eps": repr(float(np.float32(eps)))}
    return tensors, meta


def linformer(seed, B, T, S, Dm, H, N, Kp):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape, std=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float32) * np.float32(std)).double()

    shapes = [(Dm, Dm), (Dm,)] * 4 + [(Kp, N), (Kp, N)]
    params = [randn(*sh, std=0.5).requires_grad_() for sh in shapes]
    wq, bq, wk, bk, wv, bv, wo, bo, E, F = params
    q = randn(B, T, Dm).requires_grad_()
    k = randn(B, S, Dm).requires_grad_()
    v = randn(B, S, Dm).requires_grad_()
    dout = randn(B, T, Dm)
    Dh = Dm // H
    qp = q @ wq.T + bq
    ke = torch.matmul(E[:, :S], k @ wk.T + bk)            # (B,Kp,Dm)
    ve = torch.matmul(F[:, :S], v @ wv.T + bv)
    heads = lambda x: x.reshape(B, x.shape[1], H, Dh).transpose(1, 2)   # noqa: E731
    w = torch.softmax(heads(qp) @ heads(ke).transpose(-1, -2) / np.sqrt(Dh), dim=-1)
    ctx = (w @ heads(ve)).transpose(1, 2).reshape(B, T, Dm)
    out = ctx @ wo.T + bo
    (out * dout).sum().backward()
    flat = lambda xs: torch.cat([x.reshape(-1) for x in xs])   # noqa: E731
    t = {"q": q, "k": k, "v": v, "params": flat(params), "out": out, "dout": dout, "dq": q.grad, "dk": k.grad,
         "dv": v.grad, "grads": flat([p.grad for p in params])}
    tensors = {f"linformer/{n}": x.detach() for n, x in t.items()}
    return tensors, {"linformer/sizes": f"{B},{T},{S},{Dm},{H},{N},{Kp}"}


def main():
    cases = [
        # name, seed, B, H, T, S, D, Dv, causal
        ("causal_chunks", 1, 2, 1, 70, 70, 4, 3, True),      # crosses one chunk boundary (64)
        ("causal_long", 2, 1, 1, 130, 130, 4, 4, True),      # three chunks, the last one short
        ("causal_one", 3, 1, 3, 1, 1, 4, 2, True),           # T = 1
        ("cross", 4, 2, 2, 9, 13, 8, 3, False),              # not causal, T != S
        ("cross_long", 5, 1, 1, 40, 131, 4, 5, False),       # not causal, several key chunks
    ]
    tensors, meta = {}, {"cases": ",".join(c[0] for c in cases), "generator": "tools/golden/gen_linear.py",
                         "torch": torch.__version__}
    for c in cases:
        t, m = case(*c)
        tensors.update(t)
        meta.update(m)
    t, m = linformer(6, B=2, T=5, S=6, Dm=8, H=2, N=8, Kp=3)
    tensors.update(t)
    meta.update(m)
    path = os.path.normpath(os.path.join(OUT_DIR, "linear_attn.safetensors"))
    st.save(path, tensors, meta)
    back, bmeta = st.load(path)
    assert bmeta == {k: str(v) for k, v in meta.items()}
    for k, v in tensors.items():
        assert np.array_equal(back[k], v.numpy()), k
    print(f"wrote {path}: {len(cases)} cases, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
