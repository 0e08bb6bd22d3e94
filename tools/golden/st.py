"""st.py — reads and writes safetensors files without the safetensors package (not in Debian's PyTorch 1.13
setup).

    save(path, {"q": tensor_or_ndarray, ...}, metadata={"note": "..."})
    tensors, metadata = load(path)          # {name: numpy array}, {key: value}

Tensors are written as float64 ("F64"), float32 ("F32"), int32 ("I32"), int64 ("I64"), uint8 ("U8") or
bool ("BOOL"), row-major, little-endian. The header lists them in the order given; their bytes are placed by
decreasing element size (as PyTorch's safetensors does), so every tensor starts aligned for its dtype, and
the header is padded with spaces to a multiple of 8. load() checks what PyTorch's safetensors checks
(offsets tile the data area exactly). The C reader and writer are src/io/safetensors.c.
"""
import json
import struct

_DTYPES = {"float64": "F64", "float32": "F32", "int32": "I32", "int64": "I64", "uint8": "U8", "bool": "BOOL"}
_NUMPY = {"F64": "<f8", "F32": "<f4", "I32": "<i4", "I64": "<i8", "U8": "u1", "BOOL": "?"}


def save(path, tensors, metadata=None):
    import numpy as np
    arrays = []
    for name, t in tensors.items():
        a = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        a = np.ascontiguousarray(a).reshape(a.shape)   # ascontiguousarray makes 0-d arrays 1-d
        dtype = _DTYPES[str(a.dtype)]
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        arrays.append((name, dtype, list(a.shape), raw))
    offsets, offset = {}, 0
    for size in (8, 4, 1):                      # data by decreasing element size: every tensor aligned
        for name, dtype, shape, raw in arrays:
            if np.dtype(_NUMPY[dtype]).itemsize == size:
                offsets[name] = offset
                offset += len(raw)
    header = {name: {"dtype": dtype, "shape": shape, "data_offsets": [offsets[name], offsets[name] + len(raw)]}
              for name, dtype, shape, raw in arrays}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, dtype, shape, raw in sorted(arrays, key=lambda a: offsets[a[0]]):
            f.write(raw)


def load(path):
    import numpy as np
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} larger than the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    body = data[8 + n:]
    spans = sorted((info["data_offsets"][0], info["data_offsets"][1], name) for name, info in header.items())
    pos = 0
    for begin, end, name in spans:
        if begin != pos or end < begin:
            raise ValueError(f"{path}: tensor {name}: offsets [{begin}, {end}] do not follow {pos}")
        pos = end
    if pos != len(body):
        raise ValueError(f"{path}: tensors cover {pos} of {len(body)} data bytes")
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        a = np.frombuffer(body[begin:end], dtype=_NUMPY[info["dtype"]])
        out[name] = a.reshape(info["shape"])
    return out, metadata
