"""attn.torch — attn's fused attention for PyTorch, with autograd.

    import attn.torch as at
    out = at.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None)
    mha = at.MultiheadAttention(embed_dim, num_heads, batch_first=True)     # drop-in for nn.MultiheadAttention

scaled_dot_product_attention has PyTorch 2.x's signature and semantics (a boolean attn_mask: True = may
attend; a float attn_mask is added to the scaled scores; is_causal is the top-left triangle; scale
defaults to 1/sqrt(E)), and runs on Debian's PyTorch 1.13, which has no such function. The tensors go to
the C kernels through data_ptr without copies when their last axis is contiguous (a (B,T,H,D) view
transposed to (B,H,T,D) included); others are copied. Memory grows with T + S, not T·S: only the output
and two floats per query row are kept for the backward. float32 or bfloat16 tensors (one dtype for query,
key and value; the output and gradients take it, products accumulate in fp32; bf16 runs on AMX tiles where
the CPU has them), on the CPU only.

Differences from PyTorch, on purpose: a query row whose keys are all masked gives zeros (PyTorch: NaN);
key/value heads that divide the query heads are grouped-query attention (PyTorch 2.x raises unless
enable_gqa); the float attn_mask gets no gradient.
"""
import ctypes

import torch
import torch.nn.functional as F

from . import _lib, _workspace
from ._lib import lib

__all__ = ["scaled_dot_product_attention", "attention", "MultiheadAttention"]


def _check_tensor(name, t):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_cpu:
        raise ValueError(f"{name}: attn runs on the CPU, got a tensor on {t.device}")
    if t.dtype not in (torch.float32, torch.bfloat16):
        raise TypeError(f"{name}: expected torch.float32 or torch.bfloat16, got {t.dtype}")


_BF16 = 6                        # attn_dtype ATTN_DTYPE_BF16: the tensors' storage is the bf16 bits


def _layout(t):
    """(b, h, t) element strides of a 4-D tensor the kernels can read in place, or None."""
    sb, sh, st, sd = t.stride()
    n = t.shape[3]
    if (sd != 1 and n > 1) or sb < 0 or sh < 0 or st < 0 or (t.shape[2] > 1 and 0 < st < n):
        return None
    return (sb, sh, st)


def _strided(t):
    lay = _layout(t)
    if lay is None:
        t = t.contiguous()
        lay = _layout(t)
    return t, lay


def _mask_layout(m, S):
    """A (B,H,T,S) mask view the kernels can read: element strides of its 3 outer axes."""
    sb, sh, st, ss = m.stride()
    if (ss != 1 and S > 1) or (m.shape[2] > 1 and 0 < st < S):
        m = m.contiguous()
        sb, sh, st, ss = m.stride()
    return m, (sb, sh, st)


def _forward(q, k, v, allow, bias, vlens, causal, scale, dropout, seed, need_weights, need_stats):
    """One forward on 4-D tensors: (out, stats or None, weights or None, descriptor, context)."""
    B, H, T, D = q.shape
    Hkv, S, Dv = k.shape[1], k.shape[2], v.shape[3]
    d = _lib.SdpaDesc()
    dp = ctypes.byref(d)
    _lib.check(lib.attn_sdpa_desc_init(dp, B, H, T, S, D, Dv), "scaled_dot_product_attention",
               f"sizes B={B} H={H} T={T} S={S} D={D} Dv={Dv}")
    d.Hkv = Hkv
    if scale is not None:
        d.scale = scale
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise TypeError(f"query, key, value: one dtype for all three, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dtype == torch.bfloat16:    # bf16 tensors: out and the gradients bf16 too, stats and weights fp32
        d.dtype = _BF16
    qs, lq = _strided(q)
    ks, lk = _strided(k)
    vs, lv = _strided(v)
    d.q.b, d.q.h, d.q.t = lq
    d.k.b, d.k.h, d.k.t = lk
    d.v.b, d.v.h, d.v.t = lv
    if dropout:
        d.dropout = dropout
        d.seed = seed
    mk = d.mask
    if causal:
        mk.causal = 1
    if vlens is not None:
        mk.valid_lens_kind = 1 if vlens.dim() == 1 else 2
        mk.valid_lens = vlens.data_ptr()
    if allow is not None:
        mk.allow = allow.data_ptr()
        mk.allow_stride[0], mk.allow_stride[1], mk.allow_stride[2] = allow.stride()[:3]
    if bias is not None:
        mk.bias = bias.data_ptr()
        mk.bias_stride[0], mk.bias_stride[1], mk.bias_stride[2] = bias.stride()[:3]
    c = lib.attn_ctx_default()
    cp = ctypes.byref(c)
    out = torch.empty((B, H, T, Dv), dtype=q.dtype)
    stats = torch.empty((B, H, T, 2), dtype=torch.float32) if need_stats else None
    weights = torch.empty((B, H, T, S), dtype=torch.float32) if need_weights else None
    n = ctypes.c_size_t()
    _lib.check(lib.attn_sdpa_workspace_size(cp, dp, 0, ctypes.byref(n)), "scaled_dot_product_attention")
    work, wp = _workspace(n.value)
    qp, kp, vp = qs.data_ptr(), ks.data_ptr(), vs.data_ptr()
    # the weights, when asked for, come from the same call (the fused kernels write them in one more pass)
    _lib.check(lib.attn_sdpa_forward(cp, dp, out.data_ptr(), None if stats is None else stats.data_ptr(),
                                     None if weights is None else weights.data_ptr(), qp, kp, vp, wp, n.value),
               "scaled_dot_product_attention")
    return out, stats, weights, d, c


class _SDPA(torch.autograd.Function):
    """out = softmax(scale·q kᵀ + bias, masked) v on 4-D tensors; saves out and the row statistics."""

    @staticmethod
    def forward(ctx, q, k, v, allow, bias, vlens, causal, scale, dropout, seed, need_weights):
        out, stats, weights, d, c = _forward(q, k, v, allow, bias, vlens, causal, scale, dropout, seed,
                                             need_weights, True)
        if need_weights:
            ctx.mark_non_differentiable(weights)
        ctx.save_for_backward(q, k, v, out)
        ctx.stats, ctx.desc, ctx.cctx, ctx.masks = stats, d, c, (allow, bias, vlens)
        return (out, weights) if need_weights else out

    @staticmethod
    def backward(ctx, dout, *unused):
        q, k, v, out = ctx.saved_tensors
        d, c = _lib.SdpaDesc.from_buffer_copy(ctx.desc), ctx.cctx     # a copy: backward may run again
        if dout is None:
            return (None,) * 11
        if dout.stride() != out.stride() or dout.dtype != out.dtype:
            dout = dout.to(out.dtype).contiguous()
        grads, srcs = [], []
        for x, lay in ((q, d.q), (k, d.k), (v, d.v)):
            g = torch.zeros_like(x, memory_format=torch.preserve_format)
            gl = _layout(g)
            if gl is None:
                g = torch.zeros(x.shape, dtype=x.dtype)
                gl = _layout(g)
            if (lay.b, lay.h, lay.t) != gl:
                x = x.contiguous() if _layout(x.contiguous()) == gl else torch.empty_strided(
                    g.shape, g.stride(), dtype=x.dtype).copy_(x)
                lay.b, lay.h, lay.t = gl
            grads.append(g)
            srcs.append(x)
        d.out.b, d.out.h, d.out.t = _layout(out)
        cp, dp = ctypes.byref(c), ctypes.byref(d)
        n = ctypes.c_size_t()
        _lib.check(lib.attn_sdpa_workspace_size(cp, dp, 1, ctypes.byref(n)), "scaled_dot_product_attention backward")
        work, wp = _workspace(n.value)
        dq, dk, dv = grads
        _lib.check(lib.attn_sdpa_backward(cp, dp, dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), dout.data_ptr(),
                                          srcs[0].data_ptr(), srcs[1].data_ptr(), srcs[2].data_ptr(), out.data_ptr(),
                                          ctx.stats.data_ptr(), wp, n.value),
                   "scaled_dot_product_attention backward")
        return (dq, dk, dv) + (None,) * 8


def _to4(name, t, lead):
    """A 4-D (B, H, rows, cols) view of t, whose leading dims broadcast to `lead` (the query's)."""
    if t.dim() < 2:
        raise ValueError(f"{name}: expected at least 2 dimensions (..., L, E), got shape {tuple(t.shape)}")
    if t.dim() == 2:
        return t[None, None]
    if t.dim() == 3:
        return t[:, None]
    if t.dim() == 4:
        return t
    return t.reshape((-1,) + tuple(t.shape[-3:]))


def _attention(query, key, value, allow, bias, vlens, causal, scale, dropout_p, need_weights):
    if query.dim() != key.dim() or query.dim() != value.dim():
        raise ValueError(f"query, key, value: expected the same number of dimensions, got {query.dim()}, "
                         f"{key.dim()} and {value.dim()}")
    q, k, v = _to4("query", query, None), _to4("key", key, None), _to4("value", value, None)
    B, H, T, D = q.shape
    if k.shape[3] != D:
        raise ValueError(f"key: expected a last dimension E = {D} (from query), got shape {tuple(key.shape)}")
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(f"value: expected the leading shape of key {tuple(key.shape[:-1])}, got {tuple(value.shape)}")
    if k.shape[0] != B:
        if k.shape[0] != 1:
            raise ValueError(f"key: batch dimensions {tuple(key.shape[:-3])} do not match query's "
                             f"{tuple(query.shape[:-3])}")
        k, v = k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)
    if k.shape[1] == 0 or H % k.shape[1]:
        raise ValueError(f"key: {k.shape[1]} key/value heads do not divide the {H} query heads")
    seed = 0
    if dropout_p > 0:
        seed = int(torch.randint(0, 2 ** 62, (1,)).item())
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _SDPA.apply(q, k, v, allow, bias, vlens, causal, scale, float(dropout_p), seed, need_weights)
    out, _, weights, _, _ = _forward(q, k, v, allow, bias, vlens, causal, scale, float(dropout_p), seed,
                                     need_weights, False)
    return (out, weights) if need_weights else out


def _mask4(attn_mask, lead, B, H, T, S, name="attn_mask"):
    """attn_mask broadcast to the query's leading dims + (L, S), as a 4-D (B,H,T,S) strided view."""
    m = attn_mask
    try:
        m = m.expand(tuple(lead) + (T, S))
    except RuntimeError:
        raise ValueError(f"{name}: shape {tuple(attn_mask.shape)} does not broadcast to "
                         f"{tuple(lead) + (T, S)}") from None
    m = _to4("attn_mask", m, None)
    return _mask_layout(m, S)[0]


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """PyTorch 2.x's F.scaled_dot_product_attention, on attn's fused kernels, with autograd.

    query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev). attn_mask broadcastable to
    (..., L, S): boolean (True = take part in attention) or float (added to the scores). is_causal: query
    i sees keys j <= i (top-left, as PyTorch; not together with attn_mask). dropout_p applies whenever it
    is > 0, as in PyTorch's functional form; its mask is drawn from torch's generator (torch.manual_seed
    repeats it)."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        _check_tensor(name, t)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p: expected a value in [0, 1), got {dropout_p}")
    if is_causal and attn_mask is not None:
        raise ValueError("attn_mask: is_causal=True takes no attn_mask (as in PyTorch)")
    if query.dim() < 2:
        raise ValueError(f"query: expected at least 2 dimensions (..., L, E), got shape {tuple(query.shape)}")
    shape = query.shape
    lead, L = shape[:-2], shape[-2]
    S = key.shape[-2] if key.dim() >= 2 else 0
    allow = bias = vlens = None
    causal = False
    if attn_mask is not None or (is_causal and L != S):
        B, H = _to4("query", query, lead).shape[:2]
    if attn_mask is not None:
        if not isinstance(attn_mask, torch.Tensor):
            raise TypeError(f"attn_mask: expected a torch.Tensor, got {type(attn_mask).__name__}")
        if attn_mask.dtype == torch.bool:
            allow = _mask4(attn_mask.view(torch.uint8), lead, B, H, L, S)
        elif attn_mask.is_floating_point():
            bias = _mask4(attn_mask.detach().to(torch.float32), lead, B, H, L, S)
        else:
            raise TypeError(f"attn_mask: expected a bool or float tensor, got {attn_mask.dtype}")
    if is_causal:
        if L == S:
            causal = True
        else:   # PyTorch's triangle is top-left: query i sees keys j <= i, i.e. valid lengths i + 1
            vlens = torch.clamp(torch.arange(1, L + 1, dtype=torch.int32), max=S).expand(B, L).contiguous()
    out = _attention(query, key, value, allow, bias, vlens, causal, scale, dropout_p, False)
    return out if query.dim() == 4 else out.reshape(tuple(lead) + (L, value.shape[-1]))


def attention(query, key, value, *, valid_lens=None, mask=None, bias=None, causal=False, scale=None, dropout_p=0.0,
              need_weights=False):
    """Every mask the library has, on (B,H,T,D) / (B,Hkv,S,D) / (B,Hkv,S,Dv) tensors (or (B,T,D) without
    heads), with autograd: valid_lens (B,) or (B,T) integers, keys s >= the length excluded (d2l's
    masked_softmax, without its fill value: a row with no key gives zeros); causal bottom-right aligned
    (query t sees keys s <= t + S - T, as a decoder with a key/value cache needs); mask boolean
    broadcastable to (B,H,T,S), True = may attend; bias float broadcastable to (B,H,T,S), added to the
    scaled scores. Returns out, or (out, weights) with need_weights (weights carry no gradient)."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        _check_tensor(name, t)
    if query.dim() not in (3, 4):
        raise ValueError(f"query: expected shape (B,H,T,D) or (B,T,D), got {tuple(query.shape)}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p: expected a value in [0, 1), got {dropout_p}")
    q4 = _to4("query", query, None)
    B, H, T = q4.shape[:3]
    S = key.shape[-2]
    lead = (B, H)
    vl = None
    if valid_lens is not None:
        vl = torch.as_tensor(valid_lens)
        if vl.dtype.is_floating_point or vl.dtype == torch.bool:
            raise TypeError(f"valid_lens: expected integers, got {vl.dtype}")
        if tuple(vl.shape) not in ((B,), (B, T)):
            raise ValueError(f"valid_lens: expected shape (B,) = ({B},) or (B,T) = ({B}, {T}), got {tuple(vl.shape)}")
        if vl.numel() and int(vl.min()) < 0:
            raise ValueError("valid_lens: lengths must not be negative")
        vl = vl.to(torch.int32).contiguous()
    allow = b = None
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask: expected a boolean tensor (True = may attend), got {mask.dtype}")
        allow = _mask4(mask.view(torch.uint8), lead, B, H, T, S, "mask")
    if bias is not None:
        if not bias.is_floating_point():
            raise TypeError(f"bias: expected a float tensor, got {bias.dtype}")
        b = _mask4(bias.detach().to(torch.float32), lead, B, H, T, S, "bias")
    res = _attention(query, key, value, allow, b, vl, bool(causal), scale, dropout_p, bool(need_weights))
    if query.dim() == 3:
        return (res[0][:, 0], res[1][:, 0]) if need_weights else res[:, 0]
    return res


class MultiheadAttention(torch.nn.MultiheadAttention):
    """torch.nn.MultiheadAttention with its attention on attn's fused kernels: the same constructor,
    parameters and state_dict, the same forward (query, key, value, key_padding_mask, need_weights,
    attn_mask, average_attn_weights, is_causal) and results. add_bias_kv and add_zero_attn fall back to
    PyTorch's own forward. The returned weights are the probabilities before dropout."""

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if self.bias_k is not None or self.add_zero_attn:
            return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                                   attn_mask=attn_mask, average_attn_weights=average_attn_weights)
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        if self.batch_first:     # (N, L, E): the projections below work on (N, L, E)
            q_in, k_in, v_in = query, key, value
        else:                    # (L, N, E) -> (N, L, E) views
            q_in, k_in, v_in = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        N, L, E = q_in.shape
        S = k_in.shape[1]
        Hh = self.num_heads
        hd = E // Hh
        if self._qkv_same_embed_dim:
            w, b = self.in_proj_weight, self.in_proj_bias
            if query is key and key is value:        # self-attention: one product, three strided views
                qkv = F.linear(q_in, w, b).view(N, L, 3, Hh, hd)
                q, k, v = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
            else:
                bq = bk = bv = None
                if b is not None:
                    bq, bk, bv = b[:E], b[E:2 * E], b[2 * E:]
                q = F.linear(q_in, w[:E], bq).view(N, L, Hh, hd).transpose(1, 2)
                if key is value:
                    kv = F.linear(k_in, w[E:], None if b is None else b[E:]).view(N, S, 2, Hh, hd)
                    k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
                else:
                    k = F.linear(k_in, w[E:2 * E], bk).view(N, S, Hh, hd).transpose(1, 2)
                    v = F.linear(v_in, w[2 * E:], bv).view(N, S, Hh, hd).transpose(1, 2)
        else:
            b = self.in_proj_bias
            bq = bk = bv = None
            if b is not None:
                bq, bk, bv = b[:E], b[E:2 * E], b[2 * E:]
            q = F.linear(q_in, self.q_proj_weight, bq).view(N, L, Hh, hd).transpose(1, 2)
            k = F.linear(k_in, self.k_proj_weight, bk).view(N, S, Hh, hd).transpose(1, 2)
            v = F.linear(v_in, self.v_proj_weight, bv).view(N, S, Hh, hd).transpose(1, 2)

        # masks: nn.MultiheadAttention's booleans mean "masked out" (the opposite of SDPA's)
        allow = bias = None
        causal = False
        if is_causal and attn_mask is None:
            if L != S:
                raise ValueError("is_causal: needs an attn_mask when L != S (as in PyTorch)")
            causal = True
        parts_bool, parts_float = [], []
        if attn_mask is not None:
            am = attn_mask
            if am.dim() == 3:
                if am.shape[0] != N * Hh:
                    raise ValueError(f"attn_mask: expected shape (L, S) or (N*num_heads, L, S) = "
                                     f"{(N * Hh, L, S)}, got {tuple(am.shape)}")
                am = am.view(N, Hh, L, S)
            elif am.dim() == 2:
                if tuple(am.shape) != (L, S):
                    raise ValueError(f"attn_mask: expected shape (L, S) = {(L, S)}, got {tuple(am.shape)}")
                am = am[None, None]
            else:
                raise ValueError(f"attn_mask: expected 2 or 3 dimensions, got shape {tuple(am.shape)}")
            (parts_bool if am.dtype == torch.bool else parts_float).append(am)
        if key_padding_mask is not None:
            kpm = key_padding_mask
            if tuple(kpm.shape) != (N, S):
                raise ValueError(f"key_padding_mask: expected shape (N, S) = {(N, S)}, got {tuple(kpm.shape)}")
            kpm = kpm[:, None, None, :]
            (parts_bool if kpm.dtype == torch.bool else parts_float).append(kpm)
        if parts_bool:
            keep = ~parts_bool[0]
            for p in parts_bool[1:]:
                keep = keep & ~p
            allow = _mask_layout(keep.view(torch.uint8).expand(N, Hh, L, S), S)[0]
        if parts_float:
            f = parts_float[0].detach().to(torch.float32)
            for p in parts_float[1:]:
                f = f + p.detach().to(torch.float32)
            bias = _mask_layout(f.expand(N, Hh, L, S), S)[0]
        dropout = self.dropout if self.training else 0.0
        seed = int(torch.randint(0, 2 ** 62, (1,)).item()) if dropout > 0 else 0
        res = _SDPA.apply(q.contiguous() if q.dtype != torch.float32 else q, k, v, allow, bias, None, causal,
                          None, float(dropout), seed, bool(need_weights))
        out, weights = res if need_weights else (res, None)
        out = out.transpose(1, 2).reshape(N, L, E)
        out = F.linear(out, self.out_proj.weight, self.out_proj.bias)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if unbatched:
            out = out.squeeze(1)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if unbatched:
                weights = weights.squeeze(0)
        return out, weights
