"""attn — neural attention from Python: NumPy in and out over libattn (ctypes), and `attn.torch` for
PyTorch autograd.

    import numpy as np, attn
    q = np.random.randn(2, 4, 10, 16).astype(np.float32)        # (B,H,T,D)
    out, lse = attn.sdpa(q, q, q, causal=True, return_lse=True)
    dq, dk, dv = attn.sdpa_backward(np.ones_like(out), q, q, q, *attn.sdpa(q, q, q, causal=True,
                                                                        return_stats=True), causal=True)

Arrays are float32 (a floating array of another dtype is refused with a TypeError naming it; lists are
converted). Shapes: q (B,H,T,D), k (B,Hkv,S,D), v (B,Hkv,S,Dv), or the same without the head axis. Inputs
whose last axis is contiguous are read where they lie, through their strides (a transposed (B,T,H,D)
view, a broadcast); others are copied first. Every error status of the library becomes an AttnError
whose message is the library's status string.
"""
import ctypes
import os
import tempfile
import threading

import numpy as np

from . import _lib
from ._lib import AttnError, lib

__all__ = ["AttnError", "version", "library_path", "set_num_threads", "get_num_threads", "set_isa", "get_isa",
           "cpu_supports", "set_blas_threads", "blas_core", "Context", "sdpa", "sdpa_backward", "logsumexp",
           "additive", "additive_backward", "softmax", "heatmap_png", "heatmap_array", "read_safetensors"]

library_path = _lib.path
_F32 = np.dtype(np.float32)
_ISAS = ("auto", "ref", "scalar", "avx2", "avx512", "amx", "avx512bf16")   # attn_isa's order


def version():
    """The version of the loaded libattn ("0.1.0")."""
    return lib.attn_version().decode()


# ---- threads and kernel paths --------------------------------------------------------------------


def set_num_threads(n):
    """Threads of the attention kernels for calls without a Context; n <= 0 = every core."""
    _lib.check(lib.attn_set_num_threads(int(n)), "set_num_threads")


def get_num_threads():
    return lib.attn_get_num_threads()


def _isa_code(name):
    if name not in _ISAS:
        raise ValueError(f"isa: expected one of {', '.join(_ISAS)}, got {name!r}")
    return _ISAS.index(name)


def set_isa(name):
    """Forces the kernel path for calls without a Context: 'auto', 'ref', 'scalar', 'avx2', 'avx512', 'amx',
    'avx512bf16'."""
    _lib.check(lib.attn_set_isa(_isa_code(name)), f"set_isa({name!r})")


def get_isa():
    """The kernel path in force ('avx512', ...; 'auto' already resolved)."""
    return lib.attn_isa_name(lib.attn_get_isa()).decode()


def cpu_supports(name):
    return bool(lib.attn_cpu_supports(_isa_code(name)))


def set_blas_threads(n):
    """Threads of OpenBLAS (the layers' matrix products), separate from the attention kernels'."""
    _lib.check(lib.attn_blas_set_num_threads(int(n)), "set_blas_threads")


def blas_core():
    return lib.attn_blas_core_name().decode()


class Context:
    """A kernel path and a thread count for one or more calls (ctx=...), instead of the process-wide
    setting. threads <= 0: every core."""

    def __init__(self, isa="auto", threads=0):
        self._c = _lib.Ctx()
        _lib.check(lib.attn_ctx_init(ctypes.byref(self._c), _isa_code(isa), int(threads)),
                   f"Context(isa={isa!r}, threads={threads})")

    @property
    def isa(self):
        return lib.attn_isa_name(self._c.isa).decode()

    @property
    def threads(self):
        return self._c.threads

    def __repr__(self):
        return f"attn.Context(isa={self.isa!r}, threads={self.threads})"


_COMPUTE = {"f32": 0, "bf16": 6}   # attn_dtype: ATTN_DTYPE_F32, ATTN_DTYPE_BF16


def _compute_code(compute):
    """attn_dtype of compute= ('f32' or 'bf16')."""
    try:
        return _COMPUTE[compute]
    except (KeyError, TypeError):
        raise ValueError(f"compute: expected 'f32' or 'bf16', got {compute!r}") from None


def _ctx(ctx):
    """A snapshot of the context a call runs on, so a workspace sized for it stays right."""
    if ctx is None:
        return lib.attn_ctx_default()
    if not isinstance(ctx, Context):
        raise TypeError(f"ctx: expected attn.Context or None, got {type(ctx).__name__}")
    return ctx._c


# ---- array helpers ---------------------------------------------------------------------------------


def _f32(name, a):
    """a as a float32 ndarray: lists are converted; floating arrays of another dtype are refused."""
    if isinstance(a, np.ndarray):
        if a.dtype != _F32:
            raise TypeError(f"{name}: expected float32, got {a.dtype}")
        return a
    try:
        return np.asarray(a, dtype=_F32)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected a float32 array, got {type(a).__name__} ({e})") from None


def _ptr(a):
    return a.ctypes.data


_tls = threading.local()
_WORK_KEEP = 1 << 20


def _workspace(nbytes):
    """(buffer, address) of at least nbytes: a per-thread buffer up to 1 MiB is kept and reused, so small
    calls allocate nothing but their outputs; larger ones get a buffer of their own."""
    c = getattr(_tls, "work", None)
    if c is not None and c[0] >= nbytes:
        return c[1], c[2]
    a = np.empty(max(nbytes, 1 << 16), np.uint8)
    c = (a.size, a, a.ctypes.data)
    if nbytes <= _WORK_KEEP:
        _tls.work = c
    return a, c[2]


def _layout4(a):
    """Element strides (b, h, t) of a 4-D float32 array usable by the kernels, or None when it must be
    copied: contiguous last axis, non-negative strides in whole elements, rows that do not partly
    overlap, aligned."""
    sb, sh, st, sd = a.strides
    n = a.shape[3]
    if (sd != 4 and n > 1) or sb < 0 or sh < 0 or st < 0 or (sb | sh | st) & 3 or not a.flags.aligned:
        return None
    st //= 4
    if a.shape[2] > 1 and 0 < st < n:
        return None
    return (sb // 4, sh // 4, st)


def _as4(name, a, dims):
    """(4-D view, squeezed?) for a tensor of shape (B,H,R,C) or (B,R,C)."""
    if a.ndim == 3:
        return a[:, None], True
    if a.ndim != 4:
        raise ValueError(f"{name}: expected shape {dims} or without the head axis, got {a.shape}")
    return a, False


def _strided(a):
    lay = _layout4(a)
    if lay is None:
        a = np.ascontiguousarray(a)
        lay = _layout4(a)
    return a, lay


def _mask_u8(name, m, B, H, T, S):
    """A boolean allow mask broadcast to (B,H,T,S) as uint8 with a contiguous last axis."""
    m = np.asarray(m)
    if m.dtype != np.bool_ and m.dtype != np.uint8:
        raise TypeError(f"{name}: expected a boolean array (True = may attend), got {m.dtype}")
    return _bcast(name, m.view(np.uint8), B, H, T, S)


def _bcast(name, m, B, H, T, S):
    if m.ndim > 4 or m.ndim < 1:
        raise ValueError(f"{name}: expected a shape that broadcasts to (B,H,T,S) = {(B, H, T, S)}, got {m.shape}")
    m = m.reshape((1,) * (4 - m.ndim) + m.shape)
    try:
        full = np.broadcast_to(m, (B, H, T, S))
    except ValueError:
        raise ValueError(f"{name}: shape {m.shape} does not broadcast to (B,H,T,S) = {(B, H, T, S)}") from None
    it = m.itemsize
    sb, sh, st, ss = full.strides
    if (ss != it and S > 1) or min(sb, sh, st) < 0 or (sb | sh | st) % it or (T > 1 and 0 < st // it < S):
        m = np.ascontiguousarray(np.broadcast_to(m, m.shape[:3] + (S,)))
        full = np.broadcast_to(m, (B, H, T, S))
        sb, sh, st, ss = full.strides
    return full, (sb // it, sh // it, st // it)


def _valid_lens(v, B, T):
    v = np.asarray(v)
    if v.dtype.kind not in "iu":
        raise TypeError(f"valid_lens: expected integers, got {v.dtype}")
    if v.shape == (B,):
        kind = 1
    elif v.shape == (B, T):
        kind = 2
    else:
        raise ValueError(f"valid_lens: expected shape (B,) = ({B},) or (B,T) = ({B}, {T}), got {v.shape}")
    if v.size and v.min() < 0:
        raise ValueError("valid_lens: lengths must not be negative")
    return np.ascontiguousarray(v, dtype=np.int32), kind


def _set_mask(mk, B, H, T, S, causal, valid_lens, mask, bias, keep):
    """Fills an attn_mask; `keep` collects the arrays its pointers refer to."""
    mk.causal = 1 if causal else 0
    if valid_lens is not None:
        vl, kind = _valid_lens(valid_lens, B, T)
        keep.append(vl)
        mk.valid_lens_kind = kind
        mk.valid_lens = _ptr(vl)
    if mask is not None:
        m, s = _mask_u8("mask", mask, B, H, T, S)
        keep.append(m)
        mk.allow = _ptr(m)
        mk.allow_stride[0], mk.allow_stride[1], mk.allow_stride[2] = s
    if bias is not None:
        bb = _f32("bias", bias)
        bb, s = _bcast("bias", bb, B, H, T, S)
        keep.append(bb)
        mk.bias = _ptr(bb)
        mk.bias_stride[0], mk.bias_stride[1], mk.bias_stride[2] = s


def _work(ctx, desc_ptr, pass_, sizer, what):
    """(address, bytes) of a workspace for the pass; the buffer stays alive in the thread's cache or in
    the returned holder."""
    n = ctypes.c_size_t()
    _lib.check(sizer(ctx, desc_ptr, pass_, ctypes.byref(n)), what)
    buf, addr = _workspace(n.value)
    return _Work(addr, buf), n.value


class _Work(int):
    """An address that keeps its buffer alive."""
    def __new__(cls, addr, buf):
        w = int.__new__(cls, addr)
        w.buf = buf
        return w


# ---- scaled dot-product attention ------------------------------------------------------------------


def _sdpa_setup(q, k, v, scale, causal, valid_lens, mask, bias, dropout, seed, keep):
    q4, squeeze = _as4("q", _f32("q", q), "(B,H,T,D)")
    k4, _ = _as4("k", _f32("k", k), "(B,Hkv,S,D)")
    v4, _ = _as4("v", _f32("v", v), "(B,Hkv,S,Dv)")
    B, H, T, D = q4.shape
    _, Hkv, S, Dk = k4.shape
    if k4.ndim != q4.ndim or k4.shape[0] != B or Dk != D:
        raise ValueError(f"k: expected shape (B, Hkv, S, D) with B = {B}, D = {D} (from q), got {k4.shape}")
    if v4.shape[:3] != k4.shape[:3]:
        raise ValueError(f"v: expected shape (B, Hkv, S, Dv) with (B, Hkv, S) = {k4.shape[:3]} (from k), "
                         f"got {v4.shape}")
    if Hkv == 0 or H % Hkv:
        raise ValueError(f"k: {Hkv} key/value heads do not divide the {H} query heads")
    Dv = v4.shape[3]
    d = _lib.SdpaDesc()
    _lib.check(lib.attn_sdpa_desc_init(ctypes.byref(d), B, H, T, S, D, Dv), "sdpa",
               f"sizes B={B} H={H} T={T} S={S} D={D} Dv={Dv}")
    d.Hkv = Hkv
    if scale is not None:
        d.scale = float(scale)
    q4, lq = _strided(q4)
    k4, lk = _strided(k4)
    v4, lv = _strided(v4)
    d.q.b, d.q.h, d.q.t = lq
    d.k.b, d.k.h, d.k.t = lk
    d.v.b, d.v.h, d.v.t = lv
    if dropout:
        d.dropout = float(dropout)
        d.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    _set_mask(d.mask, B, H, T, S, causal, valid_lens, mask, bias, keep)
    return d, q4, k4, v4, squeeze


def _sdpa_fast(q, k, v, scale, causal, ctx):
    """sdpa for contiguous 4-D float32 arrays and no mask but causal: the few checks and calls a small
    call needs (its overhead is what a tiny shape measures). None when the general path must run."""
    if (q.dtype is not _F32 and q.dtype != _F32) or k.dtype != _F32 or v.dtype != _F32 or k.ndim != 4 \
            or v.ndim != 4 or not (q.flags.c_contiguous and k.flags.c_contiguous and v.flags.c_contiguous):
        return None
    B, H, T, D = q.shape
    _, Hkv, S, Dk = k.shape
    if k.shape[0] != B or Dk != D or v.shape[:3] != k.shape[:3] or Hkv == 0 or H % Hkv:
        return None
    Dv = v.shape[3]
    d = _lib.SdpaDesc()
    dp = ctypes.byref(d)
    if lib.attn_sdpa_desc_init(dp, B, H, T, S, D, Dv) != 0:
        return None
    if Hkv != H:
        d.Hkv = Hkv
        d.k.h, d.v.h = S * D, S * Dv
        d.k.b, d.v.b = Hkv * S * D, Hkv * S * Dv
    if scale is not None:
        d.scale = scale
    if causal:
        d.mask.causal = 1
    c = lib.attn_ctx_default() if ctx is None else ctx._c
    cp = ctypes.byref(c)
    n = ctypes.c_size_t()
    _lib.check(lib.attn_sdpa_workspace_size(cp, dp, 0, ctypes.byref(n)), "sdpa")
    buf, wp = _workspace(n.value)
    out = np.empty((B, H, T, Dv), _F32)
    _lib.check(lib.attn_sdpa_forward(cp, dp, out.ctypes.data, None, None, q.ctypes.data, k.ctypes.data,
                                     v.ctypes.data, wp, n.value), "sdpa")
    return out


def sdpa(q, k, v, *, scale=None, causal=False, valid_lens=None, mask=None, bias=None, dropout=0.0, seed=0,
         return_weights=False, return_lse=False, return_stats=False, compute="f32", ctx=None):
    """Scaled dot-product attention: softmax(scale·Q Kᵀ + bias, masked) V.

    q (B,H,T,D), k (B,Hkv,S,D), v (B,Hkv,S,Dv), or (B,T,D), (B,S,D), (B,S,Dv) without heads; H a multiple
    of Hkv (grouped-query heads). scale: 1/sqrt(D) by default. Masks (all combine; a fully masked row gives
    zeros, never NaN): valid_lens (B,) or (B,T) ints, keys s >= the length excluded; causal (bottom-right
    aligned: query t sees keys s <= t + S - T); mask boolean broadcastable to (B,H,T,S), True = may
    attend; bias float broadcastable to (B,H,T,S), added to the scaled scores (-inf excludes). dropout in
    [0,1) with its seed (the same seed drops the same weights on every path and thread count).

    compute: 'f32', or 'bf16': the products' operands rounded to bf16 with fp32 sums where the kernel path
    takes the shape so (on AMX or AVX512-BF16, 5 or more query rows per head; a call asked for weights
    runs as fp32), fp32 elsewhere; the arrays stay float32.

    Returns out (B,H,T,Dv); with return_weights/return_lse/return_stats a tuple (out, [weights (B,H,T,S)],
    [lse (B,H,T)], [stats (B,H,T,2)]) in that order. stats are what sdpa_backward needs."""
    cc = _compute_code(compute)
    if (cc == 0 and type(q) is np.ndarray and type(k) is np.ndarray and type(v) is np.ndarray and q.ndim == 4
            and valid_lens is None and mask is None and bias is None and not dropout
            and not (return_weights or return_lse or return_stats)):
        out = _sdpa_fast(q, k, v, scale, causal, ctx)
        if out is not None:
            return out
    keep = []
    d, q4, k4, v4, squeeze = _sdpa_setup(q, k, v, scale, causal, valid_lens, mask, bias, dropout, seed, keep)
    d.compute = cc
    c = _ctx(ctx)
    cp = ctypes.byref(c)
    dp = ctypes.byref(d)
    B, H, T, S, Dv = d.B, d.H, d.T, d.S, d.Dv
    out = np.empty((B, H, T, Dv), _F32)
    need_stats = return_stats or return_lse
    stats = np.empty((B, H, T, 2), _F32) if need_stats else None
    w, wn = _work(cp, dp, 0, lib.attn_sdpa_workspace_size, "sdpa")
    qp, kp, vp = _ptr(q4), _ptr(k4), _ptr(v4)
    weights = None
    if return_weights:
        weights = np.empty((B, H, T, S), _F32)
        if return_stats:   # the weights come from the reference kernel: keep the stats of this path
            scratch = np.empty_like(out)
            _lib.check(lib.attn_sdpa_forward(cp, dp, _ptr(scratch), None, _ptr(weights), qp, kp, vp, w, wn),
                       "sdpa")
    if not return_weights or return_stats:
        _lib.check(lib.attn_sdpa_forward(cp, dp, _ptr(out), None if stats is None else _ptr(stats), None,
                                         qp, kp, vp, w, wn), "sdpa")
    else:
        _lib.check(lib.attn_sdpa_forward(cp, dp, _ptr(out), None if stats is None else _ptr(stats),
                                         _ptr(weights), qp, kp, vp, w, wn), "sdpa")
    if not (return_weights or return_lse or return_stats):
        return out[:, 0] if squeeze else out
    res = [out[:, 0] if squeeze else out]
    if return_weights:
        res.append(weights[:, 0] if squeeze else weights)
    if return_lse:
        lse = np.empty((B, H, T), _F32)
        _lib.check(lib.attn_sdpa_logsumexp(_ptr(stats), B * H * T, _ptr(lse)), "logsumexp")
        res.append(lse[:, 0] if squeeze else lse)
    if return_stats:
        res.append(stats[:, 0] if squeeze else stats)
    return tuple(res)


def logsumexp(stats):
    """The log-sum-exp of each row (PyTorch's logsumexp) from sdpa's stats (..., 2)."""
    s = np.ascontiguousarray(_f32("stats", stats))
    if s.ndim < 1 or s.shape[-1] != 2:
        raise ValueError(f"stats: expected a last axis of 2 (max, log of the sum), got shape {s.shape}")
    lse = np.empty(s.shape[:-1], _F32)
    _lib.check(lib.attn_sdpa_logsumexp(_ptr(s), lse.size, _ptr(lse)), "logsumexp")
    return lse


def sdpa_backward(dout, q, k, v, out, stats, *, scale=None, causal=False, valid_lens=None, mask=None, bias=None,
                  dropout=0.0, seed=0, compute="f32", ctx=None):
    """Gradients (dq, dk, dv) of sdpa given dout = ∂loss/∂out. out and stats are the forward's (stats from
    sdpa(..., return_stats=True) on the same kernel path); the other arguments, compute included, must be
    the forward's."""
    cc = _compute_code(compute)
    keep = []
    d, q4, k4, v4, squeeze = _sdpa_setup(q, k, v, scale, causal, valid_lens, mask, bias, dropout, seed, keep)
    d.compute = cc
    B, H, T, Dv = d.B, d.H, d.T, d.Dv
    want = (B, T, Dv) if squeeze else (B, H, T, Dv)
    arrs = {}
    for name, a in (("out", out), ("dout", dout)):
        a = _f32(name, a)
        if a.shape != want:
            raise ValueError(f"{name}: expected shape {'(B,T,Dv)' if squeeze else '(B,H,T,Dv)'} = {want}, "
                             f"got {a.shape}")
        arrs[name] = a[:, None] if squeeze else a
    o4, do4 = arrs["out"], arrs["dout"]
    want = (B, T, 2) if squeeze else (B, H, T, 2)
    st = _f32("stats", stats)
    if st.shape != want:
        raise ValueError(f"stats: expected shape {want} (from sdpa(..., return_stats=True)), got {st.shape}")
    st = st[:, None] if squeeze else st
    st = np.ascontiguousarray(st)
    # out and dout share one layout; the gradients share their inputs' layouts (here: contiguous)
    o4, lo = _strided(o4)
    do4, ldo = _strided(do4)
    if lo != ldo:
        o4, do4 = np.ascontiguousarray(o4), np.ascontiguousarray(do4)
        lo = _layout4(o4)
    d.out.b, d.out.h, d.out.t = lo
    grads = []
    for name, a, lay in (("q", q4, d.q), ("k", k4, d.k), ("v", v4, d.v)):
        g = np.zeros(a.shape, _F32)
        if (lay.b, lay.h, lay.t) != _layout4(g):
            a = np.ascontiguousarray(a)
            lay.b, lay.h, lay.t = _layout4(g)
        grads.append((g, a))
    (dq, q4), (dk, k4), (dv, v4) = grads
    c = _ctx(ctx)
    cp, dp = ctypes.byref(c), ctypes.byref(d)
    w, wn = _work(cp, dp, 1, lib.attn_sdpa_workspace_size, "sdpa_backward")
    _lib.check(lib.attn_sdpa_backward(cp, dp, _ptr(dq), _ptr(dk), _ptr(dv), _ptr(do4), _ptr(q4), _ptr(k4),
                                      _ptr(v4), _ptr(o4), _ptr(st), w, wn), "sdpa_backward")
    if squeeze:
        return dq[:, 0], dk[:, 0], dv[:, 0]
    return dq, dk, dv


# ---- additive attention ----------------------------------------------------------------------------


def _additive_setup(q, k, v, wq, wk, wv, causal, valid_lens, mask, bias, dropout, seed, keep, compute):
    arrs = []
    for name, a, nd in (("q", q, 3), ("k", k, 3), ("v", v, 3), ("wq", wq, 2), ("wk", wk, 2), ("wv", wv, 1)):
        a = _f32(name, a)
        if a.ndim != nd:
            want = {"q": "(B,T,Dq)", "k": "(B,S,Dk)", "v": "(B,S,Dv)", "wq": "(Dh,Dq)", "wk": "(Dh,Dk)",
                    "wv": "(Dh,)"}[name]
            raise ValueError(f"{name}: expected shape {want}, got {a.shape}")
        arrs.append(np.ascontiguousarray(a))
    q, k, v, wq, wk, wv = arrs
    B, T, Dq = q.shape
    S, Dk, Dv, Dh = k.shape[1], k.shape[2], v.shape[2], wv.shape[0]
    if k.shape[0] != B:
        raise ValueError(f"k: expected shape (B,S,Dk) with B = {B} (from q), got {k.shape}")
    if v.shape[:2] != (B, S):
        raise ValueError(f"v: expected shape (B,S,Dv) with (B,S) = {(B, S)} (from k), got {v.shape}")
    if wq.shape != (Dh, Dq):
        raise ValueError(f"wq: expected shape (Dh,Dq) = {(Dh, Dq)} (Dh from wv, Dq from q), got {wq.shape}")
    if wk.shape != (Dh, Dk):
        raise ValueError(f"wk: expected shape (Dh,Dk) = {(Dh, Dk)} (Dh from wv, Dk from k), got {wk.shape}")
    d = _lib.AdditiveDesc()
    _lib.check(lib.attn_additive_desc_init(ctypes.byref(d), B, T, S, Dq, Dk, Dv, Dh), "additive",
               f"sizes B={B} T={T} S={S} Dq={Dq} Dk={Dk} Dv={Dv} Dh={Dh}")
    if dropout:
        d.dropout = float(dropout)
        d.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    d.compute = _compute_code(compute)
    _set_mask(d.mask, B, 1, T, S, causal, valid_lens, mask, bias, keep)
    return d, arrs


def additive(q, k, v, wq, wk, wv, *, causal=False, valid_lens=None, mask=None, bias=None, dropout=0.0, seed=0,
             return_weights=False, compute="f32", ctx=None):
    """Additive (Bahdanau) attention: score(t, s) = wvᵀ tanh(wq q_t + wk k_s), softmax over s (masked as in
    sdpa, with H = 1), out = weights V. q (B,T,Dq), k (B,S,Dk), v (B,S,Dv), wq (Dh,Dq), wk (Dh,Dk), wv (Dh).
    compute: 'f32', or 'bf16': wv against the tanh values and the weights against V take bf16-rounded
    operands with fp32 sums on a path with bf16 units (AMX, AVX512-BF16), fp32 elsewhere; the projections
    stay fp32. Returns out (B,T,Dv), or (out, weights (B,T,S))."""
    keep = []
    d, arrs = _additive_setup(q, k, v, wq, wk, wv, causal, valid_lens, mask, bias, dropout, seed, keep, compute)
    c = _ctx(ctx)
    cp, dp = ctypes.byref(c), ctypes.byref(d)
    out = np.empty((d.B, d.T, d.Dv), _F32)
    weights = np.empty((d.B, d.T, d.S), _F32) if return_weights else None
    w, wn = _work(cp, dp, 0, lib.attn_additive_workspace_size, "additive")
    _lib.check(lib.attn_additive_forward(cp, dp, _ptr(out), None if weights is None else _ptr(weights),
                                         *[_ptr(a) for a in arrs], w, wn), "additive")
    return (out, weights) if return_weights else out


def additive_backward(dout, q, k, v, wq, wk, wv, *, causal=False, valid_lens=None, mask=None, bias=None,
                      dropout=0.0, seed=0, compute="f32", ctx=None):
    """Gradients (dq, dk, dv, dwq, dwk, dwv) of additive() given dout (B,T,Dv)."""
    keep = []
    d, arrs = _additive_setup(q, k, v, wq, wk, wv, causal, valid_lens, mask, bias, dropout, seed, keep, compute)
    do = _f32("dout", dout)
    if do.shape != (d.B, d.T, d.Dv):
        raise ValueError(f"dout: expected shape (B,T,Dv) = {(d.B, d.T, d.Dv)}, got {do.shape}")
    do = np.ascontiguousarray(do)
    grads = [np.zeros(a.shape, _F32) for a in arrs]
    c = _ctx(ctx)
    cp, dp = ctypes.byref(c), ctypes.byref(d)
    w, wn = _work(cp, dp, 1, lib.attn_additive_workspace_size, "additive_backward")
    _lib.check(lib.attn_additive_backward(cp, dp, *[_ptr(g) for g in grads], _ptr(do), *[_ptr(a) for a in arrs],
                                          w, wn), "additive_backward")
    return tuple(grads)


# ---- softmax ---------------------------------------------------------------------------------------


def softmax(x, axis=-1):
    """The numerically stable softmax along axis (the max is subtracted first, so scores such as 927 and
    929 give 0.1192 and 0.8808 where exp overflows). Returns a new float32 array."""
    a = np.asarray(x)
    if a.dtype != _F32:
        if a.dtype.kind not in "fiub":
            raise TypeError(f"x: expected a real array, got {a.dtype}")
        a = a.astype(_F32)
    if a.ndim == 0 or a.shape[axis] == 0:
        raise ValueError(f"x: expected at least one element along axis {axis}, got shape {a.shape}")
    r = np.ascontiguousarray(np.moveaxis(a, axis, -1)).copy()
    n = r.shape[-1]
    rows = r.reshape(-1, n)
    base, step = _ptr(rows), n * 4
    for i in range(rows.shape[0]):
        _lib.check(lib.attn_softmax(base + i * step, n), "softmax")
    return np.moveaxis(r, -1, axis)


# ---- heatmaps --------------------------------------------------------------------------------------


def _labels(name, labels, n):
    if labels is None:
        return None, None
    labels = [str(s) for s in labels]
    if len(labels) != n:
        raise ValueError(f"{name}: expected {n} labels, got {len(labels)}")
    enc = [s.encode() for s in labels]
    arr = (ctypes.c_char_p * n)(*enc)
    return ctypes.cast(arr, ctypes.c_void_p), (arr, enc)


def _palette(name):
    p = ctypes.c_int(0)
    if name is not None and lib.attn_palette_from_name(name.encode(), ctypes.byref(p)) != 0:
        raise ValueError(f"palette: {name!r}: must be one of magma, viridis, gray, blues")
    return p.value


def _heatmap(values, row_labels, col_labels, title, row_title, col_title, vmin, vmax, keep, palette=0):
    v = np.ascontiguousarray(_f32("values", values))
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
        raise ValueError(f"values: expected a non-empty 2-D (rows, cols) array, got shape {v.shape}")
    h = _lib.Heatmap()
    h.values, h.rows, h.cols, h.row_stride = _ptr(v), v.shape[0], v.shape[1], 0
    h.row_labels, k1 = _labels("row_labels", row_labels, v.shape[0])
    h.col_labels, k2 = _labels("col_labels", col_labels, v.shape[1])
    h.title = title.encode() if title else None
    h.row_title = row_title.encode() if row_title else None
    h.col_title = col_title.encode() if col_title else None
    h.vmin = 0.0 if vmin is None else float(vmin)
    h.vmax = (0.0 if vmin is None else float(vmin)) if vmax is None else float(vmax)
    if (vmin is None) != (vmax is None):
        raise ValueError("vmin, vmax: give both or neither (neither: the data's range)")
    h.palette = palette
    keep += [v, k1, k2]
    return h


def heatmap_png(values, path, *, row_labels=None, col_labels=None, title=None, row_title=None, col_title=None,
                vmin=None, vmax=None, palette=None):
    """Writes a (rows, cols) matrix — usually attention weights, queries by keys — as a PNG heatmap with
    labelled axes, atomically. A 3-D (n, rows, cols) array is drawn as a grid of n maps (one per head).
    palette: "magma" (the default), "viridis", "gray" or "blues"."""
    keep = []
    pal = _palette(palette)
    err = ctypes.create_string_buffer(512)
    a = np.asarray(values)
    if a.ndim == 3:
        maps = (_lib.Heatmap * a.shape[0])()
        for i in range(a.shape[0]):
            maps[i] = _heatmap(a[i], row_labels, col_labels, f"{title} {i}" if title else f"head {i}", row_title,
                               col_title, vmin, vmax, keep, pal)
        cols = int(np.ceil(np.sqrt(a.shape[0])))
        st = lib.attn_heatmap_png_grid(maps, a.shape[0], cols, os.fsencode(path), err, len(err))
    else:
        h = _heatmap(a, row_labels, col_labels, title, row_title, col_title, vmin, vmax, keep, pal)
        st = lib.attn_heatmap_png(ctypes.byref(h), os.fsencode(path), err, len(err))
    _lib.check(st, "heatmap_png", err.value.decode(errors="replace") or None)


def heatmap_array(values, **kw):
    """The heatmap heatmap_png would draw, as an (height, width, 3 or 4) uint8 RGB(A) array."""
    with tempfile.TemporaryDirectory(prefix="attn-heatmap-") as d:
        p = os.path.join(d, "map.png")
        heatmap_png(values, p, **kw)
        with open(p, "rb") as f:
            return _png_decode(f.read())


def _png_decode(data):
    """Decodes an 8-bit non-interlaced PNG (what attn writes) into an array."""
    import struct
    import zlib
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, idat, w = 8, [], None
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace or ctype not in (0, 2, 4, 6):
                raise ValueError(f"unsupported PNG (bit depth {depth}, color type {ctype}, interlace {interlace})")
            ch = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
        elif typ == b"IDAT":
            idat.append(body)
        elif typ == b"IEND":
            break
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, 1 + w * ch)
    img = np.zeros((h, w * ch), np.int32)
    prev = np.zeros(w * ch, np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 1:
            cur = line.copy()
            for x in range(ch, w * ch, ch):
                cur[x:x + ch] = (cur[x:x + ch] + cur[x - ch:x]) & 255
        elif f == 2:
            cur = (line + prev) & 255
        elif f in (3, 4):
            cur = line.copy()
            for x in range(w * ch):
                a = cur[x - ch] if x >= ch else 0
                b = prev[x]
                if f == 3:
                    cur[x] = (cur[x] + ((a + b) >> 1)) & 255
                else:
                    c = prev[x - ch] if x >= ch else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    cur[x] = (cur[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        else:
            raise ValueError(f"PNG row {y}: unknown filter {f}")
        img[y] = cur
        prev = cur
    return img.astype(np.uint8).reshape(h, w, ch)


# ---- safetensors -----------------------------------------------------------------------------------

_ST_DTYPES = {0: np.float32, 1: np.float64, 2: np.int32, 3: np.int64, 4: np.uint8, 5: np.bool_}
_ST_BF16 = 6                     # attn_dtype ATTN_DTYPE_BF16: read as float32 (NumPy has no bfloat16)


def read_safetensors(path, *, metadata=False, max_bytes=0):
    """Reads a safetensors file (a checkpoint of attn or of PyTorch) into {name: array} in file order,
    after checking it whole; with metadata=True returns (tensors, {key: value}). A broken file raises
    AttnError naming the path, the byte offset and what was expected."""
    f = _lib.StFile()
    err = ctypes.create_string_buffer(1024)
    _lib.check(lib.attn_st_read(ctypes.byref(f), os.fsencode(path), int(max_bytes), err, len(err)),
               "read_safetensors", err.value.decode(errors="replace") or str(path))
    try:
        out = {}
        for i in range(f.n):
            t = f.tensors[i]
            shape = tuple(t.shape[j] for j in range(t.ndim))
            buf = ctypes.string_at(t.data, t.nbytes) if t.nbytes else b""
            if t.dtype == _ST_BF16:     # the bf16 bits are the top half of a float32's
                bits = np.frombuffer(buf, "<u2").astype(np.uint32) << 16
                out[t.name.decode()] = bits.view(np.float32).reshape(shape)
                continue
            dt = np.dtype(_ST_DTYPES[t.dtype]).newbyteorder("<")
            out[t.name.decode()] = np.frombuffer(buf, dt).astype(dt.newbyteorder("="), copy=True).reshape(shape)
        meta = {f.meta_keys[i].decode(): f.meta_values[i].decode() for i in range(f.n_meta)}
    finally:
        lib.attn_st_free(ctypes.byref(f))
    return (out, meta) if metadata else out
