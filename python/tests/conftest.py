"""Shared float64 reference math for the attn tests (NumPy only)."""
import numpy as np
import pytest


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def keep_mask(B, H, T, S, causal=False, valid_lens=None, mask=None, bias=None):
    """(B,H,T,S) booleans of the keys each row sees, and the float64 bias, by the library's rules."""
    keep = np.ones((B, H, T, S), bool)
    if causal:
        keep &= np.arange(S)[None, :] <= np.arange(T)[:, None] + (S - T)
    if valid_lens is not None:
        vl = np.asarray(valid_lens)
        lens = vl[:, None, None, None] if vl.ndim == 1 else vl[:, None, :, None]
        keep &= np.arange(S)[None, None, None, :] < lens
    if mask is not None:
        keep &= np.broadcast_to(np.asarray(mask, bool).reshape((1,) * (4 - np.ndim(mask)) + np.shape(mask)),
                                (B, H, T, S))
    b = np.zeros((B, H, T, S))
    if bias is not None:
        bb = np.asarray(bias, np.float64)
        b = b + bb.reshape((1,) * (4 - bb.ndim) + bb.shape)
        keep &= ~np.isneginf(b)
    return keep, b


def ref_sdpa(q, k, v, scale=None, **mask):
    """float64 forward: out, weights, lse; and the backward as a closure. q (B,H,T,D), k,v (B,Hkv,S,*)."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    B, H, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    g = H // Hkv
    kk, vv = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    sc = 1 / np.sqrt(D) if scale is None else scale
    keep, bias = keep_mask(B, H, T, S, **mask)
    x = sc * np.einsum("bhtd,bhsd->bhts", q, kk) + np.where(keep, bias, 0)
    x = np.where(keep, x, -np.inf)
    m = x.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.where(keep, np.exp(x - m), 0)
    s = e.sum(-1, keepdims=True)
    p = np.where(s > 0, e / np.where(s > 0, s, 1), 0)
    out = np.einsum("bhts,bhsd->bhtd", p, vv)
    with np.errstate(divide="ignore"):
        lse = np.where(s[..., 0] > 0, m[..., 0] + np.log(np.where(s[..., 0] > 0, s[..., 0], 1)), -np.inf)

    def backward(dout):
        dout = np.asarray(dout, np.float64)
        dv = np.einsum("bhts,bhtd->bhsd", p, dout)
        dp = np.einsum("bhtd,bhsd->bhts", dout, vv)
        ds = p * (dp - (dp * p).sum(-1, keepdims=True))
        dq = sc * np.einsum("bhts,bhsd->bhtd", ds, kk)
        dk = sc * np.einsum("bhts,bhtd->bhsd", ds, q)
        fold = lambda a: a.reshape(B, Hkv, g, *a.shape[2:]).sum(2)   # noqa: E731
        return dq, fold(dk), fold(dv)

    return out, p, lse, backward


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
