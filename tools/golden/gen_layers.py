"""gen_layers.py — writes the golden files of the trainable layers (tests/golden/layers_*.safetensors).

    /usr/bin/python3 tools/golden/gen_layers.py [outdir]       (default: tests/golden next to this tree)

Everything is computed in float64 with PyTorch 1.13 from inputs first rounded to float32 (so the C code,
which reads the float32 copies, starts from exactly the same values), then stored as float32; integer
tensors are stored as int32. Seeds are fixed: rerunning gives the same files. Gradients come from
autograd of sum(output · dout) with a random dout stored next to them.

Files:
  layers_basic.safetensors     linear, embedding, layernorm, mean over time, softmax cross-entropy
  layers_mha.safetensors       multi-head attention, d2l-style (explicit W_q, W_k, W_v, W_o with bias):
                               cross-attention with per-batch and per-query valid lengths (including
                               fully masked rows) and causal self-attention
  layers_selfattn.safetensors  the IMDB self-attention layer, W (3,Din,Dout), scale 1/8
  layers_optim.safetensors     3 steps of Adam in the Keras and PyTorch forms, clip_grad_norm_
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

import torch  # noqa: E402

torch.set_num_threads(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

torch.set_default_dtype(torch.float64)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                         "..", "..", "tests", "golden")


def f32(t):
    """Round to float32 and back: the exact values the C side will read."""
    return t.float().double()


def rnd(*shape, scale=1.0):
    return f32(torch.randn(*shape) * scale)


def out32(d):
    """float tensors -> float32 for storage, integer tensors -> int32."""
    r = {}
    for k, v in d.items():
        v = v.detach()
        r[k] = v.float() if v.is_floating_point() else v.to(torch.int32)
    return r


def grads_of(y, dy, *xs):
    return torch.autograd.grad((y * dy).sum(), xs, allow_unused=True)


# ---------------------------------------------------------------------------------------------------
def basic():
    torch.manual_seed(1)
    g = {}
    # linear: y = x Wᵀ + b, N=3, in=5, out=4
    N, IN, OUT_ = 3, 5, 4
    x, w, b = rnd(N, IN).requires_grad_(), rnd(OUT_, IN).requires_grad_(), rnd(OUT_).requires_grad_()
    y = x @ w.T + b
    dy = rnd(N, OUT_)
    dx, dw, db = grads_of(y, dy, x, w, b)
    g.update({"linear.x": x, "linear.w": w, "linear.b": b, "linear.y": y, "linear.dy": dy,
              "linear.dx": dx, "linear.dw": dw, "linear.db": db})

    # embedding: V=6, D=3, N=7 with repeated ids
    V, D = 6, 3
    ids = torch.tensor([0, 5, 2, 2, 4, 0, 2])
    table = rnd(V, D).requires_grad_()
    y = table[ids]
    dy = rnd(len(ids), D)
    (dtable,) = grads_of(y, dy, table)
    g.update({"embedding.ids": ids, "embedding.table": table, "embedding.y": y, "embedding.dy": dy,
              "embedding.dtable": dtable})

    # layernorm: N=4, C=7, eps=1e-5
    N, C = 4, 7
    x = (rnd(N, C) * 2 + 0.5).requires_grad_()
    gamma, beta = rnd(C).requires_grad_(), rnd(C).requires_grad_()
    y = torch.nn.functional.layer_norm(x, (C,), gamma, beta, eps=1e-5)
    mean = x.mean(-1)
    rstd = 1.0 / torch.sqrt(x.var(-1, unbiased=False) + 1e-5)
    dy = rnd(N, C)
    dx, dgamma, dbeta = grads_of(y, dy, x, gamma, beta)
    g.update({"layernorm.x": x, "layernorm.gamma": gamma, "layernorm.beta": beta, "layernorm.y": y,
              "layernorm.mean": mean, "layernorm.rstd": rstd, "layernorm.dy": dy, "layernorm.dx": dx,
              "layernorm.dgamma": dgamma, "layernorm.dbeta": dbeta})

    # mean over time: B=2, T=3, C=4
    x = rnd(2, 3, 4).requires_grad_()
    y = x.mean(1)
    dy = rnd(2, 4)
    (dx,) = grads_of(y, dy, x)
    g.update({"mean_time.x": x, "mean_time.y": y, "mean_time.dy": dy, "mean_time.dx": dx})

    # softmax cross-entropy with per-row weights (0 = padding): N=5, C=4; one row with large logits
    N, C = 5, 4
    logits = rnd(N, C, scale=2.0)
    logits[3] = f32(torch.tensor([900.0, 927.0, 929.0, 100.0]))
    logits.requires_grad_()
    targets = torch.tensor([1, 0, 3, 2, 1])
    weights = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5])
    logp = torch.log_softmax(logits, -1)
    losses = -logp.gather(1, targets[:, None])[:, 0] * weights
    probs = torch.softmax(logits, -1)
    dlosses = rnd(N)
    (dlogits,) = grads_of(losses, dlosses, logits)
    g.update({"xent.logits": logits, "xent.targets": targets, "xent.weights": weights, "xent.losses": losses,
              "xent.probs": probs, "xent.dlosses": dlosses, "xent.dlogits": dlogits})
    st.save(os.path.join(OUT, "layers_basic.safetensors"), out32(g), metadata={"generator": "gen_layers.py"})


# ---------------------------------------------------------------------------------------------------
def linear_params(dout, din):
    bound = 1.0 / math.sqrt(din)
    return (f32((torch.rand(dout, din) * 2 - 1) * bound).requires_grad_(),
            f32((torch.rand(dout) * 2 - 1) * bound).requires_grad_())


def mha_ref(p, q, k, v, H, keep):
    """d2l's MultiHeadAttention with explicit linears; keep (B,T,S) bool. Masked scores get -1e6 (exactly
    0 after the softmax in float64); rows with no key left give zero weights, as the C library does."""
    B, T, _ = q.shape
    S = k.shape[1]
    Dm = p["wq"].shape[0]
    Dh = Dm // H
    split = lambda x, L: x.reshape(B, L, H, Dh).permute(0, 2, 1, 3)  # noqa: E731
    Q = split(q @ p["wq"].T + p["bq"], T)
    K = split(k @ p["wk"].T + p["bk"], S)
    V = split(v @ p["wv"].T + p["bv"], S)
    scores = Q @ K.transpose(-1, -2) / math.sqrt(Dh)                       # (B,H,T,S)
    km = keep[:, None, :, :]
    scores = torch.where(km, scores, torch.full_like(scores, -1e6))
    weights = torch.softmax(scores, -1) * km.any(-1, keepdim=True)         # fully masked rows: 0
    ctx = (weights @ V).permute(0, 2, 1, 3).reshape(B, T, Dm)
    return ctx @ p["wo"].T + p["bo"], weights


def mha_case(g, name, p, q, k, v, H, keep, self_attn=False):
    names = ["wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"]
    out, weights = mha_ref(p, q, k, v, H, keep)
    dout = rnd(*out.shape)
    if self_attn:
        grads = grads_of(out, dout, q, *[p[n] for n in names])
        g[f"{name}.dx"] = grads[0]
        grads = grads[1:]
    else:
        grads = grads_of(out, dout, q, k, v, *[p[n] for n in names])
        g[f"{name}.dq"], g[f"{name}.dk"], g[f"{name}.dv"] = grads[:3]
        grads = grads[3:]
    for n, gr in zip(names, grads):
        g[f"{name}.d{n}"] = gr
    g[f"{name}.out"], g[f"{name}.weights"], g[f"{name}.dout"] = out, weights, dout


def mha():
    torch.manual_seed(2)
    g = {}
    # cross-attention: Dq=5, Dk=6, Dv=7, Dm=8, H=2, B=2, T=3, S=4
    B, T, S, H, Dq, Dk, Dv, Dm = 2, 3, 4, 2, 5, 6, 7, 8
    p = {}
    p["wq"], p["bq"] = linear_params(Dm, Dq)
    p["wk"], p["bk"] = linear_params(Dm, Dk)
    p["wv"], p["bv"] = linear_params(Dm, Dv)
    p["wo"], p["bo"] = linear_params(Dm, Dm)
    for n, t in p.items():
        g[f"cross.{n}"] = t
    q, k, v = rnd(B, T, Dq).requires_grad_(), rnd(B, S, Dk).requires_grad_(), rnd(B, S, Dv).requires_grad_()
    g["cross.q"], g["cross.k"], g["cross.v"] = q, k, v
    s_idx = torch.arange(S)
    # per batch row: row 0 sees 3 keys, row 1 none (every query of it fully masked)
    vl = torch.tensor([3, 0])
    g["vl_batch.valid_lens"] = vl
    mha_case(g, "vl_batch", p, q, k, v, H, (s_idx[None, None, :] < vl[:, None, None]).expand(B, T, S))
    # per query: a mix of lengths, one fully masked query
    vlq = torch.tensor([[4, 2, 0], [1, 3, 4]])
    g["vl_query.valid_lens"] = vlq
    mha_case(g, "vl_query", p, q, k, v, H, s_idx[None, None, :] < vlq[:, :, None])

    # causal self-attention: D=Dm=8, H=2, B=2, T=S=4, q = k = v = x
    B, T, D, Dm = 2, 4, 8, 8
    ps = {}
    ps["wq"], ps["bq"] = linear_params(Dm, D)
    ps["wk"], ps["bk"] = linear_params(Dm, D)
    ps["wv"], ps["bv"] = linear_params(Dm, D)
    ps["wo"], ps["bo"] = linear_params(Dm, Dm)
    for n, t in ps.items():
        g[f"causal.{n}"] = t
    x = rnd(B, T, D).requires_grad_()
    g["causal.x"] = x
    keep = torch.tril(torch.ones(T, T, dtype=torch.bool))[None].expand(B, T, T)
    mha_case(g, "causal", ps, x, x, x, H, keep, self_attn=True)
    st.save(os.path.join(OUT, "layers_mha.safetensors"), out32(g), metadata={"generator": "gen_layers.py"})


# ---------------------------------------------------------------------------------------------------
def selfattn():
    torch.manual_seed(3)
    g = {}
    B, T, Din, Dout = 2, 5, 6, 4
    w = f32((torch.rand(3, Din, Dout) * 2 - 1) * 0.5).requires_grad_()
    x = rnd(B, T, Din).requires_grad_()
    g["w"], g["x"] = w, x
    for name, vl in (("plain", None), ("masked", torch.tensor([5, 2]))):
        Q, K, V = x @ w[0], x @ w[1], x @ w[2]
        scores = Q @ K.transpose(-1, -2) / 8.0                             # scale 1/8, as the IMDB layer
        if vl is not None:
            keep = (torch.arange(T)[None, None, :] < vl[:, None, None]).expand(B, T, T)
            scores = torch.where(keep, scores, torch.full_like(scores, -1e6))
            g[f"{name}.valid_lens"] = vl
        weights = torch.softmax(scores, -1)
        out = weights @ V
        dout = rnd(B, T, Dout)
        dx, dw = grads_of(out, dout, x, w)
        g.update({f"{name}.out": out, f"{name}.weights": weights, f"{name}.dout": dout,
                  f"{name}.dx": dx, f"{name}.dw": dw})
    st.save(os.path.join(OUT, "layers_selfattn.safetensors"), out32(g), metadata={"generator": "gen_layers.py"})


# ---------------------------------------------------------------------------------------------------
def optim():
    torch.manual_seed(4)
    g = {}
    n, steps = 37, 3
    p0 = rnd(n)
    grads = rnd(steps, n)
    grads[:, 5] = 0.0                                                      # a parameter that never moves
    grads[1, 7] = 1e-3
    g["p0"], g["grads"] = p0, grads
    lr, b1, b2, decay = 0.01, 0.9, 0.999, 0.1

    # Keras form, written out
    eps = 1e-7
    p, m, v = p0.clone(), torch.zeros(n), torch.zeros(n)
    for t in range(1, steps + 1):
        gr = grads[t - 1]
        lr_t = lr / (1 + decay * (t - 1))
        m = b1 * m + (1 - b1) * gr
        v = b2 * v + (1 - b2) * gr * gr
        p = p - lr_t * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (torch.sqrt(v) + eps)
        g[f"keras.p{t}"] = p.clone()
    g["keras.m"], g["keras.v"] = m, v

    # PyTorch form: torch.optim.Adam, with the same time decay applied to the group's lr each step
    prm = torch.nn.Parameter(p0.clone())
    opt = torch.optim.Adam([prm], lr=lr, betas=(b1, b2), eps=1e-8)
    for t in range(1, steps + 1):
        for grp in opt.param_groups:
            grp["lr"] = lr / (1 + decay * (t - 1))
        prm.grad = grads[t - 1].clone()
        opt.step()
        g[f"torch.p{t}"] = prm.detach().clone()
    stt = opt.state[prm]
    g["torch.m"], g["torch.v"] = stt["exp_avg"], stt["exp_avg_sq"]

    # clip_grad_norm_: once over the limit, once under it
    for name, mx in (("clip_over", 1.0), ("clip_under", 100.0)):
        gr = torch.nn.Parameter(torch.zeros(n))
        gr.grad = grads[0].clone()
        norm = torch.nn.utils.clip_grad_norm_([gr], mx)
        g[f"{name}.max_norm"] = torch.tensor([mx])
        g[f"{name}.norm"] = norm.reshape(1)
        g[f"{name}.grads"] = gr.grad.clone()
    st.save(os.path.join(OUT, "layers_optim.safetensors"), out32(g), metadata={"generator": "gen_layers.py"})


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    basic()
    mha()
    selfattn()
    optim()
    for f in sorted(os.listdir(OUT)):
        if f.startswith("layers_"):
            print(f, os.path.getsize(os.path.join(OUT, f)))
