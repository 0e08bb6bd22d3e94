"""gen_imdb.py — golden values for tests/test_imdb.c: a tiny instance of the IMDB self-attention classifier
(embedding, self-attention, mean, dense), forward and backward in float64 with PyTorch, plus two Keras-form Adam steps.

    python3 tools/golden/gen_imdb.py            # writes tests/golden/imdb_model.safetensors

Model (as src/models/imdb.c): ids (B,T) -> Embedding(V,D) -> self-attention with one kernel
W (3,D,D) (Q = X W[0], K = X W[1], V = X W[2], softmax(scale Q K^T) V, no mask) -> mean over T -> Dropout
(off here) -> Dense(C) (weight (C,D), PyTorch layout) -> softmax cross-entropy, mean over the batch.
Sizes: V 50, D 8, T 6, B 4, C 2, scale 1/8.
"""
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

torch.manual_seed(4)
V, D, T, B, C = 50, 8, 6, 4, 2
scale = 0.125

ids = torch.randint(3, V, (B, T), dtype=torch.int32)
ids[0, :2] = 0          # left padding, as the encoder makes it
ids[0, 2] = 1           # start id
ids[1, 0] = 1
ids[2, :5] = 0
ids[2, 5] = 1
labels = torch.tensor([1, 0, 1, 0], dtype=torch.int32)

emb = ((torch.rand(V, D, dtype=torch.float64) * 2 - 1) * 0.5).requires_grad_()
kernel = ((torch.rand(3, D, D, dtype=torch.float64) * 2 - 1) * 0.5).requires_grad_()
g = (6.0 / (D + C)) ** 0.5
dense_w = ((torch.rand(C, D, dtype=torch.float64) * 2 - 1) * g).requires_grad_()
dense_b = (torch.rand(C, dtype=torch.float64) * 0.2 - 0.1).requires_grad_()


def forward(emb, kernel, dense_w, dense_b):
    x = emb[ids.long()]                                   # (B,T,D)
    q, k, v = x @ kernel[0], x @ kernel[1], x @ kernel[2]
    w = torch.softmax(scale * q @ k.transpose(1, 2), dim=-1)   # (B,T,T)
    h = w @ v                                             # (B,T,D)
    pooled = h.mean(dim=1)                                # (B,D)
    logits = pooled @ dense_w.t() + dense_b               # (B,C)
    loss = torch.nn.functional.cross_entropy(logits, labels.long())
    return loss, torch.softmax(logits, dim=-1), w


loss, probs, weights = forward(emb, kernel, dense_w, dense_b)
loss.backward()

# Two Keras-form Adam steps (lr 0.01 so that the change is visible, decay 1e-5, eps 1e-7) over the slab.
params = [emb.detach().clone(), kernel.detach().clone(), dense_w.detach().clone(), dense_b.detach().clone()]
m = [torch.zeros_like(p) for p in params]
s = [torch.zeros_like(p) for p in params]
lr, b1, b2, eps, decay = 0.01, 0.9, 0.999, 1e-7, 1e-5
for t in (1, 2):
    ps = [p.clone().requires_grad_() for p in params]
    l2, _, _ = forward(*ps)
    l2.backward()
    lr_t = lr / (1 + decay * (t - 1))
    step = lr_t * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
    for i, p in enumerate(ps):
        gi = p.grad
        m[i] = b1 * m[i] + (1 - b1) * gi
        s[i] = b2 * s[i] + (1 - b2) * gi * gi
        params[i] = params[i] - step * m[i] / (s[i].sqrt() + eps)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden",
                   "imdb_model.safetensors")
st.save(out, {
    "ids": ids, "labels": labels,
    "emb": emb.detach(), "kernel": kernel.detach(), "dense_w": dense_w.detach(), "dense_b": dense_b.detach(),
    "loss": loss.detach().reshape(1), "probs": probs.detach(), "weights": weights.detach(),
    "d_emb": emb.grad, "d_kernel": kernel.grad, "d_dense_w": dense_w.grad, "d_dense_b": dense_b.grad,
    "adam2_emb": params[0], "adam2_kernel": params[1], "adam2_dense_w": params[2], "adam2_dense_b": params[3],
}, metadata={"V": V, "D": D, "T": T, "B": B, "C": C, "scale": scale, "adam_lr": lr})
print("wrote", out)
