"""scoring.py — the scoring walk-through: a decoder state scores four encoder states by dot product, the
naive softmax overflows, the stable one does not, and the weights give the context vector. Writes the
weights as a heatmap (scoring.png, or the path given).

    PYTHONPATH=python /usr/bin/python3 python/examples/scoring.py [out.png]
"""
import sys

import numpy as np

import attn

decoder = np.array([5, 1, 20], np.float32)
encoder = np.array([[3, 12, 45], [59, 2, 5], [1, 43, 5], [4, 3, 45.3]], np.float32)
print(f"decoder state  {decoder.tolist()}")
for i, e in enumerate(encoder):
    print(f"encoder state {i} {e.tolist()}")

scores = encoder @ decoder
print(f"dot scores     {' '.join(f'{s:g}' for s in scores)}")

with np.errstate(over="ignore", invalid="ignore"):
    e = np.exp(scores.astype(np.float64))
    print(f"naive softmax  exp(927) = {e[0]} in double: weights {e / e.sum()}")

weights = attn.softmax(scores)
print(f"stable softmax (max subtracted first): weights {' '.join(f'{w:.4f}' for w in weights)}")
context = weights @ encoder
print(f"context vector {' '.join(f'{c:.4f}' for c in context)}")

# the same through attention: one query, four keys that are also the values, unscaled
out, w = attn.sdpa(decoder[None, None, None], encoder[None, None], encoder[None, None], scale=1.0,
                   return_weights=True)
print(f"attn.sdpa with scale 1: weights {' '.join(f'{x:.4f}' for x in w[0, 0, 0])}  "
      f"context {' '.join(f'{x:.4f}' for x in out[0, 0, 0])}")

path = sys.argv[1] if len(sys.argv) > 1 else "scoring.png"
attn.heatmap_png(weights[None, :], path, row_labels=["decoder"], col_labels=[f"enc {i}" for i in range(4)],
                 title="attention weights", row_title="Query", col_title="Keys", vmin=0, vmax=1)
img = attn.heatmap_array(weights[None, :], vmin=0, vmax=1)
print(f"heatmap written to {path}; as an array: {img.shape} {img.dtype}")
