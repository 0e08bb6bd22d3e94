"""gen_transformer.py — golden files for the Transformer's layers and blocks (the d2l book's chapter on the
Transformer, d2l 0.17's PyTorch code, restated in d2l.py).

    /usr/bin/python3 tools/golden/gen_transformer.py tests/golden

Writes
  transformer_layers.safetensors  D=8, F=12, B=2, T=4:
      posenc.P (T,D) the table; posenc.x, posenc.y = x·sqrt(D) + P (dropout 0)
      ffn.x (B,T,D), ffn.dense1.weight (F,D) .bias, ffn.dense2.weight (D,F) .bias, ffn.y, ffn.g,
          and grad.ffn.<x|param> of loss = Σ y·g
      addnorm.x, addnorm.s (B,T,D), addnorm.ln.weight/.bias (D), addnorm.y, addnorm.g, grad.addnorm.*
  transformer_blocks.safetensors  D=8, F=12, H=2, B=2, source S=5 with valid lengths src_lens = [3, 5],
      target T=4:
      enc.* a TransformerEncoderBlock under its state_dict names, enc.x (B,S,D), enc.y, enc.g,
          grad.enc.x and grad.enc.<param>
      dec.* a TransformerDecoderBlock (training mode: causal self-attention), dec.x (B,T,D), dec.enc
          (B,S,D), dec.y, dec.g, dec.cross_weights (B,H,T,S), grad.dec.x, grad.dec.enc, grad.dec.<param>
  transformer_model.safetensors  d2l's EncoderDecoder(TransformerEncoder, TransformerDecoder), Vs=9, Vt=10,
      D=8, F=12, H=2, 2 blocks, T=5, B=3, written as an `attn translate` checkpoint (every parameter under
      its state_dict name, the config in the metadata, so attn_transformer_load reads it), plus X, X_len,
      Y, Y_len (I32), loss (the summed masked cross-entropy with teacher forcing, as d2l's train_seq2seq),
      grad.<name> of every parameter, and pred (I32): the greedy translation of X[0] (each step runs the
      decoder over the whole prefix with the causal mask, i.e. with the positions training saw;
      d2l's predict_seq2seq adds position 0's encoding at every step instead).
Dropout is 0 (PyTorch's masks cannot be reproduced); the C tests check dropout by finite differences.
Parameters are drawn in float32, the math runs in float64 and results are stored as float32.
"""
import math
import os
import sys

# Byte-reproducible output: one SIMD path for torch's CPU kernels (its vectorized randn and exp give other
# bits on the scalar path than on the AVX2/AVX-512 ones, and those two agree) and one thread, set before
# torch loads.
os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402
from d2l import (DecoderBlock, EncoderBlock, EncoderDecoder, PositionalEncoding,  # noqa: E402
                 PositionWiseFFN, AddNorm, TransformerDecoder, TransformerEncoder)

torch.manual_seed(11)
torch.set_default_dtype(torch.float64)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def rnd(*shape):
    return torch.randn(*shape, dtype=torch.float32).double()


# ---------------------------------------------------------------------------------------------------
def randomize(mod):
    with torch.no_grad():
        for n, p in mod.named_parameters():
            if n.endswith("ln.weight"):
                p.copy_(1.0 + 0.2 * rnd(*p.shape))
            elif n.endswith("ln.bias"):
                p.copy_(0.2 * rnd(*p.shape))
            else:
                p.copy_(torch.empty(p.shape, dtype=torch.float32).uniform_(-0.6, 0.6).double())


def gen_layers(out_dir):
    D, F, B, T = 8, 12, 2, 4
    d = {}
    pe = PositionalEncoding(D, 0.0)
    x = rnd(B, T, D)
    d["posenc.P"] = f32(pe.P[0, :T])
    d["posenc.x"] = f32(x)
    d["posenc.y"] = f32(pe(x * math.sqrt(D)))

    ffn = PositionWiseFFN(D, F, D)
    randomize(ffn)
    x = rnd(B, T, D).requires_grad_()
    g = rnd(B, T, D)
    y = ffn(x)
    (y * g).sum().backward()
    for n, p in ffn.named_parameters():
        d["ffn." + n] = f32(p)
        d["grad.ffn." + n] = f32(p.grad)
    d.update({"ffn.x": f32(x), "ffn.y": f32(y), "ffn.g": f32(g), "grad.ffn.x": f32(x.grad)})

    an = AddNorm([D], 0.0)
    randomize(an)
    x = rnd(B, T, D).requires_grad_()
    s = rnd(B, T, D).requires_grad_()
    g = rnd(B, T, D)
    y = an(x, s)
    (y * g).sum().backward()
    for n, p in an.named_parameters():
        d["addnorm." + n] = f32(p)
        d["grad.addnorm." + n] = f32(p.grad)
    d.update({"addnorm.x": f32(x), "addnorm.s": f32(s), "addnorm.y": f32(y), "addnorm.g": f32(g),
              "grad.addnorm.x": f32(x.grad), "grad.addnorm.s": f32(s.grad)})
    st.save(os.path.join(out_dir, "transformer_layers.safetensors"), d,
            metadata={"D": D, "F": F, "B": B, "T": T})


def gen_blocks(out_dir):
    D, F, H, B, S, T = 8, 12, 2, 2, 5, 4
    lens = torch.tensor([3, 5])
    d = {"src_lens": lens.to(torch.int32)}

    enc = EncoderBlock(D, F, H, 0.0)
    randomize(enc)
    enc.train()
    x = rnd(B, S, D).requires_grad_()
    g = rnd(B, S, D)
    y = enc(x, lens)
    (y * g).sum().backward()
    for n, p in enc.named_parameters():
        d["enc." + n] = f32(p)
        d["grad.enc." + n] = f32(p.grad)
    d.update({"enc.x": f32(x), "enc.y": f32(y), "enc.g": f32(g), "grad.enc.x": f32(x.grad)})

    dec = DecoderBlock(D, F, H, 0.0)
    randomize(dec)
    dec.train()
    x = rnd(B, T, D).requires_grad_()
    e = rnd(B, S, D).requires_grad_()
    g = rnd(B, T, D)
    y = dec(x, e, lens)
    (y * g).sum().backward()
    for n, p in dec.named_parameters():
        d["dec." + n] = f32(p)
        d["grad.dec." + n] = f32(p.grad)
    w = dec.attention2.attention.attention_weights.reshape(B, H, T, S)
    d.update({"dec.x": f32(x), "dec.enc": f32(e), "dec.y": f32(y), "dec.g": f32(g), "dec.cross_weights": f32(w),
              "grad.dec.x": f32(x.grad), "grad.dec.enc": f32(e.grad)})
    st.save(os.path.join(out_dir, "transformer_blocks.safetensors"), d,
            metadata={"D": D, "F": F, "H": H, "B": B, "S": S, "T": T})


def gen_model(out_dir):
    Vs, Vt, D, F, H, L, T, B = 9, 10, 8, 12, 2, 2, 5, 3
    net = EncoderDecoder(TransformerEncoder(Vs, D, F, H, L, 0.0), TransformerDecoder(Vt, D, F, H, L, 0.0))
    randomize(net)
    with torch.no_grad():
        net.encoder.embedding.weight.copy_(rnd(Vs, D))
        net.decoder.embedding.weight.copy_(rnd(Vt, D))
        net.decoder.dense.bias[2] -= 3.0          # <bos> is never a useful prediction: make the decoding vary
    net.train()                                   # dropout 0; the decoder's self-attention causal
    X = torch.tensor([[4, 5, 6, 3, 1], [7, 3, 1, 1, 1], [8, 4, 5, 6, 3]])
    X_len = torch.tensor([4, 2, 5])
    Y = torch.tensor([[5, 6, 3, 1, 1], [7, 8, 9, 4, 3], [9, 3, 1, 1, 1]])
    Y_len = torch.tensor([3, 5, 2])
    bos = torch.full((B, 1), 2)
    dec_in = torch.cat([bos, Y[:, :-1]], 1)
    enc = net.encoder(X, X_len)
    Y_hat = net.decoder(dec_in, enc, X_len)
    ce = nn.functional.cross_entropy(Y_hat.permute(0, 2, 1), Y, reduction="none")
    w = (torch.arange(T)[None, :] < Y_len[:, None]).double()
    loss = ((ce * w).mean(dim=1)).sum()
    loss.backward()
    d = {}
    for n, p in net.named_parameters():
        d[n] = f32(p)
    for n, p in net.named_parameters():
        d["grad." + n] = f32(p.grad)
    d.update({"X": X.to(torch.int32), "X_len": X_len.to(torch.int32), "Y": Y.to(torch.int32),
              "Y_len": Y_len.to(torch.int32), "loss": f32(loss.reshape(1))})
    # greedy decoding of X[0], the decoder rerun over the prefix (causal) at every step
    with torch.no_grad():
        enc = net.encoder(X[:1], X_len[:1])
        prefix, pred = [2], []
        for _ in range(T):
            out = net.decoder(torch.tensor([prefix]), enc, X_len[:1])
            tok = int(out[0, -1].argmax())
            if tok == 3:
                break
            pred.append(tok)
            prefix.append(tok)
    d["pred"] = torch.tensor(pred + [-1] * (T - len(pred)), dtype=torch.int32)
    meta = {"model": "transformer", "src_vocab": Vs, "tgt_vocab": Vt, "hidden": D, "ffn": F, "heads": H,
            "blocks": L, "dropout": 0, "num_steps": T, "n_pred": len(pred)}
    st.save(os.path.join(out_dir, "transformer_model.safetensors"), d, metadata=meta)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/golden"
    gen_layers(out)
    gen_blocks(out)
    gen_model(out)
