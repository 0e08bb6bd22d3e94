"""gen_detr.py — writes the golden file of the detection box losses (tests/golden/detr_boxes.safetensors).

    /usr/bin/python3 tools/golden/gen_detr.py [outdir]       (default: tests/golden next to this tree)

Computed in float64 with PyTorch 1.13 from boxes first rounded to float32 (the C code reads the float32
copies), stored as float32. Generalized IoU is written here from its definition (Rezatofighi et al. 2019),
in the form of torchvision's generalized_box_iou_loss (eps 1e-7), since torchvision may be absent.
Gradients come from autograd of dl1 · L1 and dgiou · sum(1 - giou). Seed fixed.

Tensors: pred, target (n,4) as (cx, cy, w, h) — random pairs, overlapping, disjoint, nested, identical, with a
tied edge, and boxes of zero width or height; l1 (1), giou_loss (1), giou (n), dl1 (1), dgiou (1), l1.dpred, giou.dpred (n,4),
pairwise (n,n) the GIoU of every (pred[i], target[j]); crit.* DETR's set criterion on a small batch (inputs,
the matching, the three losses, the weighted loss and the gradients of logits and boxes).
"""
import os
import sys

os.environ["OMP_NUM_THREADS"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import st  # noqa: E402

torch.set_default_dtype(torch.float64)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "tests", "golden")
EPS = 1e-7


def f32(t):
    """float32-rounded copy in float64 (what the C side reads)."""
    return t.detach().float().double()


def corners(b):
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def giou(a, b):
    """GIoU of a (..., 4) and b (..., 4), broadcast, both (cx, cy, w, h)."""
    a, b = corners(a), corners(b)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = torch.max(a[..., :2], b[..., :2])
    rb = torch.min(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a + area_b - inter
    iou = inter / (union + EPS)
    lt_c = torch.min(a[..., :2], b[..., :2])
    rb_c = torch.max(a[..., 2:], b[..., 2:])
    wh_c = rb_c - lt_c
    area_c = wh_c[..., 0] * wh_c[..., 1]
    return iou - (area_c - union) / (area_c + EPS)


def criterion(g):
    """DETR's SetCriterion with its HungarianMatcher (cost and loss weights 1, 5, 2; eos_coef 0.1) on a
    batch of 3 images, 5 queries, 4 classes, 2, 0 and 3 targets; the matching by brute force over every
    assignment (the random costs have one optimum, so it is scipy's linear_sum_assignment's)."""
    import itertools
    B, Q, K, nt = 3, 5, 4, [2, 0, 3]
    logits = f32(2 * torch.randn(B, Q, K + 1, generator=g)).requires_grad_()
    boxes = f32(0.2 + 0.6 * torch.rand(B, Q, 4, generator=g))
    boxes[..., 2:] *= 0.5
    boxes.requires_grad_()
    labels = torch.randint(0, K, (sum(nt),), generator=g)
    tboxes = f32(0.2 + 0.6 * torch.rand(sum(nt), 4, generator=g))
    tboxes[:, 2:] *= 0.5
    w_ce, w_l1, w_giou, eos = 1.0, 5.0, 2.0, 0.1
    match = torch.full((B, Q), -1, dtype=torch.int32)
    t0 = 0
    with torch.no_grad():
        for b in range(B):
            M = nt[b]
            prob = logits[b].softmax(-1)
            tb, tl = tboxes[t0:t0 + M], labels[t0:t0 + M]
            cost = (w_l1 * (boxes[b][:, None, :] - tb[None]).abs().sum(-1) - w_ce * prob[:, tl]
                    - w_giou * giou(boxes[b][:, None, :], tb[None]))
            best, arg = None, None
            for rows in itertools.permutations(range(Q), M):
                c = sum(cost[r, j].item() for j, r in enumerate(rows))
                if best is None or c < best:
                    best, arg = c, rows
            for j, r in enumerate(arg or ()):
                match[b, r] = j
            t0 += M
    target_cls = torch.full((B, Q), K, dtype=torch.long)
    t0, src, tgt = 0, [], []
    for b in range(B):
        for q in range(Q):
            if match[b, q] >= 0:
                target_cls[b, q] = labels[t0 + match[b, q]]
                src.append((b, q))
                tgt.append(t0 + match[b, q].item())
        t0 += nt[b]
    weight = torch.ones(K + 1)
    weight[K] = eos
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, K + 1), target_cls.reshape(-1), weight)
    n = max(1, sum(nt))
    sb = torch.stack([boxes[b, q] for b, q in src])
    tb = tboxes[tgt]
    l1 = (sb - tb).abs().sum() / n
    gl = (1 - giou(sb, tb)).sum() / n
    loss = w_ce * ce + w_l1 * l1 + w_giou * gl
    dloss = 0.8
    (dloss * loss).backward()
    return {"crit.logits": logits, "crit.boxes": boxes, "crit.n_targets": torch.tensor(nt, dtype=torch.int32),
            "crit.labels": labels.int(), "crit.tboxes": tboxes, "crit.match": match, "crit.dloss": torch.tensor([dloss]),
            "crit.loss": loss.reshape(1), "crit.losses": torch.stack([ce, l1, gl]),
            "crit.dlogits": logits.grad, "crit.dboxes": boxes.grad}


def main():
    g = torch.Generator().manual_seed(15)
    n = 24
    centre = 0.2 + 0.6 * torch.rand(n, 2, generator=g)
    size = 0.05 + 0.4 * torch.rand(n, 2, generator=g)
    pred = torch.cat([centre, size], dim=1)
    target = torch.cat([centre + 0.15 * torch.randn(n, 2, generator=g),
                        (size * (0.6 + 0.8 * torch.rand(n, 2, generator=g)))], dim=1)
    target[:, 2:] = target[:, 2:].clamp(min=0.02)
    # special pairs: disjoint, nested, zero-width prediction, zero-height target, both of zero width
    pred[0], target[0] = torch.tensor([0.2, 0.2, 0.1, 0.1]), torch.tensor([0.8, 0.7, 0.2, 0.1])
    pred[1], target[1] = torch.tensor([0.5, 0.5, 0.6, 0.5]), torch.tensor([0.52, 0.47, 0.2, 0.1])
    pred[2], target[2] = torch.tensor([0.4, 0.5, 0.0, 0.3]), torch.tensor([0.45, 0.55, 0.3, 0.2])
    pred[3], target[3] = torch.tensor([0.4, 0.5, 0.2, 0.3]), torch.tensor([0.45, 0.55, 0.3, 0.0])
    pred[4], target[4] = torch.tensor([0.3, 0.3, 0.0, 0.2]), torch.tensor([0.7, 0.6, 0.0, 0.1])
    # identical boxes, and one sharing its left edge: every corner or one corner tied (gradient halves)
    pred[5], target[5] = torch.tensor([0.5, 0.4, 0.25, 0.5]), torch.tensor([0.5, 0.4, 0.25, 0.5])
    pred[6], target[6] = torch.tensor([0.5, 0.5, 0.5, 0.5]), torch.tensor([0.375, 0.5, 0.25, 0.125])
    pred, target = f32(pred).requires_grad_(), f32(target)
    dl1, dgiou = f32(torch.tensor([0.37])), f32(torch.tensor([1.3]))

    l1 = (pred - target).abs().sum()
    (dl1[0] * l1).backward()
    l1_d = pred.grad.clone()
    pred.grad = None
    gi = giou(pred, target)
    loss = (1 - gi).sum()
    (dgiou[0] * loss).backward()
    with torch.no_grad():
        pairwise = giou(pred[:, None, :], target[None, :, :])
    out = criterion(g)
    out.update({"pred": pred, "target": target, "l1": l1.reshape(1), "giou_loss": loss.reshape(1), "giou": gi,
           "dl1": dl1, "dgiou": dgiou, "l1.dpred": l1_d, "giou.dpred": pred.grad, "pairwise": pairwise})
    st.save(os.path.join(OUT, "detr_boxes.safetensors"), {k: v.detach().float() if v.is_floating_point() else v for k, v in out.items()},
            metadata={"generator": "tools/golden/gen_detr.py", "torch": torch.__version__})


if __name__ == "__main__":
    main()
