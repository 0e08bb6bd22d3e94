"""The NumPy API against float64 NumPy math: SDPA (every mask, GQA, scale, dropout, strides, broadcast),
its backward, additive attention, softmax, heatmaps, safetensors, errors, threads and the GIL."""
import os
import struct
import threading
import time

import numpy as np
import pytest

import attn
from conftest import rand, ref_sdpa

ATOL = 2e-5


def close(a, b, atol=ATOL, rtol=1e-4):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = np.abs(a - b).max() if a.size else 0.0
    assert np.allclose(a, b, atol=atol, rtol=rtol), f"max abs error {err}"


MASKS = {
    "none": {},
    "causal": {"causal": True},
    "lens_batch": {"valid_lens": np.array([3, 0])},
    "lens_query": {"valid_lens": np.array([[1, 2, 3, 4, 5, 6, 7], [0, 9, 2, 20, 5, 5, 1]])},
    "bool_ts": {"mask": None},                       # filled per test (random)
    "bias_bhts": {"bias": None},
    "bias_neginf": {"bias": None},
    "all": {"causal": True, "valid_lens": np.array([6, 4]), "mask": None, "bias": None},
}


def make_mask(name, rng, B, H, T, S):
    kw = dict(MASKS[name])
    if "mask" in kw:
        kw["mask"] = rng.random((T, S)) > 0.3
    if "bias" in kw:
        b = rng.standard_normal((B, 1, T, S)).astype(np.float32) if name != "bias_bhts" else \
            rng.standard_normal((B, H, T, S)).astype(np.float32)
        if name == "bias_neginf":
            b[:, :, :, ::3] = -np.inf
        kw["bias"] = b
    return kw


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (3, 1)])
def test_sdpa_forward_backward_masks(rng, mask, heads):
    B, (H, Hkv), T, S, D, Dv = 2, heads, 7, 9, 16, 12
    q, k, v = rand(rng, B, H, T, D), rand(rng, B, Hkv, S, D), rand(rng, B, Hkv, S, Dv)
    kw = make_mask(mask, rng, B, H, T, S)
    out, w, lse, stats = attn.sdpa(q, k, v, return_weights=True, return_lse=True, return_stats=True, **kw)
    r_out, r_w, r_lse, back = ref_sdpa(q, k, v, **kw)
    close(out, r_out)
    close(w, r_w)
    fin = np.isfinite(r_lse)
    assert np.array_equal(np.isfinite(lse), fin)
    close(lse[fin], r_lse[fin], atol=1e-4)
    assert not np.isnan(out).any()
    close(attn.logsumexp(stats)[fin], r_lse[fin], atol=1e-4)
    dout = rand(rng, B, H, T, Dv)
    for got, want in zip(attn.sdpa_backward(dout, q, k, v, out, stats, **kw), back(dout)):
        close(got, want, atol=1e-4)


def test_sdpa_scale_and_plain_dot_product(rng):
    q, k, v = rand(rng, 32, 10, 128), rand(rng, 32, 10, 128), rand(rng, 32, 10, 128)
    out, w = attn.sdpa(q / 8, k, v, scale=1.0, return_weights=True)     # the tutorial's unscaled dot product
    assert out.shape == (32, 10, 128) and w.shape == (32, 10, 10)
    r_out, r_w, _, _ = ref_sdpa(q[:, None] / 8, k[:, None], v[:, None], scale=1.0)
    close(out, r_out[:, 0], atol=1e-4)
    close(w, r_w[:, 0], atol=1e-5)
    close(attn.sdpa(q, k, v, scale=0.3), ref_sdpa(q[:, None], k[:, None], v[:, None], scale=0.3)[0][:, 0], atol=1e-4)


def test_fully_masked_rows_are_zero(rng):
    q, k, v = rand(rng, 1, 2, 4, 8), rand(rng, 1, 2, 5, 8), rand(rng, 1, 2, 5, 8)
    m = np.ones((4, 5), bool)
    m[1] = False
    out, w, lse, stats = attn.sdpa(q, k, v, mask=m, return_weights=True, return_lse=True, return_stats=True)
    assert (out[:, :, 1] == 0).all() and (w[:, :, 1] == 0).all() and np.isneginf(lse[:, :, 1]).all()
    dq, dk, dv = attn.sdpa_backward(np.ones_like(out), q, k, v, out, stats, mask=m)
    assert (dq[:, :, 1] == 0).all() and np.isfinite(dk).all()


def test_strided_and_broadcast_inputs_read_in_place(rng):
    B, T, H, D = 2, 6, 3, 8
    qkv = rand(rng, B, T, 3, H, D)                      # what a packed projection produces
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    assert not q.flags.c_contiguous
    ref = attn.sdpa(*(np.ascontiguousarray(x) for x in (q, k, v)), causal=True)
    assert np.array_equal(attn.sdpa(q, k, v, causal=True), ref)
    kb = np.broadcast_to(k[:1], k.shape)                # batch stride 0
    assert np.array_equal(attn.sdpa(q, kb, v), attn.sdpa(q, np.ascontiguousarray(kb), v))
    rev = q[:, :, ::-1]                                  # negative stride: copied
    assert np.array_equal(attn.sdpa(rev, k, v), attn.sdpa(np.ascontiguousarray(rev), k, v))
    fortran = np.asfortranarray(q)                       # last axis not contiguous: copied
    assert np.array_equal(attn.sdpa(fortran, k, v), attn.sdpa(np.ascontiguousarray(q), k, v))
    out, stats = attn.sdpa(q, k, v, return_stats=True)
    dout = rand(rng, *out.shape)
    for a, b in zip(attn.sdpa_backward(dout, q, k, v, out, stats),
                    attn.sdpa_backward(dout, *(np.ascontiguousarray(x) for x in (q, k, v)), out, stats)):
        assert np.array_equal(a, b)
    # broadcast masks: a (T,S) boolean and a (S,) bias, (B,1,1,S) boolean
    S = T
    m1 = rng.random((T, S)) > 0.4
    bias = rand(rng, S)
    m2 = rng.random((B, 1, 1, S)) > 0.2
    for kw in ({"mask": m1}, {"bias": bias}, {"mask": m2, "bias": bias[None, :]}):
        close(attn.sdpa(q, k, v, **kw), ref_sdpa(q, k, v, **kw)[0])


def test_dropout_seeded_and_its_gradient(rng):
    B, H, T, S, D = 1, 2, 5, 6, 8
    q, k, v = rand(rng, B, H, T, D), rand(rng, B, H, S, D), rand(rng, B, H, S, D)
    a = attn.sdpa(q, k, v, dropout=0.5, seed=7)
    assert np.array_equal(a, attn.sdpa(q, k, v, dropout=0.5, seed=7))
    assert not np.array_equal(a, attn.sdpa(q, k, v, dropout=0.5, seed=8))
    assert not np.array_equal(a, attn.sdpa(q, k, v))
    # the backward regenerates the forward's mask: check a directional derivative in float64 steps
    kw = dict(dropout=0.3, seed=11, causal=True)
    out, stats = attn.sdpa(q, k, v, return_stats=True, **kw)
    dout = rand(rng, *out.shape)
    grads = attn.sdpa_backward(dout, q, k, v, out, stats, **kw)
    for i in range(3):
        h = [np.zeros_like(x) for x in (q, k, v)]
        h[i] = rand(rng, *h[i].shape)
        eps = 1e-2
        plus = attn.sdpa(*[x + eps * d for x, d in zip((q, k, v), h)], **kw).astype(np.float64)
        minus = attn.sdpa(*[x - eps * d for x, d in zip((q, k, v), h)], **kw).astype(np.float64)
        fd = ((plus - minus) * dout).sum() / (2 * eps)
        assert abs(fd - (grads[i] * h[i]).sum()) < 2e-2 * max(1, abs(fd)), (i, fd, (grads[i] * h[i]).sum())


def test_threads_bitwise_and_contexts(rng):
    q, k, v = rand(rng, 2, 4, 70, 32), rand(rng, 2, 2, 90, 32), rand(rng, 2, 2, 90, 32)
    before = attn.get_num_threads()
    try:
        attn.set_num_threads(1)
        assert attn.get_num_threads() == 1
        one = attn.sdpa(q, k, v, causal=True)
        attn.set_num_threads(2)
        two = attn.sdpa(q, k, v, causal=True)
    finally:
        attn.set_num_threads(before)
    assert np.array_equal(one, two)
    c = attn.Context("scalar", threads=1)
    assert c.isa == "scalar" and c.threads == 1
    close(attn.sdpa(q, k, v, ctx=c), attn.sdpa(q, k, v, ctx=attn.Context("ref")), atol=1e-5)
    isa = attn.get_isa()
    try:
        attn.set_isa("ref")
        assert attn.get_isa() == "ref"
    finally:
        attn.set_isa("auto")
    assert attn.get_isa() == isa
    with pytest.raises(ValueError, match="isa"):
        attn.set_isa("sse9")
    with pytest.raises(attn.AttnError, match="argument out of range"):
        attn.set_num_threads(100000)


def test_gil_is_released_during_calls(rng):
    q = rand(rng, 1, 8, 1024, 64)
    spans = []

    def work():
        t0 = time.perf_counter()
        attn.sdpa(q, q, q, ctx=attn.Context(threads=1))
        spans.append((t0, time.perf_counter()))

    th = threading.Thread(target=work)
    ticks = []
    th.start()
    while th.is_alive():
        ticks.append(time.perf_counter())
    th.join()
    t0, t1 = spans[0]
    inside = sum(t0 < t < t1 for t in ticks)
    assert t1 - t0 > 0.01 and inside > 10, (t1 - t0, inside)


def test_errors_name_the_argument(rng):
    q = rand(rng, 2, 4, 5, 8)
    with pytest.raises(TypeError, match="^q: expected float32, got float64"):
        attn.sdpa(q.astype(np.float64), q, q)
    with pytest.raises(ValueError, match="^k: expected shape"):
        attn.sdpa(q, rand(rng, 2, 4, 5, 7), q)
    with pytest.raises(ValueError, match="^v: expected shape"):
        attn.sdpa(q, q, rand(rng, 2, 4, 6, 8))
    with pytest.raises(ValueError, match="key/value heads do not divide"):
        attn.sdpa(q, rand(rng, 2, 3, 5, 8), rand(rng, 2, 3, 5, 8))
    with pytest.raises(ValueError, match="^q: expected shape"):
        attn.sdpa(q[0, 0], q, q)
    with pytest.raises(ValueError, match="^valid_lens: expected shape"):
        attn.sdpa(q, q, q, valid_lens=[1, 2, 3])
    with pytest.raises(ValueError, match="^valid_lens: lengths must not be negative"):
        attn.sdpa(q, q, q, valid_lens=[1, -2])
    with pytest.raises(ValueError, match="^mask: shape"):
        attn.sdpa(q, q, q, mask=np.ones((3, 5), bool))
    with pytest.raises(TypeError, match="^mask: expected a boolean"):
        attn.sdpa(q, q, q, mask=np.ones((5, 5), np.float32))
    with pytest.raises(TypeError, match="^bias: expected float32"):
        attn.sdpa(q, q, q, bias=np.ones((5, 5)))
    with pytest.raises(attn.AttnError, match=r"sdpa: argument out of range \(ATTN_ERR_ARG\)") as e:
        attn.sdpa(q, q, q, dropout=1.5)
    assert e.value.status == -6 and e.value.name == "ATTN_ERR_ARG"
    out, stats = attn.sdpa(q, q, q, return_stats=True)
    with pytest.raises(ValueError, match="^stats: expected shape"):
        attn.sdpa_backward(out, q, q, q, out, stats[:, :, :2])
    with pytest.raises(ValueError, match="^dout: expected shape"):
        attn.sdpa_backward(out[:, :, :2], q, q, q, out, stats)


def ref_additive(q, k, v, wq, wk, wv, keep):
    q, k, v, wq, wk, wv = (np.asarray(x, np.float64) for x in (q, k, v, wq, wk, wv))
    feat = np.tanh((q @ wq.T)[:, :, None, :] + (k @ wk.T)[:, None, :, :])     # (B,T,S,Dh)
    s = np.where(keep, feat @ wv, -np.inf)
    m = np.max(s, -1, keepdims=True)
    e = np.where(keep, np.exp(s - np.where(np.isfinite(m), m, 0)), 0)
    tot = e.sum(-1, keepdims=True)
    p = np.where(tot > 0, e / np.where(tot > 0, tot, 1), 0)
    return p @ v, p


@pytest.mark.parametrize("mask", ["none", "lens_batch", "lens_query", "causal", "bool"])
def test_additive(rng, mask):
    B, T, S, Dq, Dk, Dv, Dh = 2, 4, 6, 5, 7, 3, 8
    q, k, v = rand(rng, B, T, Dq), rand(rng, B, S, Dk), rand(rng, B, S, Dv)
    wq, wk, wv = rand(rng, Dh, Dq), rand(rng, Dh, Dk), rand(rng, Dh)
    kw = {"none": {}, "lens_batch": {"valid_lens": [2, 5]}, "lens_query": {"valid_lens": [[1, 2, 3, 0], [6, 5, 4, 3]]},
          "causal": {"causal": True}, "bool": {"mask": rng.random((T, S)) > 0.3}}[mask]
    out, w = attn.additive(q, k, v, wq, wk, wv, return_weights=True, **kw)
    keep = np.ones((B, T, S), bool)
    if "valid_lens" in kw:
        vl = np.asarray(kw["valid_lens"])
        keep &= np.arange(S) < (vl[:, None, None] if vl.ndim == 1 else vl[:, :, None])
    if "causal" in kw:
        keep &= np.arange(S)[None, :] <= np.arange(T)[:, None] + S - T
    if "mask" in kw:
        keep &= kw["mask"]
    r_out, r_w = ref_additive(q, k, v, wq, wk, wv, keep)
    close(out, r_out)
    close(w, r_w)
    # gradients: directional derivatives of <out, dout> in float64 math
    dout = rand(rng, B, T, Dv)
    grads = attn.additive_backward(dout, q, k, v, wq, wk, wv, **kw)
    args = [q, k, v, wq, wk, wv]
    for i in range(6):
        h = rng.standard_normal(args[i].shape)
        eps = 1e-6
        up = [a.astype(np.float64) for a in args]
        dn = [a.astype(np.float64) for a in args]
        up[i] = up[i] + eps * h
        dn[i] = dn[i] - eps * h
        fd = ((ref_additive(*up, keep)[0] - ref_additive(*dn, keep)[0]) * dout).sum() / (2 * eps)
        got = (grads[i] * h).sum()
        assert abs(fd - got) < 1e-4 * max(1, abs(fd)), (i, fd, got)


def test_additive_errors(rng):
    q, k, v = rand(rng, 2, 4, 5), rand(rng, 2, 6, 7), rand(rng, 2, 6, 3)
    wq, wk, wv = rand(rng, 8, 5), rand(rng, 8, 7), rand(rng, 8)
    with pytest.raises(ValueError, match="^wk: expected shape"):
        attn.additive(q, k, v, wq, wq, wv)
    with pytest.raises(ValueError, match="^v: expected shape"):
        attn.additive(q, k, v[:, :5], wq, wk, wv)
    with pytest.raises(TypeError, match="^wv: expected float32"):
        attn.additive(q, k, v, wq, wk, wv.astype(np.float64))


def test_compute_bf16(rng):
    """compute='bf16': on AMX or AVX512-BF16 the SDPA products (more than 4 query rows) and the additive
    attention's are rounded to bf16: close to fp32, not equal; on AVX2 a permission only: fp32's bits."""
    q, k, v = rand(rng, 1, 2, 40, 32), rand(rng, 1, 2, 50, 32), rand(rng, 1, 2, 50, 32)
    aq, ak, av = rand(rng, 2, 3, 7), rand(rng, 2, 9, 6), rand(rng, 2, 9, 5)
    wq, wk, wv, dout = rand(rng, 16, 7), rand(rng, 16, 6), rand(rng, 16), rand(rng, 2, 3, 5)
    with pytest.raises(ValueError, match="^compute: expected 'f32' or 'bf16', got 'fp8'"):
        attn.sdpa(q, k, v, compute="fp8")
    with pytest.raises(ValueError, match="^compute"):
        attn.additive(aq, ak, av, wq, wk, wv, compute=None)
    for isa in ("amx", "avx512bf16", "avx2"):
        if not attn.cpu_supports(isa):
            continue
        c = attn.Context(isa, 1)
        o32, s32 = attn.sdpa(q, k, v, return_stats=True, ctx=c)
        o16, s16 = attn.sdpa(q, k, v, return_stats=True, compute="bf16", ctx=c)
        g32 = attn.sdpa_backward(o32, q, k, v, o32, s32, ctx=c)
        g16 = attn.sdpa_backward(o16, q, k, v, o16, s16, compute="bf16", ctx=c)
        a32 = attn.additive(aq, ak, av, wq, wk, wv, ctx=c)
        a16 = attn.additive(aq, ak, av, wq, wk, wv, compute="bf16", ctx=c)
        ga32 = attn.additive_backward(dout, aq, ak, av, wq, wk, wv, ctx=c)
        ga16 = attn.additive_backward(dout, aq, ak, av, wq, wk, wv, compute="bf16", ctx=c)
        sdpa_bf16 = add_bf16 = isa in ("amx", "avx512bf16")
        for got, want, bf in ([o16, o32, sdpa_bf16], [a16, a32, add_bf16]):
            assert np.array_equal(got, want) != bf, isa
            close(got, want, atol=2e-2, rtol=2e-2)
        for got, want, bf in list(zip(g16, g32, [sdpa_bf16] * 3)) + list(zip(ga16, ga32, [add_bf16] * 6)):
            if not bf:
                assert np.array_equal(got, want), isa
            close(got, want, atol=5e-2 * max(1.0, float(np.abs(want).max())), rtol=5e-2)


def test_softmax_walkthrough():
    dec = np.array([5, 1, 20], np.float32)
    enc = np.array([[3, 12, 45], [59, 2, 5], [1, 43, 5], [4, 3, 45.3]], np.float32)
    scores = enc @ dec
    assert np.allclose(scores, [927, 397, 148, 929])
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isnan((np.exp(scores.astype(np.float64)) / np.exp(scores.astype(np.float64)).sum())).any()
    w = attn.softmax(scores)
    assert np.allclose(w, [0.1192, 0, 0, 0.8808], atol=5e-5)
    assert np.allclose(w @ enc, [3.8808, 4.0728, 45.2642], atol=5e-4)
    x = np.random.default_rng(0).standard_normal((3, 4, 5)) * 50
    for axis in (0, 1, -1):
        e = np.exp(x - x.max(axis, keepdims=True))
        close(attn.softmax(x, axis=axis), e / e.sum(axis, keepdims=True), atol=1e-6)
    with pytest.raises(ValueError, match="^x: expected at least one element"):
        attn.softmax(np.zeros((2, 0)))


def test_heatmaps(tmp_path, rng):
    w = attn.softmax(rng.standard_normal((3, 4)))
    p = tmp_path / "w.png"
    attn.heatmap_png(w, p, row_labels=["a", "b", "c"], col_labels=["w", "x", "y", "z"], title="weights",
                     row_title="Queries", col_title="Keys")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = attn.heatmap_array(w, title="weights")
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] in (3, 4) and img.shape[0] > 20
    assert img.std() > 10                               # not a blank picture
    grid = attn.heatmap_array(rng.random((4, 5, 6)).astype(np.float32), vmin=0, vmax=1)
    assert grid.shape[1] > img.shape[1] / 2
    with pytest.raises(ValueError, match="^row_labels: expected 3 labels, got 2"):
        attn.heatmap_png(w, p, row_labels=["a", "b"])
    with pytest.raises(attn.AttnError, match="heatmap_png: input/output error"):
        attn.heatmap_png(w, tmp_path / "missing" / "w.png")
    # palettes: the ends of viridis and of blues, exactly, in the cells
    for name, lo, hi in (("viridis", (68, 1, 84), (253, 231, 37)), ("blues", (247, 251, 255), (8, 48, 107))):
        img = attn.heatmap_array(np.array([[0.0, 1.0]], np.float32), vmin=0, vmax=1, palette=name)[..., :3]
        colours = {tuple(c) for c in img.reshape(-1, 3)}
        assert lo in colours and hi in colours, name
    with pytest.raises(ValueError, match="^palette: 'inferno'"):
        attn.heatmap_png(w, p, palette="inferno")


def write_st(path, tensors):
    import json
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = a.tobytes()
        header[name] = {"dtype": {"float32": "F32", "int64": "I64", "int32": "I32", "uint8": "U8"}[str(a.dtype)],
                        "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_read_safetensors(tmp_path, rng):
    t = {"w": rand(rng, 3, 4), "ids": np.arange(5, dtype=np.int64), "b": np.arange(6, dtype=np.int32).reshape(2, 3)}
    p = tmp_path / "m.safetensors"
    write_st(p, t)
    got, meta = attn.read_safetensors(p, metadata=True)
    assert list(got) == ["w", "ids", "b"] and meta == {"format": "pt"}
    for n in t:
        assert got[n].dtype == t[n].dtype and np.array_equal(got[n], t[n])
    golden = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "mech_sdpa_shapes.safetensors")
    if os.path.exists(golden):
        g = attn.read_safetensors(golden)
        assert g and all(isinstance(a, np.ndarray) for a in g.values())
    p.write_bytes(p.read_bytes()[:-3])                  # truncated
    with pytest.raises(attn.AttnError, match="m.safetensors"):
        attn.read_safetensors(p)
    with pytest.raises(attn.AttnError, match="input/output error"):
        attn.read_safetensors(tmp_path / "absent.safetensors")


def test_version_and_library():
    assert attn.version().count(".") == 2
    assert os.path.exists(attn.library_path)
    assert attn.blas_core()


def test_fast_path_equals_general_path(rng):
    for H, Hkv, D, Dv in ((4, 4, 16, 16), (4, 2, 16, 8), (6, 3, 8, 24)):
        q, k, v = rand(rng, 2, H, 5, D), rand(rng, 2, Hkv, 7, D), rand(rng, 2, Hkv, 7, Dv)
        for causal in (False, True):
            fast = attn.sdpa(q, k, v, causal=causal)
            general, _ = attn.sdpa(q, k, v, causal=causal, return_stats=True)
            assert np.array_equal(fast, general)
            close(fast, ref_sdpa(q, k, v, causal=causal)[0])


def test_loader_messages(tmp_path):
    import subprocess
    import sys
    env = dict(os.environ, ATTN_LIBRARY=str(tmp_path / "nothing.so"))
    r = subprocess.run([sys.executable, "-c", "import attn"], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "cannot load ATTN_LIBRARY" in r.stderr and "nothing.so" in r.stderr


def test_three_dim_forward_backward(rng):
    q, k, v = rand(rng, 3, 5, 8), rand(rng, 3, 6, 8), rand(rng, 3, 6, 4)
    out, stats = attn.sdpa(q, k, v, causal=True, return_stats=True)
    assert out.shape == (3, 5, 4) and stats.shape == (3, 5, 2)
    dout = rand(rng, 3, 5, 4)
    r_out, _, _, back = ref_sdpa(q[:, None], k[:, None], v[:, None], causal=True)
    close(out, r_out[:, 0])
    for got, want in zip(attn.sdpa_backward(dout, q, k, v, out, stats, causal=True), back(dout[:, None])):
        close(got, want[:, 0], atol=1e-4)
    with pytest.raises(ValueError, match=r"^dout: expected shape \(B,T,Dv\) = \(3, 5, 4\), got \(3, 5, 5\)"):
        attn.sdpa_backward(rand(rng, 3, 5, 5), q, k, v, out, stats)


def test_concurrent_python_threads(rng):
    qs = [rand(rng, 1, 2, 40, 16) for _ in range(4)]
    want = [attn.sdpa(q, q, q, causal=True) for q in qs]
    got = [None] * 4

    def run(i):
        for _ in range(20):
            got[i] = attn.sdpa(qs[i], qs[i], qs[i], causal=True)

    ths = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
@pytest.mark.parametrize("threads", [1, 2])
def test_kernels_stay_inside_their_workspace(rng, isa, threads):
    """Guard bytes after the workspace and every output: the small-heads backward once wrote past a
    one-thread workspace by the size of the dQ slots it does not use (heap corruption in the d2l
    Transformer's shapes)."""
    import ctypes
    from attn import _lib
    from attn._lib import lib
    if not attn.cpu_supports(isa):
        pytest.skip(f"CPU lacks {isa}")
    c = attn.Context(isa, threads)._c
    for B, H, Hkv, T, S, D in ((64, 4, 4, 8, 10, 8), (64, 4, 2, 9, 10, 8), (3, 2, 1, 70, 40, 24), (2, 2, 2, 1, 33, 16)):
        d = _lib.SdpaDesc()
        lib.attn_sdpa_desc_init(ctypes.byref(d), B, H, T, S, D, D)
        d.Hkv = Hkv
        d.k.b = d.v.b = Hkv * S * D
        q, k = rand(rng, B, H, T, D), rand(rng, B, Hkv, S, D)
        guard = 4096
        sizes = {"out": B * H * T * D, "stats": B * H * T * 2, "dq": B * H * T * D, "dk": B * Hkv * S * D,
                 "dv": B * Hkv * S * D}
        bufs = {n: np.full(m + guard, 7, np.float32) for n, m in sizes.items()}
        for n in ("dq", "dk", "dv"):
            bufs[n][:sizes[n]] = 0
        for p in (0, 1):
            n = ctypes.c_size_t()
            assert lib.attn_sdpa_workspace_size(ctypes.byref(c), ctypes.byref(d), p, ctypes.byref(n)) == 0
            w = np.full(n.value + guard, 0xAB, np.uint8)
            if p == 0:
                st = lib.attn_sdpa_forward(ctypes.byref(c), ctypes.byref(d), bufs["out"].ctypes.data,
                                           bufs["stats"].ctypes.data, None, q.ctypes.data, k.ctypes.data,
                                           k.ctypes.data, w.ctypes.data, n.value)
            else:
                st = lib.attn_sdpa_backward(ctypes.byref(c), ctypes.byref(d), bufs["dq"].ctypes.data,
                                            bufs["dk"].ctypes.data, bufs["dv"].ctypes.data, bufs["out"].ctypes.data,
                                            q.ctypes.data, k.ctypes.data, k.ctypes.data, bufs["out"].ctypes.data,
                                            bufs["stats"].ctypes.data, w.ctypes.data, n.value)
            assert st == 0
            assert (w[n.value:] == 0xAB).all(), f"pass {p} wrote past its workspace of {n.value} bytes at " \
                f"B={B} H={H} Hkv={Hkv} T={T} S={S} D={D}"
        for name, m in sizes.items():
            assert (bufs[name][m:] == 7).all(), f"{name} written past its end at B={B} T={T} S={S} D={D}"
