"""attn.torch against float64 PyTorch math with autograd: scaled_dot_product_attention (every mask kind,
causal square and not, scale, GQA, strided/broadcast/batched shapes, dropout), gradcheck on small float32
cases, MultiheadAttention against torch.nn.MultiheadAttention, and errors. Skipped without PyTorch."""
import math

import pytest

torch = pytest.importorskip("torch")
import attn.torch as at  # noqa: E402


def math_sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None):
    """PyTorch 2.x's documented math form, in float64, fully masked rows as zeros."""
    q, k, v = q.double(), k.double(), v.double()
    if k.shape[-3:-2] != q.shape[-3:-2] and q.dim() >= 3:
        g = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(g, dim=-3), v.repeat_interleave(g, dim=-3)
    L, S = q.shape[-2], k.shape[-2]
    s = q @ k.transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    keep = torch.ones(L, S, dtype=torch.bool)
    if is_causal:
        keep = keep.tril()
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            keep = keep & attn_mask
        else:
            s = s + attn_mask.double()
    keep = keep.expand_as(s) & ~torch.isneginf(s)
    s = s.masked_fill(~keep, -math.inf)
    p = torch.softmax(s, -1).nan_to_num(0.0)
    return p @ v


def close(a, b, atol=2e-5):
    err = (a.double() - b.double()).abs().max().item()
    assert err <= atol, f"max abs error {err}"


def inputs(shape_q, shape_k, Dv=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*shape_q, generator=g)
    k = torch.randn(*shape_k, generator=g)
    v = torch.randn(*(shape_k[:-1] + (Dv or shape_k[-1],)), generator=g)
    return [x.requires_grad_() for x in (q, k, v)]


CASES = {
    "plain": dict(),
    "causal_square": dict(is_causal=True),
    "scale": dict(scale=0.3),
    "bool_LS": dict(mask="bool", mshape=lambda B, H, L, S: (L, S)),
    "bool_B1LS": dict(mask="bool", mshape=lambda B, H, L, S: (B, 1, L, S)),
    "bool_full": dict(mask="bool", mshape=lambda B, H, L, S: (B, H, L, S)),
    "bool_B11S": dict(mask="bool", mshape=lambda B, H, L, S: (B, 1, 1, S)),
    "float_LS": dict(mask="float", mshape=lambda B, H, L, S: (L, S)),
    "float_full": dict(mask="float", mshape=lambda B, H, L, S: (B, H, L, S)),
    "float_L1": dict(mask="float", mshape=lambda B, H, L, S: (L, 1)),
    "float_neginf": dict(mask="neginf", mshape=lambda B, H, L, S: (B, 1, L, S)),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("LS", [(9, 9), (7, 11), (12, 5)])
def test_sdpa_against_math_with_autograd(case, LS):
    B, H, (L, S), E, Ev = 2, 3, LS, 16, 8
    c = dict(CASES[case])
    if c.get("is_causal") and L != S:
        c["is_causal"] = True                      # top-left triangle, as PyTorch
    q, k, v = inputs((B, H, L, E), (B, H, S, E), Ev, seed=hash(case) % 1000)
    mask = None
    if "mask" in c:
        g = torch.Generator().manual_seed(5)
        shp = c["mshape"](B, H, L, S)
        if c["mask"] == "bool":
            mask = torch.rand(*shp, generator=g) > 0.3
        else:
            mask = torch.randn(*shp, generator=g)
            if c["mask"] == "neginf":
                mask[..., ::2] = -math.inf
    kw = dict(attn_mask=mask, is_causal=c.get("is_causal", False), scale=c.get("scale"))
    out = at.scaled_dot_product_attention(q, k, v, **kw)
    ref = math_sdpa(q, k, v, **kw)
    close(out, ref)
    dout = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), dout)
    want = torch.autograd.grad(ref, (q, k, v), dout.double())
    for a, b in zip(got, want):
        close(a, b, 5e-5)
    new = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
    if new is not None and (mask is None or mask.dtype != torch.bool or mask.any(-1).all()):
        close(out, new(q, k, v, **{kk: vv for kk, vv in kw.items() if vv is not None or kk == "attn_mask"}), 1e-4)


def test_shapes_gqa_batch_dims_and_strides():
    # grouped-query heads: 4 query heads over 2 key/value heads
    q, k, v = inputs((2, 4, 6, 8), (2, 2, 7, 8))
    out = at.scaled_dot_product_attention(q, k, v)
    ref = math_sdpa(q, k, v)
    close(out, ref)
    for a, b in zip(torch.autograd.grad(out.sum(), (q, k, v)), torch.autograd.grad(ref.sum(), (q, k, v))):
        close(a, b, 5e-5)
    # 3-D (N, L, E), 2-D (L, E), 5-D (A, N, H, L, E)
    for sq, sk in (((3, 5, 8), (3, 6, 8)), ((5, 8), (6, 8)), ((2, 3, 2, 5, 8), (2, 3, 2, 6, 8))):
        q, k, v = inputs(sq, sk)
        out = at.scaled_dot_product_attention(q, k, v, is_causal=True)
        assert out.shape == sq
        close(out, math_sdpa(q, k, v, is_causal=True))
        close(torch.autograd.grad(out.sum(), q)[0], torch.autograd.grad(math_sdpa(q, k, v, is_causal=True).sum(), q)[0],
              5e-5)
    # (B, L, H, E) tensors transposed to (B, H, L, E): read in place, gradients in the same layout
    base = torch.randn(2, 9, 3, 3, 16, requires_grad=True)
    q, k, v = (base[:, :, i].transpose(1, 2) for i in range(3))
    assert not q.is_contiguous()
    out = at.scaled_dot_product_attention(q, k, v)
    ref = math_sdpa(q, k, v)
    close(out, ref)
    close(torch.autograd.grad(out.sum(), base)[0], torch.autograd.grad(ref.sum(), base)[0], 5e-5)
    # broadcast key/value (batch 1 against 3) and an expanded key
    q, k, v = inputs((3, 2, 4, 8), (1, 2, 5, 8))
    out = at.scaled_dot_product_attention(q, k, v)
    ref = math_sdpa(q, k.expand(3, -1, -1, -1), v.expand(3, -1, -1, -1))
    close(out, ref)
    close(torch.autograd.grad(out.sum(), k)[0], torch.autograd.grad(ref.sum(), k)[0], 5e-5)
    # non-contiguous last axis: copied, same result
    q, k, v = inputs((2, 2, 6, 8), (2, 2, 6, 8))
    qt = q.detach().transpose(-1, -2).contiguous().transpose(-1, -2)
    assert torch.equal(at.scaled_dot_product_attention(qt, k, v), at.scaled_dot_product_attention(q, k, v))


def test_gradcheck_small_float32():
    q, k, v = inputs((1, 2, 3, 4), (1, 2, 5, 4), 3)
    mask = torch.tensor([[True, False, True, True, False]] * 3)
    bias = torch.randn(3, 5)
    kw = dict(eps=1e-3, atol=1e-2, rtol=1e-2, nondet_tol=0.0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.autograd.gradcheck(lambda a, b, c: at.scaled_dot_product_attention(a, b, c), (q, k, v), **kw)
        assert torch.autograd.gradcheck(lambda a, b, c: at.scaled_dot_product_attention(a, b, c, is_causal=True),
                                        (q, k, v), **kw)
        assert torch.autograd.gradcheck(lambda a, b, c: at.scaled_dot_product_attention(a, b, c, attn_mask=mask),
                                        (q, k, v), **kw)
        assert torch.autograd.gradcheck(lambda a, b, c: at.scaled_dot_product_attention(a, b, c, attn_mask=bias),
                                        (q, k, v), **kw)

        qg, kg, vg = inputs((1, 4, 3, 4), (1, 2, 4, 4), 3, seed=4)    # grouped-query heads
        assert torch.autograd.gradcheck(lambda a, b, c: at.scaled_dot_product_attention(a, b, c), (qg, kg, vg), **kw)
        base = torch.randn(1, 3, 3, 2, 4).requires_grad_()             # (B, L, 3, H, E) viewed as (B, H, L, E)
        assert torch.autograd.gradcheck(
            lambda x: at.scaled_dot_product_attention(*(x[:, :, i].transpose(1, 2) for i in range(3))), (base,), **kw)

        def dropped(a, b, c):
            torch.manual_seed(3)
            return at.scaled_dot_product_attention(a, b, c, dropout_p=0.4)
        assert torch.autograd.gradcheck(dropped, (q, k, v), **kw)


def test_dropout_follows_torch_seed():
    q, k, v = inputs((1, 2, 8, 8), (1, 2, 8, 8))
    torch.manual_seed(1)
    a = at.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    torch.manual_seed(1)
    b = at.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    c = at.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, at.scaled_dot_product_attention(q, k, v))


def test_fully_masked_row_is_zero_not_nan():
    q, k, v = inputs((1, 1, 3, 4), (1, 1, 4, 4))
    m = torch.ones(3, 4, dtype=torch.bool)
    m[1] = False
    out = at.scaled_dot_product_attention(q, k, v, attn_mask=m)
    assert torch.equal(out[0, 0, 1], torch.zeros(4))
    g = torch.autograd.grad(out.sum(), q)[0]
    assert torch.isfinite(g).all() and torch.equal(g[0, 0, 1], torch.zeros(4))


def test_errors_name_the_argument():
    q, k, v = inputs((2, 2, 4, 8), (2, 2, 5, 8))
    with pytest.raises(TypeError, match="^query: expected torch.float32 or torch.bfloat16, got torch.float64"):
        at.scaled_dot_product_attention(q.double(), k, v)
    with pytest.raises(TypeError, match="^value: expected a torch.Tensor"):
        at.scaled_dot_product_attention(q, k, v.tolist())
    with pytest.raises(ValueError, match="^key: expected a last dimension"):
        at.scaled_dot_product_attention(q, k[..., :7], v)
    with pytest.raises(ValueError, match="^value: expected the leading shape"):
        at.scaled_dot_product_attention(q, k, v[:, :, :4])
    with pytest.raises(ValueError, match="^attn_mask: shape"):
        at.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="^attn_mask: is_causal"):
        at.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(4, 5, dtype=torch.bool), is_causal=True)
    with pytest.raises(ValueError, match="^dropout_p"):
        at.scaled_dot_product_attention(q, k, v, dropout_p=1.0)
    with pytest.raises(TypeError, match="^attn_mask: expected a bool or float"):
        at.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(4, 5, dtype=torch.int64))


def pair(*args, **kw):
    torch.manual_seed(0)
    ours = at.MultiheadAttention(*args, **kw)
    ref = torch.nn.MultiheadAttention(*args, **kw)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("masks", ["none", "kpm_bool", "kpm_float", "am_bool", "am_float3", "both"])
def test_multihead_attention_drop_in(batch_first, masks):
    E, H, N, L, S = 32, 4, 3, 6, 7
    ours, ref = pair(E, H, batch_first=batch_first)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(N, L, E, generator=g)
    mem = torch.randn(N, S, E, generator=g)
    if not batch_first:
        x, mem = x.transpose(0, 1), mem.transpose(0, 1)
    kw = {}
    if masks in ("kpm_bool", "both"):
        kpm = torch.zeros(N, S, dtype=torch.bool)
        kpm[0, 4:] = True
        kpm[2, 1] = True
        kw["key_padding_mask"] = kpm
    if masks == "kpm_float":
        kw["key_padding_mask"] = torch.randn(N, S, generator=g)
    if masks in ("am_bool", "both"):
        am = torch.rand(L, S, generator=g) > 0.7      # True = NOT allowed (nn.MultiheadAttention's convention)
        am[:, 0] = False
        kw["attn_mask"] = am
    if masks == "am_float3":
        kw["attn_mask"] = torch.randn(N * H, L, S, generator=g)
    for avg in (True, False):
        o1, w1 = ours(x, mem, mem, average_attn_weights=avg, **kw)
        o2, w2 = ref(x, mem, mem, average_attn_weights=avg, **kw)
        close(o1, o2)
        close(w1, w2)
    o1, w1 = ours(x, mem, mem, need_weights=False, **kw)
    assert w1 is None
    o2, _ = ref(x, mem, mem, need_weights=False, **kw)
    close(o1, o2)
    g1 = torch.autograd.grad(o1.square().sum(), list(ours.parameters()))
    g2 = torch.autograd.grad(o2.square().sum(), list(ref.parameters()))
    for a, b in zip(g1, g2):
        close(a, b, 1e-4)


def test_multihead_self_attention_kdim_vdim_unbatched():
    ours, ref = pair(16, 2, batch_first=True)
    x = torch.randn(2, 5, 16, requires_grad=True)
    o1, _ = ours(x, x, x, need_weights=False)
    o2, _ = ref(x, x, x, need_weights=False)
    close(o1, o2)
    close(torch.autograd.grad(o1.sum(), x)[0], torch.autograd.grad(o2.sum(), x)[0], 1e-4)
    ours, ref = pair(16, 4, kdim=8, vdim=12, batch_first=True)
    q, k, v = torch.randn(2, 3, 16), torch.randn(2, 5, 8), torch.randn(2, 5, 12)
    o1, w1 = ours(q, k, v)
    o2, w2 = ref(q, k, v)
    close(o1, o2)
    close(w1, w2)
    ours, ref = pair(16, 2)
    q = torch.randn(4, 16)                             # unbatched (L, E)
    o1, w1 = ours(q, q, q)
    o2, w2 = ref(q, q, q)
    assert o1.shape == o2.shape and w1.shape == w2.shape
    close(o1, o2)
    ours.train()
    torch.manual_seed(0)
    od, _ = pair(16, 2, dropout=0.5)[0](q, q, q)
    assert od.shape == o1.shape


def test_training_step_matches_torch():
    ours, ref = pair(32, 4, batch_first=True)
    opt1, opt2 = torch.optim.Adam(ours.parameters(), 1e-2), torch.optim.Adam(ref.parameters(), 1e-2)
    x = torch.randn(4, 10, 32)
    for _ in range(3):
        for m, opt in ((ours, opt1), (ref, opt2)):
            opt.zero_grad()
            m(x, x, x, need_weights=False)[0].square().mean().backward()
            opt.step()
    for a, b in zip(ours.parameters(), ref.parameters()):   # Adam magnifies float32 rounding near zero
        close(a, b, 2e-3)


@pytest.mark.parametrize("kind", ["lens_batch", "lens_query", "causal_cache", "mask_bias", "weights"])
def test_attention_every_mask(kind):
    from conftest import ref_sdpa
    B, H, Hkv, T, S = 2, 4, 2, 5, 8
    q, k, v = inputs((B, H, T, 8), (B, Hkv, S, 8), 6)
    g = torch.Generator().manual_seed(9)
    kw = {"lens_batch": dict(valid_lens=torch.tensor([3, 8])),
          "lens_query": dict(valid_lens=torch.tensor([[1, 2, 3, 4, 0], [8, 7, 6, 5, 4]])),
          "causal_cache": dict(causal=True),
          "mask_bias": dict(mask=torch.rand(T, S, generator=g) > 0.3, bias=torch.randn(B, 1, T, S, generator=g)),
          "weights": dict(valid_lens=torch.tensor([3, 6]), need_weights=True)}[kind]
    res = at.attention(q, k, v, **kw)
    out = res[0] if kind == "weights" else res
    np_kw = {kk: vv.numpy() if isinstance(vv, torch.Tensor) else vv for kk, vv in kw.items() if kk != "need_weights"}
    r_out, r_w, _, back = ref_sdpa(q.detach().numpy(), k.detach().numpy(), v.detach().numpy(), **np_kw)
    close(out, torch.from_numpy(r_out))
    if kind == "weights":
        close(res[1], torch.from_numpy(r_w))
    dout = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), dout), back(dout.numpy())):
        close(a, torch.from_numpy(b), 5e-5)
    with pytest.raises(ValueError, match="^valid_lens: expected shape"):
        at.attention(q, k, v, valid_lens=torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="^mask: expected a boolean"):
        at.attention(q, k, v, mask=torch.ones(T, S))


def test_backward_twice_on_strided_inputs():
    base = torch.randn(2, 5, 3, 2, 8, requires_grad=True)
    q, k, v = (base[:, :, i].transpose(1, 2) for i in range(3))
    out = at.scaled_dot_product_attention(q, k, v, is_causal=True)
    first = torch.autograd.grad(out.sum(), base, retain_graph=True)[0]
    second = torch.autograd.grad(out.sum(), base)[0]
    assert torch.equal(first, second)


@pytest.mark.parametrize("causal", [False, True])
def test_bfloat16_tensors_forward_and_backward(causal):
    """bf16 query/key/value: out and the gradients come back bf16, within bf16 rounding of the float64
    math on the same (bf16-rounded) inputs."""
    g = torch.Generator().manual_seed(7)
    B, H, T, S, D = 2, 3, 37, 37, 32
    q, k, v = (torch.randn(B, H, n, D, generator=g).to(torch.bfloat16).requires_grad_() for n in (T, S, S))
    out = at.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert out.dtype == torch.bfloat16 and out.shape == (B, H, T, D)
    dout = torch.randn(out.shape, generator=g).to(torch.bfloat16)
    out.backward(dout)
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    x = q64 @ k64.transpose(-1, -2) / D ** 0.5
    if causal:
        x = x.masked_fill(~torch.ones(T, S, dtype=torch.bool).tril(), float("-inf"))
    ref = torch.softmax(x, -1) @ v64
    ref.backward(dout.double())
    assert torch.allclose(out.double(), ref, atol=3e-2, rtol=3e-2)
    for got, want in ((q.grad, q64.grad), (k.grad, k64.grad), (v.grad, v64.grad)):
        assert got.dtype == torch.bfloat16
        assert torch.allclose(got.double(), want, atol=5e-2, rtol=5e-2), float((got.double() - want).abs().max())


def test_mixed_dtypes_are_refused():
    q = torch.randn(1, 1, 4, 8)
    with pytest.raises(TypeError, match="one dtype"):
        at.scaled_dot_product_attention(q, q.to(torch.bfloat16), q)
