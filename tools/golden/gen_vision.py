"""gen_vision.py — writes the golden files of the Vision Transformer (tests/golden/vision_*.safetensors).

    /usr/bin/python3 tools/golden/gen_vision.py [outdir]       (default: tests/golden next to this tree)

Computed in float64 with PyTorch 1.13 from inputs and parameters first rounded to float32 (the C code reads
the float32 copies), stored as float32. Gradients come from autograd of sum(output · dout) with a random
dout stored next to them (the model's: of its mean cross-entropy). Seeds are fixed.

Files:
  vision_layers.safetensors  GELU (exact erf form), patch embedding (Conv2d with stride = kernel, 3 channels,
                             a non-square image), class token + learned positions, 3 steps of AdamW
  vision_patch_kernel.safetensors
                             the overlapping patch embedding: Conv2d(C, D, kernel_size=K, stride=P,
                             padding=(K-P)/2), cases a..d (C 3 and 1, square and not, K > P and K == P):
                             "<case>.x|w|b|y|dy|dx|dw|db", the sizes in the metadata
  vision_label_smoothing.safetensors
                             cross-entropy with label smoothing (CrossEntropyLoss(label_smoothing=eps,
                             reduction='none')): "ls.logits" (7, 10), "ls.targets", per eps in 0.1 and 0.3
                             "ls<eps·10>.loss" (7) and "ls<eps·10>.dlogits" of sum(loss · "ls.dloss")
  vision_model.safetensors   a tiny ViT (tools/replica/vit_model.py, the model of attn/vit.h): its
                             parameters under the checkpoint's names with the config in the metadata (so
                             attn_vit_load reads the file), 5 images, labels, logits, mean loss and the
                             gradient of every parameter ("grad." + name)
  vision_model_kernel.safetensors
                             the same with patch_kernel 8 (overlapping patches, padding 2; in the metadata)
"""
import os
import sys

os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "replica"))
import st  # noqa: E402
import vit_model  # noqa: E402

torch.set_default_dtype(torch.float64)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "tests", "golden")


def f32(t):
    """float32-rounded copy in float64 (what the C side reads)."""
    return t.detach().float().double()


def layers():
    g = torch.Generator().manual_seed(15)
    out = {}
    # GELU over a range that reaches both tails
    x = f32(torch.linspace(-7, 7, 57) + 0.01 * torch.randn(57, generator=g)).requires_grad_()
    y = torch.nn.functional.gelu(x)
    dy = f32(torch.randn(57, generator=g))
    (y * dy).sum().backward()
    out.update({"gelu.x": x, "gelu.y": y, "gelu.dy": dy, "gelu.dx": x.grad})

    # patch embedding: 3 channels, 8x12 image, patch 4, D 5
    conv = torch.nn.Conv2d(3, 5, 4, stride=4)
    with torch.no_grad():
        conv.weight.copy_(f32(conv.weight.normal_(generator=g) * 0.3))
        conv.bias.copy_(f32(conv.bias.normal_(generator=g) * 0.3))
    x = f32(torch.randn(2, 3, 8, 12, generator=g)).requires_grad_()
    y = conv(x).flatten(2).transpose(1, 2)                    # (B, Np, D)
    dy = f32(torch.randn(*y.shape, generator=g))
    (y * dy).sum().backward()
    out.update({"patch.x": x, "patch.w": conv.weight.reshape(5, -1), "patch.b": conv.bias, "patch.y": y,
                "patch.dy": dy, "patch.dx": x.grad, "patch.dw": conv.weight.grad.reshape(5, -1),
                "patch.db": conv.bias.grad})

    # class token and positions: B 2, N 3, D 4
    cls = f32(torch.randn(4, generator=g)).requires_grad_()
    pos = f32(torch.randn(4, 4, generator=g)).requires_grad_()
    x = f32(torch.randn(2, 3, 4, generator=g)).requires_grad_()
    y = torch.cat([cls.expand(2, 1, 4), x], dim=1) + pos
    dy = f32(torch.randn(2, 4, 4, generator=g))
    (y * dy).sum().backward()
    out.update({"tok.cls": cls, "tok.pos": pos, "tok.x": x, "tok.y": y, "tok.dy": dy, "tok.dx": x.grad,
                "tok.dcls": cls.grad, "tok.dpos": pos.grad})

    # AdamW: 3 steps, lr 0.01, weight decay 0.1, PyTorch's defaults otherwise
    p = torch.nn.Parameter(f32(torch.randn(37, generator=g)))
    out["adamw.p0"] = p.detach().clone()
    opt = torch.optim.AdamW([p], lr=0.01, weight_decay=0.1)
    for s in range(3):
        gr = f32(torch.randn(37, generator=g))
        out["adamw.g%d" % s] = gr
        p.grad = gr.clone()
        opt.step()
    out["adamw.p3"] = p.detach().clone()
    st.save(os.path.join(OUT, "vision_layers.safetensors"), {k: v.detach().float() for k, v in out.items()})


def label_smoothing():
    g = torch.Generator().manual_seed(152)
    logits = f32(torch.randn(7, 10, generator=g) * 3)
    logits[6] = f32(torch.linspace(-40, 40, 10))              # a wide row: the log-sum-exp must not overflow
    targets = torch.tensor([0, 3, 9, 9, 5, 1, 0])
    dloss = f32(torch.rand(7, generator=g) + 0.5)
    out = {"ls.logits": logits, "ls.targets": targets.int(), "ls.dloss": dloss}
    for eps in (0.1, 0.3):
        x = logits.clone().requires_grad_()
        loss = torch.nn.CrossEntropyLoss(label_smoothing=eps, reduction="none")(x, targets)
        (loss * dloss).sum().backward()
        tag = "ls%d" % round(eps * 10)
        out[tag + ".loss"] = loss
        out[tag + ".dlogits"] = x.grad
    st.save(os.path.join(OUT, "vision_label_smoothing.safetensors"),
            {k: (v.detach().float() if v.dtype == torch.float64 else v) for k, v in out.items()})


# (name, B, C, Hi, Wi, P, K, D)
PATCH_CASES = [("a", 2, 3, 8, 12, 4, 8, 5),     # 3 channels, not square, pad 2
               ("b", 2, 1, 14, 21, 7, 13, 4),   # the ViT's patch 7 with kernel 13, pad 3
               ("c", 2, 1, 8, 12, 4, 4, 3),     # K == P through the kernel bind
               ("d", 1, 3, 4, 6, 2, 6, 2)]      # K = 3P, the largest: pad P, windows to the neighbours' far side


def patch_kernel():
    g = torch.Generator().manual_seed(151)
    out = {}
    meta = {}
    for name, B, C, Hi, Wi, P, K, D in PATCH_CASES:
        conv = torch.nn.Conv2d(C, D, K, stride=P, padding=(K - P) // 2)
        with torch.no_grad():
            conv.weight.copy_(f32(conv.weight.normal_(generator=g) * 0.3))
            conv.bias.copy_(f32(conv.bias.normal_(generator=g) * 0.3))
        x = f32(torch.randn(B, C, Hi, Wi, generator=g)).requires_grad_()
        y = conv(x).flatten(2).transpose(1, 2)                # (B, Np, D)
        assert y.shape[1] == (Hi // P) * (Wi // P)
        dy = f32(torch.randn(*y.shape, generator=g))
        (y * dy).sum().backward()
        out.update({name + ".x": x, name + ".w": conv.weight.reshape(D, -1), name + ".b": conv.bias,
                    name + ".y": y, name + ".dy": dy, name + ".dx": x.grad,
                    name + ".dw": conv.weight.grad.reshape(D, -1), name + ".db": conv.bias.grad})
        meta[name] = " ".join(str(v) for v in (B, C, Hi, Wi, P, K, D))
    st.save(os.path.join(OUT, "vision_patch_kernel.safetensors"), {k: v.detach().float() for k, v in out.items()},
            metadata=meta)


def model(patch_kernel=0, fname="vision_model.safetensors"):
    torch.manual_seed(7)
    cfg = dict(image=8, channels=1, patch=4, dim=8, heads=2, blocks=2, mlp=16, classes=3)
    if patch_kernel:
        cfg["patch_kernel"] = patch_kernel
    m = vit_model.ViT(**cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(f32(p + 0.05 * torch.randn_like(p)))      # LayerNorms away from (1, 0), biases nonzero
    g = torch.Generator().manual_seed(16)
    x = f32(torch.randn(5, 1, 8, 8, generator=g))
    labels = torch.tensor([0, 2, 1, 1, 0])
    logits = m(x)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    out = {}
    for name, p in vit_model.checkpoint_items(m):
        out[name] = p
    for name, p in vit_model.checkpoint_items(m, grads=True):
        out["grad." + name] = p
    out["input.images"] = x
    out["out.logits"] = logits
    out["out.loss"] = loss.reshape(1)
    tensors = {k: v.detach().float() for k, v in out.items()}
    tensors["input.labels"] = labels.int()
    meta = {"model": "vit"}
    meta.update({k: str(v) for k, v in cfg.items()})
    st.save(os.path.join(OUT, fname), tensors, metadata=meta)


if __name__ == "__main__":
    layers()
    patch_kernel()
    label_smoothing()
    model()
    model(patch_kernel=8, fname="vision_model_kernel.safetensors")
    print("wrote vision_layers, vision_patch_kernel, vision_label_smoothing, vision_model and vision_model_kernel "
          "(.safetensors) in",
          os.path.normpath(OUT))
