"""vit.py — the PyTorch 1.13 replica of `attn vision train`: the same ViT (vit_model.py), data, normalization,
augmentation kind (random crop of the image padded by 1, --crop N, and horizontal flip), AdamW, warm-up + cosine schedule
per step, gradient clipping and batch size. Prints one line per epoch with its time and the test accuracy,
for speed and accuracy side by side with the C program.

    /usr/bin/python3 tools/replica/vit.py [--data DIR] [--epochs N] [--limit N] [--threads N] [--patch 7] ...

The random streams differ from the C program's (PyTorch's generator), so the runs match in kind, not bit
for bit. --limit N uses the first N images of each split (for timing a part of an epoch).
"""
import argparse
import gzip
import math
import os
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vit_model  # noqa: E402

MEAN, STD = 0.2860, 0.3530


def read_idx(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise SystemExit("%s: not an unsigned-byte IDX file" % path)
    nd = data[3]
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * nd).reshape(dims)


def load(d, split, limit):
    stem = "train" if split == "train" else "t10k"
    def find(name):
        p = os.path.join(d, name)
        return p + ".gz" if os.path.exists(p + ".gz") else p
    x = read_idx(find(stem + "-images-idx3-ubyte"))
    y = read_idx(find(stem + "-labels-idx1-ubyte"))
    if limit:
        x, y = x[:limit], y[:limit]
    x = (torch.from_numpy(x.astype(np.float32)) / 255.0 - MEAN) / STD
    return x.unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def augment(x, g, crop, flip_on):
    """random crop of the image padded by crop pixels (padding at the normalized value of a black pixel),
    random flip when flip_on, as one gather over the batch"""
    B = x.shape[0]
    pad = torch.nn.functional.pad(x, (crop, crop, crop, crop), value=(0.0 - MEAN) / STD)
    dy = torch.randint(0, 2 * crop + 1, (B, 1), generator=g)
    dx = torch.randint(0, 2 * crop + 1, (B, 1), generator=g)
    flip = torch.randint(0, 2, (B, 1), generator=g).bool() & flip_on
    r = torch.arange(28).unsqueeze(0)
    rows = dy + r
    cols = torch.where(flip, dx + 27 - r, dx + r)
    b = torch.arange(B).view(B, 1, 1)
    return pad[b, 0, rows.unsqueeze(2), cols.unsqueeze(1)].unsqueeze(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=36)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--patch", type=int, default=7)
    ap.add_argument("--patch-kernel", type=int, default=0,
                    help="the patch embedding's kernel K (0 = --patch: none; K > P overlaps the patches)")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--mlp", type=int, default=256)
    ap.add_argument("--crop", type=int, default=1)
    ap.add_argument("--no-flip", action="store_true")
    ap.add_argument("--label-smoothing", type=float, default=0.0,
                    help="cross-entropy's label smoothing (the printed loss is the smoothed one, as the C program's)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    xtr, ytr = load(a.data, "train", a.limit)
    xte, yte = load(a.data, "test", a.limit)
    m = vit_model.ViT(28, 1, a.patch, a.dim, a.heads, a.blocks, a.mlp, 10, patch_kernel=a.patch_kernel)
    opt = torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=a.wd)
    steps = (len(xtr) + a.batch - 1) // a.batch
    total, warm = steps * a.epochs, steps * a.warmup
    def lr_at(t):
        if t < warm:
            return a.lr * (t + 1) / warm
        u = min(1.0, (t - warm) / max(1, total - warm))
        return 0.01 * a.lr + 0.5 * (a.lr - 0.01 * a.lr) * (1 + math.cos(math.pi * u))
    print("replica: %d parameters, %d threads, %d train / %d test images" %
          (sum(p.numel() for p in m.parameters()), a.threads, len(xtr), len(xte)), flush=True)
    t = 0
    for ep in range(a.epochs):
        t0 = time.time()
        m.train()
        perm = torch.randperm(len(xtr), generator=g)
        lsum, ok = 0.0, 0
        for s in range(steps):
            idx = perm[s * a.batch:(s + 1) * a.batch]
            x, y = augment(xtr[idx], g, a.crop, not a.no_flip), ytr[idx]
            for grp in opt.param_groups:
                grp["lr"] = lr_at(t)
            logits = m(x)
            loss = torch.nn.functional.cross_entropy(logits, y, label_smoothing=a.label_smoothing)
            opt.zero_grad()
            loss.backward()
            if a.clip > 0:
                torch.nn.utils.clip_grad_norm_(m.parameters(), a.clip)
            opt.step()
            t += 1
            lsum += loss.item() * len(idx)
            ok += (logits.argmax(1) == y).sum().item()
        t_train = time.time() - t0
        m.eval()
        with torch.no_grad():
            correct = sum((m(xte[i:i + 250]).argmax(1) == yte[i:i + 250]).sum().item() for i in range(0, len(xte), 250))
        print("Epoch %d/%d - %.1fs (train %.1fs) - loss: %.4f - acc: %.4f - test_acc: %.4f" %
              (ep + 1, a.epochs, time.time() - t0, t_train, lsum / len(xtr), ok / len(xtr), correct / len(xte)),
              flush=True)


if __name__ == "__main__":
    main()
