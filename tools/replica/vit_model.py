"""vit_model.py — the Vision Transformer of attn/vit.h in PyTorch 1.13, layer for layer: patch embedding
(Conv2d of stride P; kernel P, or K > P with padding (K-P)/2 for overlapping patches), class token and learned positions, pre-norm blocks (LayerNorm, multi-head
self-attention with q/k/v/o projections, LayerNorm, MLP with exact GELU), a final LayerNorm on the class
token and a linear head. Used by tools/golden/gen_vision.py (golden files) and tools/replica/vit.py (the
replica training).

checkpoint_items(model) lists the parameters under the C checkpoint's names and shapes (the patch
embedding's weight flattened to (D, C·K·K), the class token (D), the positions (T, D)).
"""
import math

import torch
from torch import nn


class MHA(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.h = heads
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.o_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x, want_weights=False):
        B, T, D = x.shape
        dh = D // self.h

        def split(t):
            return t.view(B, T, self.h, dh).transpose(1, 2)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)
        out = self.o_proj((w @ v).transpose(1, 2).reshape(B, T, D))
        return (out, w) if want_weights else out


class MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), MHA(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), MLP(dim, mlp)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, image=28, channels=1, patch=7, dim=128, heads=4, blocks=4, mlp=256, classes=10,
                 patch_kernel=0):
        super().__init__()
        n = (image // patch) ** 2
        k = patch_kernel or patch                  # attn_vit_config.patch_kernel: 0 or P for none
        assert k >= patch and (k - patch) % 2 == 0 and k <= 3 * patch
        self.patch_embed = nn.Conv2d(channels, dim, k, stride=patch, padding=(k - patch) // 2)
        self.cls_token = nn.Parameter(torch.zeros(dim))
        self.pos_embed = nn.Parameter(torch.zeros(n + 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02, a=-0.04, b=0.04)
        nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-0.04, b=0.04)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp) for _ in range(blocks)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)
        for b in self.blocks:
            for lin in (b.mlp.fc1, b.mlp.fc2):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        B, _, D = x.shape
        x = torch.cat([self.cls_token.expand(B, 1, D), x], dim=1) + self.pos_embed
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x[:, 0]))


def checkpoint_items(m, grads=False):
    for name, p in m.named_parameters():
        t = p.grad if grads else p
        if name == "patch_embed.weight":
            t = t.reshape(t.shape[0], -1)
        yield name, t
