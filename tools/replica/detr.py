"""detr.py — the PyTorch 1.13 replica of `attn detect train`: the same detector (patch embedding + learned
positions, post-norm Transformer encoder blocks with bias-free attention, decoder blocks over learned object
queries with unmasked self-attention and cross-attention to the patches, a class head over K+1 and a box
MLP with a sigmoid), the same kind of canvases (56x56, 1-3 items at random places, tight boxes, overlap IoU
at most 0.2, the brighter pixel wins), the same set loss (Hungarian matching on 1·class + 5·L1 + 2·GIoU
costs, cross-entropy with "no object" weighted 0.1, L1 and GIoU over the batch's targets; with --aux 1, the
default, after every decoder block through the shared heads, summed, as DETR's auxiliary losses), AdamW, warm-up
+ cosine per step, gradient clipping, batch size. Prints one line per epoch with its time, f1 and mean_iou
(scored as `attn detect eval` scores), for speed and accuracy side by side with the C program.

    /usr/bin/python3 tools/replica/detr.py [--data DIR] [--epochs N] [--canvases N] [--max-steps N] ...

The random streams differ from the C program's, so the runs match in kind, not bit for bit. The matching
is exact: with Q queries and at most 3 targets every assignment is enumerated (Q!/(Q-M)! of them), as one
tensor operation per image.
"""
import argparse
import gzip
import itertools
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

S, MAX_ITEMS, MEAN, STD = 56, 3, 0.10, 0.28


def read_idx(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise SystemExit("%s: not an unsigned-byte IDX file" % path)
    nd = data[3]
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * nd).reshape(dims)


def load(d, stem):
    def find(name):
        p = os.path.join(d, name)
        return p + ".gz" if os.path.exists(p + ".gz") else p
    return read_idx(find(stem + "-images-idx3-ubyte")), read_idx(find(stem + "-labels-idx1-ubyte"))


def tight(img):
    ys, xs = np.nonzero(img)
    if len(xs) == 0:
        return 0, 0, img.shape[1] - 1, img.shape[0] - 1
    return xs.min(), ys.min(), xs.max(), ys.max()


def pixel_iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = iw * ih if iw > 0 and ih > 0 else 0
    aa = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    ab = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (aa + ab - inter)


def canvas(images, labels, rng):
    """one canvas: pixels (S,S) uint8, labels, boxes (cx, cy, w, h) in canvas units"""
    c = np.zeros((S, S), np.uint8)
    n, R = 1 + rng.integers(MAX_ITEMS), images.shape[1]
    placed, labs, boxes = [], [], []
    for _ in range(n):
        k = rng.integers(len(images))
        img = images[k]
        x0, y0, x1, y1 = tight(img)
        for _ in range(64):
            ox, oy = rng.integers(S - R + 1), rng.integers(S - R + 1)
            box = (ox + x0, oy + y0, ox + x1, oy + y1)
            if all(pixel_iou(box, p) <= 0.2 for p in placed):
                break
        else:
            continue
        np.maximum(c[oy:oy + R, ox:ox + R], img, out=c[oy:oy + R, ox:ox + R])
        placed.append(box)
        labs.append(int(labels[k]))
        boxes.append(((box[0] + box[2] + 1) / 2 / S, (box[1] + box[3] + 1) / 2 / S,
                      (box[2] - box[0] + 1) / S, (box[3] - box[1] + 1) / S))
    return c, labs, boxes


def batch(images, labels, rng, B):
    xs, tl, tb = [], [], []
    for _ in range(B):
        c, l, b = canvas(images, labels, rng)
        xs.append(c)
        tl.append(torch.tensor(l, dtype=torch.long))
        tb.append(torch.tensor(b, dtype=torch.float32).view(-1, 4))
    x = (torch.from_numpy(np.stack(xs).astype(np.float32)) / 255.0 - MEAN) / STD
    return x.unsqueeze(1), tl, tb


class MHA(nn.Module):
    """d2l's MultiHeadAttention without biases: q, k, v, o projections, heads split by columns; causal: query t
    sees keys 0..t (the decoder's masked self-attention, as tools/replica/caption.py uses it)"""
    def __init__(self, D, H):
        super().__init__()
        self.H = H
        self.q, self.k, self.v, self.o = (nn.Linear(D, D, bias=False) for _ in range(4))

    def forward(self, x, y, causal=False):
        B, T, D = x.shape
        S_, H = y.shape[1], self.H
        q = self.q(x).view(B, T, H, D // H).transpose(1, 2)
        k = self.k(y).view(B, S_, H, D // H).transpose(1, 2)
        v = self.v(y).view(B, S_, H, D // H).transpose(1, 2)
        s = q @ k.transpose(-1, -2) / math.sqrt(D // H)
        if causal:
            s = s.masked_fill(torch.ones(T, S_, dtype=torch.bool).triu(1), float("-inf"))
        w = torch.softmax(s, dim=-1)
        self.weights = w
        return self.o((w @ v).transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    """post-norm: self-attention (causal or not), [cross-attention], feed-forward, each followed by add & norm"""
    def __init__(self, D, F_, H, decoder, causal=False):
        super().__init__()
        self.causal = causal
        self.sa, self.ln1 = MHA(D, H), nn.LayerNorm(D)
        self.ca = MHA(D, H) if decoder else None
        self.ln2 = nn.LayerNorm(D) if decoder else None
        self.ff = nn.Sequential(nn.Linear(D, F_), nn.ReLU(), nn.Linear(F_, D))
        self.ln3 = nn.LayerNorm(D)

    def forward(self, x, enc=None):
        x = self.ln1(x + self.sa(x, x, self.causal))
        if self.ca is not None:
            x = self.ln2(x + self.ca(x, enc))
        return self.ln3(x + self.ff(x))


class Detector(nn.Module):
    def __init__(self, P, Q, K, D, H, F_, Le, Ld, patch_kernel=0):
        super().__init__()
        Np = (S // P) ** 2
        k = patch_kernel or P                      # attn_detr_config.patch_kernel: 0 or P for none
        assert k >= P and (k - P) % 2 == 0 and k <= 3 * P
        self.patch = nn.Conv2d(1, D, k, P, padding=(k - P) // 2)
        self.pos = nn.Parameter(torch.randn(Np, D) * 0.02)
        self.enc = nn.ModuleList(Block(D, F_, H, False) for _ in range(Le))
        self.query = nn.Parameter(torch.randn(Q, D))
        self.dec = nn.ModuleList(Block(D, F_, H, True) for _ in range(Ld))
        self.cls = nn.Linear(D, K + 1)
        self.fc1, self.fc2 = nn.Linear(D, D), nn.Linear(D, 4)
        ffn = {id(b.ff[i]) for b in list(self.enc) + list(self.dec) for i in (0, 2)}
        for mod in self.modules():      # Xavier weights; the feed-forward keeps nn.Linear's biases, the heads zero
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                if mod.bias is not None and id(mod) not in ffn:
                    nn.init.zeros_(mod.bias)

    def forward(self, x, every=False):
        """the heads on the last decoder block's output; with every, a list of them after every block"""
        e = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        for b in self.enc:
            e = b(e)
        d = self.query.unsqueeze(0).expand(x.shape[0], -1, -1)
        outs = []
        for b in self.dec:
            d = b(d, e)
            if every:
                outs.append(self.heads(d))
        return outs if every else self.heads(d)

    def heads(self, d):
        return self.cls(d), torch.sigmoid(self.fc2(F.relu(self.fc1(d))))


def corners(b):
    return torch.stack([b[..., 0] - b[..., 2] / 2, b[..., 1] - b[..., 3] / 2,
                        b[..., 0] + b[..., 2] / 2, b[..., 1] + b[..., 3] / 2], -1)


def giou(a, b, eps=1e-7):
    """generalized IoU of a (..., 4) and b (..., 4) broadcast, as torchvision's generalized_box_iou_loss"""
    a, b = corners(a), corners(b)
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
    iou = inter / (union + eps)
    cw = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    ch = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    c = cw * ch
    return iou - (c - union) / (c + eps), iou


PERMS = {}


def match(cost):
    """the least-cost assignment of the M columns to distinct rows of cost (Q, M), by enumeration"""
    Q, M = cost.shape
    if M == 0:
        return torch.zeros(0, dtype=torch.long)
    if (Q, M) not in PERMS:
        PERMS[(Q, M)] = torch.tensor(list(itertools.permutations(range(Q), M)), dtype=torch.long)
    p = PERMS[(Q, M)]
    total = cost[p, torch.arange(M)].sum(1)
    return p[total.argmin()]


def set_loss(logits, boxes, tl, tb, K, eos=0.1):
    B, Q, _ = logits.shape
    tcls = torch.full((B, Q), K, dtype=torch.long)
    pb, gb = [], []
    with torch.no_grad():
        prob = logits.softmax(-1)
    for b in range(B):
        M = len(tl[b])
        if M == 0:
            continue
        with torch.no_grad():
            g, _ = giou(boxes[b].unsqueeze(1), tb[b].unsqueeze(0))
            cost = 5 * torch.cdist(boxes[b], tb[b], p=1) - prob[b][:, tl[b]] - 2 * g
            rows = match(cost)
        tcls[b, rows] = tl[b]
        pb.append(boxes[b, rows])
        gb.append(tb[b])
    w = torch.ones(K + 1)
    w[K] = eos
    ce = F.cross_entropy(logits.reshape(B * Q, -1), tcls.view(-1), weight=w)
    pb, gb = torch.cat(pb), torch.cat(gb)
    N = max(1, len(gb))
    l1 = (pb - gb).abs().sum() / N
    gl = (1 - giou(pb, gb)[0]).sum() / N
    return ce + 5 * l1 + 2 * gl, (ce.item(), l1.item(), gl.item())


def score(logits, boxes, tl, tb, K):
    """tp, predictions, items, matched, sum of matched IoU: as cmd_detect.c scores"""
    tp = preds = items = matched = 0
    isum = 0.0
    cls = logits.argmax(-1)
    for b in range(len(tl)):
        used = (cls[b] != K).nonzero().view(-1)
        preds += len(used)
        items += len(tl[b])
        if len(used) == 0 or len(tl[b]) == 0:
            continue
        _, iou = giou(boxes[b, used].unsqueeze(1), tb[b].unsqueeze(0))
        n, M = iou.shape
        if n >= M:
            rows, cols = match(-iou), torch.arange(M)
        else:
            cols, rows = match(-iou.t()), torch.arange(n)
        for r, c in zip(rows.tolist(), cols.tolist()):
            v = iou[r, c].item()
            matched += 1
            isum += v
            tp += v >= 0.5 and cls[b, used[r]].item() == tl[b][c].item()
    return tp, preds, items, matched, isum


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--canvases", type=int, default=20000)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--aux", type=int, default=1)
    ap.add_argument("--wd", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--clip", type=float, default=0.1)
    ap.add_argument("--patch", type=int, default=7)
    ap.add_argument("--patch-kernel", type=int, default=0,
                    help="the patch embedding's kernel K (0 = --patch: none; K > P overlaps the patches)")
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--dim", type=int, default=96)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=192)
    ap.add_argument("--enc-blocks", type=int, default=2)
    ap.add_argument("--dec-blocks", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    xtr, ytr = load(a.data, "train")
    xte, yte = load(a.data, "t10k")
    K = 10
    m = Detector(a.patch, a.queries, K, a.dim, a.heads, a.ffn, a.enc_blocks, a.dec_blocks, patch_kernel=a.patch_kernel)
    opt = torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=a.wd)
    steps = (a.canvases + a.batch - 1) // a.batch
    total = steps * a.epochs if not a.max_steps else min(steps * a.epochs, a.max_steps)
    warm = min(steps * a.warmup, total // 2)

    def lr_at(t):
        if t < warm:
            return a.lr * (t + 1) / warm
        u = min(1.0, (t - warm) / max(1, total - warm))
        return 0.01 * a.lr + 0.5 * (a.lr - 0.01 * a.lr) * (1 + math.cos(math.pi * u))
    test_rng = np.random.default_rng(a.seed + 1000003)
    val = [batch(xte, yte, test_rng, min(64, a.val - i)) for i in range(0, a.val, 64)]
    print("replica: %d parameters, %d threads, batch %d, %d steps" %
          (sum(p.numel() for p in m.parameters()), a.threads, a.batch, total), flush=True)
    t = 0
    while t < total:
        t0, t_data, lsum, parts, seen = time.time(), 0.0, 0.0, np.zeros(3), 0
        for s in range(steps):
            if t >= total:
                break
            td = time.time()
            x, tl, tb = batch(xtr, ytr, rng, min(a.batch, a.canvases - s * a.batch))
            t_data += time.time() - td
            for grp in opt.param_groups:
                grp["lr"] = lr_at(t)
            outs = m(x, every=True)
            if not a.aux:
                outs = outs[-1:]
            loss = 0
            for logits, boxes in outs:          # each block's heads matched on their own; parts: the last's
                lj, p = set_loss(logits, boxes, tl, tb, K)
                loss = loss + lj
            opt.zero_grad()
            loss.backward()
            if a.clip > 0:
                torch.nn.utils.clip_grad_norm_(m.parameters(), a.clip)
            opt.step()
            t += 1
            lsum += loss.item() * len(tl)
            parts += np.array(p) * len(tl)
            seen += len(tl)
        t_train = time.time() - t0
        with torch.no_grad():
            r = np.zeros(5)
            for x, tl, tb in val:
                lg, bx = m(x)
                r += score(lg, bx, tl, tb, K)
        f1 = 2 * r[0] / max(1, r[1] + r[2])
        print("Epoch %.4g - %.1fs (train %.1fs, of which canvases %.1fs) - loss: %.4f (ce %.4f l1 %.4f giou %.4f) - "
              "f1: %.3f - mean_iou: %.3f (%d test canvases)" %
              (t / steps, time.time() - t0, t_train, t_data, lsum / seen, *(parts / seen), f1,
               r[4] / max(1, r[3]), a.val), flush=True)


if __name__ == "__main__":
    main()
