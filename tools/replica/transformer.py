"""transformer.py — the d2l book's Transformer translator (d2l 0.17, PyTorch), trained as the book trains
it, as the oracle for `attn translate train --model transformer`: the same data pipeline, model,
initialization (Xavier-uniform Linear weights), loss, gradient clipping and Adam, on this machine's CPU.

    /usr/bin/python3 tools/replica/transformer.py [--data ../shared/data] [--seeds 1,2,3] [--epochs 200]
                                                   [--threads 2]

For each seed: trains, prints the book's closing line `loss X, Y tokens/sec`, translates the book's four
sentences with BLEU (k = 2), and prints the held-out BLEU of `attn translate bleu` (lines 601-1599 whose
words are all in the vocabularies). It needs python3-torch; nothing in the build or the tests runs it.

Both decodings are shown: `book` positions as the book's predict_seq2seq, which feeds one token per step
to a decoder that adds position 0's encoding to it every time; `true` positions give step t position t's
encoding, as `attn translate` does.
"""
import argparse
import collections
import math
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden"))
from d2l import EncoderDecoder, TransformerDecoder, TransformerEncoder, bleu, sequence_mask  # noqa: E402

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
BOOK = [("go .", "va !"), ("i lost .", "j'ai perdu ."), ("he's calm .", "il est calme ."),
        ("i'm home .", "je suis chez moi .")]


# ---------------------------------------------------------------------------------------------------
# the book's data pipeline (d2l 0.17 section 9.5)

def preprocess_nmt(text):
    def no_space(char, prev_char):
        return char in set(",.!?") and prev_char != " "
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    return "".join(" " + c if i > 0 and no_space(c, text[i - 1]) else c for i, c in enumerate(text))


def tokenize_nmt(text, first=0, last=None):
    source, target = [], []
    for i, line in enumerate(text.split("\n")):
        if i < first:
            continue
        if last is not None and i > last:
            break
        parts = line.split("\t")
        if len(parts) == 2:
            source.append(parts[0].split(" "))
            target.append(parts[1].split(" "))
    return source, target


class Vocab:
    def __init__(self, tokens, min_freq, reserved_tokens):
        counter = collections.Counter(tok for line in tokens for tok in line)
        freqs = sorted(counter.items(), key=lambda x: x[1], reverse=True)
        self.idx_to_token = ["<unk>"] + reserved_tokens
        self.token_to_idx = {t: i for i, t in enumerate(self.idx_to_token)}
        for token, freq in freqs:
            if freq < min_freq:
                break
            if token not in self.token_to_idx:
                self.idx_to_token.append(token)
                self.token_to_idx[token] = len(self.idx_to_token) - 1

    def __len__(self):
        return len(self.idx_to_token)

    def __getitem__(self, tokens):
        if not isinstance(tokens, (list, tuple)):
            return self.token_to_idx.get(tokens, 0)
        return [self[t] for t in tokens]


def truncate_pad(line, num_steps, padding_token):
    return line[:num_steps] if len(line) > num_steps else line + [padding_token] * (num_steps - len(line))


def build_array(lines, vocab, num_steps):
    lines = [vocab[line] + [vocab[EOS]] for line in lines]
    array = torch.tensor([truncate_pad(line, num_steps, vocab[PAD]) for line in lines])
    return array, (array != vocab[PAD]).type(torch.int32).sum(1)


# ---------------------------------------------------------------------------------------------------
# the book's training loop (d2l 0.17 section 9.7) and decoding

def masked_ce(pred, label, valid_len):
    weights = sequence_mask(torch.ones_like(label), valid_len)
    unweighted = nn.functional.cross_entropy(pred.permute(0, 2, 1), label, reduction="none")
    return (unweighted * weights).mean(dim=1)


def train(net, X, X_len, Y, Y_len, bos, epochs, lr, batch, every):
    def xavier_init_weights(m):
        if type(m) == nn.Linear:
            nn.init.xavier_uniform_(m.weight)
    net.apply(xavier_init_weights)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    seconds, n = 0.0, X.shape[0]
    for epoch in range(epochs):
        t0 = time.perf_counter()
        loss_sum, tokens = 0.0, 0
        for idx in torch.randperm(n).split(batch):
            optimizer.zero_grad()
            x, xl, y, yl = X[idx], X_len[idx], Y[idx], Y_len[idx]
            dec_input = torch.cat([torch.full((y.shape[0], 1), bos), y[:, :-1]], 1)    # teacher forcing
            enc = net.encoder(x, xl)
            l = masked_ce(net.decoder(dec_input, enc, xl), y, yl)
            l.sum().backward()
            params = [p for p in net.parameters() if p.requires_grad]
            norm = torch.sqrt(sum(torch.sum(p.grad ** 2) for p in params))
            if norm > 1:
                for p in params:
                    p.grad[:] *= 1 / norm
            optimizer.step()
            with torch.no_grad():
                loss_sum += float(l.sum())
                tokens += int(yl.sum())
        seconds += time.perf_counter() - t0
        if (epoch + 1) % every == 0:
            print(f"epoch {epoch + 1:4d}/{epochs}  loss {loss_sum / tokens:.4f}  ({seconds:.1f} s)", flush=True)
    print(f"loss {loss_sum / tokens:.3f}, {tokens * epochs / seconds:.1f} tokens/sec on cpu")
    return seconds


def decoder_step(dec, x, enc, enc_len, cache, t, positions):
    """One step of the book's TransformerDecoder with its key/value state (d2l 0.17 DecoderBlock, eval)."""
    p = 0 if positions == "book" else t
    x = dec.embedding(x) * math.sqrt(dec.num_hiddens) + dec.pos_encoding.P[:, p:p + 1, :].to(torch.float32)
    for i, blk in enumerate(dec.blks):
        kv = x if cache[i] is None else torch.cat((cache[i], x), dim=1)
        cache[i] = kv
        y = blk.addnorm1(x, blk.attention1(x, kv, kv, None))
        z = blk.addnorm2(y, blk.attention2(y, enc, enc, enc_len))
        x = blk.addnorm3(z, blk.ffn(z))
    return dec.dense(x)


def predict(net, sentence, src_vocab, tgt_vocab, num_steps, positions):
    net.eval()
    with torch.no_grad():
        src = src_vocab[sentence.lower().split(" ")] + [src_vocab[EOS]]
        enc_len = torch.tensor([len(src)])
        enc = net.encoder(torch.tensor([truncate_pad(src, num_steps, src_vocab[PAD])]), enc_len)
        cache, x, out = [None] * len(net.decoder.blks), torch.tensor([[tgt_vocab[BOS]]]), []
        for t in range(num_steps):
            x = decoder_step(net.decoder, x, enc, enc_len, cache, t, positions).argmax(dim=2)
            tok = int(x[0, 0])
            if tok == tgt_vocab[EOS]:
                break
            out.append(tok)
    return " ".join(tgt_vocab.idx_to_token[i] for i in out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--every", type=int, default=50)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    path = os.path.join(a.data, "fra-eng", "fra.txt")
    with open(path, encoding="utf-8") as f:
        text = preprocess_nmt(f.read())
    num_steps = 10
    source, target = tokenize_nmt(text, 0, 600)           # the book's off-by-one: lines 0..600
    src_vocab = Vocab(source, 2, [PAD, BOS, EOS])
    tgt_vocab = Vocab(target, 2, [PAD, BOS, EOS])
    X, X_len = build_array(source, src_vocab, num_steps)
    Y, Y_len = build_array(target, tgt_vocab, num_steps)
    held_src, held_tgt = tokenize_nmt(text, 601, 1599)
    held = [(" ".join(s), " ".join(t)) for s, t in zip(held_src, held_tgt)
            if all(w in src_vocab.token_to_idx for w in s) and all(w in tgt_vocab.token_to_idx for w in t)]
    print(f"{path}: {len(source)} pairs, vocabularies {len(src_vocab)} / {len(tgt_vocab)}; "
          f"{len(held)} held-out pairs; {a.threads} threads")
    for seed in [int(s) for s in a.seeds.split(",")]:
        torch.manual_seed(seed)
        D, F, H, L = 32, 64, 4, 2
        net = EncoderDecoder(TransformerEncoder(len(src_vocab), D, F, H, L, 0.1),
                             TransformerDecoder(len(tgt_vocab), D, F, H, L, 0.1))
        print(f"== seed {seed}")
        secs = train(net, X, X_len, Y, Y_len, tgt_vocab[BOS], a.epochs, 0.005, 64, a.every)
        print(f"trained in {secs:.1f} s")
        for positions in ("book", "true"):
            hits = 0
            for eng, fra in BOOK:
                pred = predict(net, eng, src_vocab, tgt_vocab, num_steps, positions)
                b = bleu(pred, fra, k=2)
                hits += b == 1.0
                print(f"{eng} => {pred}, bleu {b:.3f}")
            scores = [bleu(predict(net, s, src_vocab, tgt_vocab, num_steps, positions), t, k=2) for s, t in held]
            print(f"seed {seed}, {positions} positions: {hits}/4 book sentences at 1.000; held-out mean bleu "
                  f"{sum(scores) / len(scores):.3f} ({sum(s == 1.0 for s in scores)} of {len(scores)} exact)",
                  flush=True)

if __name__ == "__main__":
    main()
