"""gen_seq2seq.py — golden files for the GRU and the d2l seq2seq model with Bahdanau attention.

    /usr/bin/python3 tools/golden/gen_seq2seq.py tests/golden

Writes
  seq2seq_gru.safetensors    a 2-layer nn.GRU (in 3, hidden 4), T=3, B=2, with h0: the parameters, x,
                             h0, out, h_n, and the gradients of loss = Σ out·g_out + Σ h_n·g_hn
                             (grad.x, grad.h0, grad.<param>).
  seq2seq_model.safetensors  the d2l EncoderDecoder (Seq2SeqEncoder + Seq2SeqAttentionDecoder with
                             AdditiveAttention, written out below as in the book, dropout 0), Vs=7,
                             Vt=8, E=4, H=5, L=2, T=4, B=3: every parameter under its state_dict name,
                             X, X_len, Y, Y_len, the summed masked loss (teacher forcing), the gradient
                             of every parameter (grad.<name>), and the greedy translation of X[0]
                             (pred, pred_weights (T,T)).
Parameters are drawn in float32 and the math runs in float64; results are stored as float32.
"""
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
from d2l import bleu, masked_softmax, sequence_mask  # noqa: E402  (the book's helpers)

torch.manual_seed(5)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


# ---------------------------------------------------------------------------------------------------
# GRU
def gen_gru(out_dir):
    T, B, I, H, L = 3, 2, 3, 4, 2
    gru = nn.GRU(I, H, L)
    with torch.no_grad():
        for p in gru.parameters():
            p.uniform_(-0.6, 0.6)
    gru = gru.double()
    x = torch.randn(T, B, I, dtype=torch.float32).double().requires_grad_()
    h0 = torch.randn(L, B, H, dtype=torch.float32).double().requires_grad_()
    g_out = torch.randn(T, B, H, dtype=torch.float32).double()
    g_hn = torch.randn(L, B, H, dtype=torch.float32).double()
    out, hn = gru(x, h0)
    loss = (out * g_out).sum() + (hn * g_hn).sum()
    loss.backward()
    d = {}
    for n, p in gru.named_parameters():
        d[n] = f32(p)
    d.update({"x": f32(x), "h0": f32(h0), "g_out": f32(g_out), "g_hn": f32(g_hn), "out": f32(out),
              "h_n": f32(hn), "grad.x": f32(x.grad), "grad.h0": f32(h0.grad)})
    for n, p in gru.named_parameters():
        d["grad." + n] = f32(p.grad)
    st.save(os.path.join(out_dir, "seq2seq_gru.safetensors"), d,
            metadata={"T": T, "B": B, "in": I, "hidden": H, "layers": L})


# ---------------------------------------------------------------------------------------------------
# The d2l model (the book's code, restated)


class AdditiveAttention(nn.Module):
    def __init__(self, key_size, query_size, num_hiddens, dropout):
        super().__init__()
        self.W_k = nn.Linear(key_size, num_hiddens, bias=False)
        self.W_q = nn.Linear(query_size, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens):
        queries, keys = self.W_q(queries), self.W_k(keys)
        features = torch.tanh(queries.unsqueeze(2) + keys.unsqueeze(1))
        scores = self.w_v(features).squeeze(-1)
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)


class Encoder(nn.Module):
    def __init__(self, V, E, H, L, dropout=0):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.rnn = nn.GRU(E, H, L, dropout=dropout)

    def forward(self, X):
        X = self.embedding(X).permute(1, 0, 2)
        return self.rnn(X)


class Decoder(nn.Module):
    def __init__(self, V, E, H, L, dropout=0):
        super().__init__()
        self.attention = AdditiveAttention(H, H, H, dropout)
        self.embedding = nn.Embedding(V, E)
        self.rnn = nn.GRU(E + H, H, L, dropout=dropout)
        self.dense = nn.Linear(H, V)

    def init_state(self, enc_outputs, enc_valid_lens):
        outputs, hidden_state = enc_outputs
        return (outputs.permute(1, 0, 2), hidden_state, enc_valid_lens)

    def forward(self, X, state):
        enc_outputs, hidden_state, enc_valid_lens = state
        X = self.embedding(X).permute(1, 0, 2)
        outputs, self.weights = [], []
        for x in X:
            query = torch.unsqueeze(hidden_state[-1], dim=1)
            context = self.attention(query, enc_outputs, enc_outputs, enc_valid_lens)
            x = torch.cat((context, torch.unsqueeze(x, dim=1)), dim=-1)
            out, hidden_state = self.rnn(x.permute(1, 0, 2), hidden_state)
            outputs.append(out)
            self.weights.append(self.attention.attention_weights)
        outputs = self.dense(torch.cat(outputs, dim=0))
        return outputs.permute(1, 0, 2), [enc_outputs, hidden_state, enc_valid_lens]


class EncoderDecoder(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, enc_X, dec_X, X_len):
        enc_outputs = self.encoder(enc_X)
        dec_state = self.decoder.init_state(enc_outputs, X_len)
        return self.decoder(dec_X, dec_state)


def masked_ce(pred, label, valid_len):
    weights = sequence_mask(torch.ones_like(label, dtype=pred.dtype), valid_len)
    unweighted = nn.functional.cross_entropy(pred.permute(0, 2, 1), label, reduction="none")
    return (unweighted * weights).mean(dim=1)


def gen_model(out_dir):
    Vs, Vt, E, H, L, T, B = 7, 8, 4, 5, 2, 4, 3
    net = EncoderDecoder(Encoder(Vs, E, H, L), Decoder(Vt, E, H, L))
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-0.8, 0.8)
    names = [n for n, _ in net.named_parameters()]
    params32 = {n: f32(p) for n, p in net.named_parameters()}
    net = net.double()
    X = torch.tensor([[4, 5, 6, 3], [5, 3, 1, 1], [6, 4, 3, 1]], dtype=torch.long)
    X_len = torch.tensor([4, 2, 3])
    Y = torch.tensor([[4, 5, 3, 1], [6, 7, 5, 3], [7, 3, 1, 1]], dtype=torch.long)
    Y_len = torch.tensor([3, 4, 2])
    bos = torch.full((B, 1), 2, dtype=torch.long)
    dec_in = torch.cat([bos, Y[:, :-1]], 1)
    Y_hat, _ = net(X, dec_in, X_len)
    loss = masked_ce(Y_hat, Y, Y_len).sum()
    loss.backward()
    d = dict(params32)
    d.update({"X": X.to(torch.int32), "X_len": X_len.to(torch.int32), "Y": Y.to(torch.int32),
              "Y_len": Y_len.to(torch.int32), "loss": torch.tensor([loss.item()], dtype=torch.float32)})
    for n, p in net.named_parameters():
        d["grad." + n] = f32(p.grad)

    # greedy decoding of X[0] (d2l's predict_seq2seq, without the cut at <eos> of the source)
    with torch.no_grad():
        enc_X = X[:1]
        enc_valid = X_len[:1]
        state = net.decoder.init_state(net.encoder(enc_X), enc_valid)
        dec_X = torch.tensor([[2]])
        pred, wts = [], torch.zeros(T, T, dtype=torch.float64)
        for t in range(T):
            Yp, state = net.decoder(dec_X, state)
            dec_X = Yp.argmax(dim=2)
            wts[t] = net.decoder.weights[0].reshape(-1)
            p = int(dec_X.item())
            if p == 3:
                break
            pred.append(p)
    d["pred"] = torch.tensor(pred + [-1] * (T - len(pred)), dtype=torch.int32)
    d["pred_weights"] = f32(wts)
    st.save(os.path.join(out_dir, "seq2seq_model.safetensors"), d,
            metadata={"src_vocab": Vs, "tgt_vocab": Vt, "embed": E, "hidden": H, "layers": L,
                      "num_steps": T, "batch": B, "names": ",".join(names)})


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/golden"
    gen_gru(out)
    gen_model(out)
    for p, l in [("il est malade .", "il est calme ."), ("va !", "va !"), ("je suis chez .", "je suis chez moi ."),
                 ("a b c d", "a b a b"), ("a a a", "a a b")]:
        print(f"bleu({p!r}, {l!r}) = {bleu(p, l, 2):.6f}")
