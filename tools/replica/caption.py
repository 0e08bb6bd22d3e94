"""caption.py — the PyTorch 1.13 replica of `attn caption train`: the same captioner (patch embedding of
7x7 patches + learned positions, post-norm Transformer encoder blocks with bias-free attention; a decoder of
word embeddings + learned positions, blocks with causal self-attention and cross-attention to the patches, a
linear head over the 10 class words, <bos> and <eos>), the same strips (3 Fashion-MNIST items side by side,
28x84, drawn at random from the split, new ones every epoch), teacher forcing with the mean cross-entropy
over the B·4 predicted words, AdamW, warm-up + cosine per step down to 1% of the rate, gradient clipping,
batch size, Xavier/normal initialisations as caption.c. Prints one line per epoch with its time, the loss,
and exact_match and attention_on_item of greedy captions on --val test strips, scored as `attn caption eval`
scores them, for speed and accuracy side by side with the C program.

    /usr/bin/python3 tools/replica/caption.py [--data DIR] [--epochs N] [--strips N] [--max-steps N] ...

The random streams differ from the C program's (its strips come from a hash of (seed, index)), so the runs
match in kind, not bit for bit. Greedy decoding reruns the decoder over the prefix at every step (no
key/value cache): the epoch time printed for training does not include it.
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from detr import Block, load  # noqa: E402  (the same post-norm blocks and IDX reader)

ITEMS, MEAN, STD = 3, 0.2860, 0.3530


def strips(images, labels, rng, B):
    """B strips (B,1,28,84) normalized, and their words (B,3)"""
    idx = rng.integers(len(images), size=(B, ITEMS))
    x = np.concatenate([images[idx[:, k]] for k in range(ITEMS)], axis=2)
    x = (torch.from_numpy(x.astype(np.float32)) / 255.0 - MEAN) / STD
    return x.unsqueeze(1), torch.from_numpy(labels[idx].astype(np.int64))


def xavier(t):
    nn.init.xavier_uniform_(t)
    return t


class Captioner(nn.Module):
    def __init__(self, P, K, D, H, F_, Le, Ld, R=28, W=28 * ITEMS):
        super().__init__()
        self.K, self.T, Np = K, ITEMS + 1, (R // P) * (W // P)
        self.patch = nn.Conv2d(1, D, P, P)                     # Conv2d's default init, as attn_patch_embed
        self.pos = nn.Parameter(torch.randn(Np, D) * 0.02)
        self.enc = nn.ModuleList(Block(D, F_, H, False) for _ in range(Le))
        self.emb = nn.Parameter(torch.randn(K + 2, D))
        self.dec_pos = nn.Parameter(torch.randn(self.T, D) * 0.02)
        self.dec = nn.ModuleList(Block(D, F_, H, True, causal=True) for _ in range(Ld))
        self.head = nn.Linear(D, K + 2)
        for b in list(self.enc) + list(self.dec):          # attn_tf_block_init_weights: Xavier projections,
            for mha in (b.sa, b.ca):                       # FFN weights Xavier, biases nn.Linear's range
                if mha is not None:
                    for lin in (mha.q, mha.k, mha.v, mha.o):
                        xavier(lin.weight)
            xavier(b.ff[0].weight)
            xavier(b.ff[2].weight)
        xavier(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def encode(self, x):
        e = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        for b in self.enc:
            e = b(e)
        return e

    def decode(self, ids, e):
        d = self.emb[ids] + self.dec_pos[:ids.shape[1]]
        for b in self.dec:
            d = b(d, e)
        return self.head(d)

    def forward(self, x, words):
        bos = torch.full((x.shape[0], 1), self.K, dtype=torch.long)
        return self.decode(torch.cat([bos, words], 1), self.encode(x))


@torch.no_grad()
def evaluate(m, x, words, grid_rows, grid_cols):
    """exact_match and attention_on_item of greedy captions, as cmd_caption.c's evaluate"""
    B, K = x.shape[0], m.K
    e = m.encode(x)
    ids = torch.full((B, 1), K, dtype=torch.long)
    out = torch.full((B, ITEMS), -1, dtype=torch.long)
    alive = torch.ones(B, dtype=torch.bool)
    share, n_words = 0.0, 0
    wc = grid_cols // ITEMS
    for t in range(ITEMS):
        best = m.decode(ids, e)[:, -1].argmax(-1)
        alive &= best < K                                     # <eos> (or <bos>) ends a caption
        out[alive, t] = best[alive]
        w = m.dec[-1].ca.weights[:, :, -1].mean(1).view(B, grid_rows, grid_cols)   # last block, mean of heads
        on = w[:, :, t * wc:(t + 1) * wc].sum((1, 2))
        share += on[alive].sum().item()
        n_words += int(alive.sum())
        ids = torch.cat([ids, best.unsqueeze(1)], 1)
    exact = (out == words).all(1).float().mean().item()
    return exact, share / max(1, n_words)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--strips", type=int, default=60000)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--val", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--patch", type=int, default=7)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=128)
    ap.add_argument("--enc-blocks", type=int, default=1)
    ap.add_argument("--dec-blocks", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    xtr, ytr = load(a.data, "train")
    xte, yte = load(a.data, "t10k")
    K = 10
    m = Captioner(a.patch, K, a.dim, a.heads, a.ffn, a.enc_blocks, a.dec_blocks)
    opt = torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=a.wd)
    steps = (a.strips + a.batch - 1) // a.batch
    total = steps * a.epochs if not a.max_steps else min(steps * a.epochs, a.max_steps)
    warm = steps * a.warmup

    def lr_at(t):                                             # attn_lr_warmup_cosine
        if t < warm:
            return a.lr * (t + 1) / warm
        if total <= warm:
            return a.lr
        u = min(1.0, (t - warm) / (total - warm))
        return 0.01 * a.lr + 0.5 * (a.lr - 0.01 * a.lr) * (1 + math.cos(math.pi * u))
    xv, wv = strips(xte, yte, np.random.default_rng(a.seed + 1000003), a.val)
    gr, gc = 28 // a.patch, 28 * ITEMS // a.patch
    print("replica: %d parameters, %d threads, batch %d, %d steps" %
          (sum(p.numel() for p in m.parameters()), a.threads, a.batch, total), flush=True)
    t = 0
    while t < total:
        t0, t_data, lsum, seen = time.time(), 0.0, 0.0, 0
        for s in range(steps):
            if t >= total:
                break
            td = time.time()
            x, w = strips(xtr, ytr, rng, min(a.batch, a.strips - s * a.batch))
            t_data += time.time() - td
            for grp in opt.param_groups:
                grp["lr"] = lr_at(t)
            eos = torch.full((x.shape[0], 1), K + 1, dtype=torch.long)
            logits = m(x, w)
            loss = F.cross_entropy(logits.reshape(-1, K + 2), torch.cat([w, eos], 1).view(-1))
            opt.zero_grad()
            loss.backward()
            if a.clip > 0:
                torch.nn.utils.clip_grad_norm_(m.parameters(), a.clip)
            opt.step()
            t += 1
            lsum += loss.item() * x.shape[0]
            seen += x.shape[0]
        t_train = time.time() - t0
        m.eval()
        exact, on_item = evaluate(m, xv, wv, gr, gc)
        m.train()
        print("Epoch %.4g - %.1fs (train %.1fs, of which strips %.1fs) - loss: %.4f - exact_match: %.4f - "
              "attention_on_item: %.3f (%d test strips)" %
              (t / steps, time.time() - t0, t_train, t_data, lsum / seen, exact, on_item, a.val), flush=True)


if __name__ == "__main__":
    main()
