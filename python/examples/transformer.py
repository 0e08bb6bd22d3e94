"""transformer.py — the d2l Transformer replica (tools/replica/transformer.py) with its attention swapped
for attn's: every d2l MultiHeadAttention runs attn.torch.attention (valid lengths as the book's
masked_softmax, dropout on the weights) on (B,H,T,d) views of its projections, instead of the book's
bmm + masked softmax + bmm on (B·H, T, d) copies. Everything else — data, model, initialisation, Adam,
clipping, decoding, BLEU — is the replica's own code.

    PYTHONPATH=python /usr/bin/python3 python/examples/transformer.py [--attention attn|torch]
                                                    [--data ../shared/data] [--seeds 1,2,3] [--epochs 200]

--attention torch runs the replica unchanged, for comparing loss curves and speed in the same way.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "replica"))
sys.path.insert(0, os.path.join(ROOT, "tools", "golden"))

import d2l  # noqa: E402
import attn.torch as at  # noqa: E402


def attn_mha_forward(self, queries, keys, values, valid_lens):
    """d2l's MultiHeadAttention.forward on attn: the same parameters and results."""
    B, T, S, H = queries.shape[0], queries.shape[1], keys.shape[1], self.num_heads
    q = self.W_q(queries).view(B, T, H, -1).transpose(1, 2)         # (B,H,T,d) strided views, no copies
    k = self.W_k(keys).view(B, S, H, -1).transpose(1, 2)
    v = self.W_v(values).view(B, S, H, -1).transpose(1, 2)
    p = self.attention.dropout.p if self.training else 0.0
    out = at.attention(q, k, v, valid_lens=valid_lens, dropout_p=p)   # (B,H,T,d)
    return self.W_o(out.transpose(1, 2).reshape(B, T, -1))


def main():
    args = sys.argv[1:]
    which = "attn"
    if "--attention" in args:
        i = args.index("--attention")
        which = args[i + 1]
        del args[i:i + 2]
        if which not in ("attn", "torch"):
            sys.exit("transformer.py: --attention takes attn or torch")
    if "--data" not in args:
        args += ["--data", os.path.join(ROOT, "..", "shared", "data")]
    if which == "attn":
        d2l.MultiHeadAttention.forward = attn_mha_forward
    print(f"attention: {'attn.torch.attention' if which == 'attn' else 'the book (torch bmm + masked_softmax)'}")
    import transformer
    sys.argv = [sys.argv[0]] + args
    transformer.main()


if __name__ == "__main__":
    main()
