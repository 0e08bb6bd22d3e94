"""_lib.py — finds libattn, declares the C structures and signatures the package calls, and turns a
status into an exception.

The library is looked for, in order: the file named by the environment variable ATTN_LIBRARY; next to
this package (what `pip install ./python` puts there); the build folder of the source tree this package
sits in (`build/` beside `python/`, after `make`). Nothing is downloaded or compiled at import.

Calls go through ctypes.CDLL, which releases the GIL for the duration of every foreign call.
"""
import ctypes
import glob
import os

__all__ = ["lib", "AttnError", "check", "Ctx", "Layout", "Mask", "SdpaDesc", "AdditiveDesc", "path"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    env = os.environ.get("ATTN_LIBRARY")
    if env:
        return [env]
    found = []
    for d in (_HERE, os.path.join(_HERE, "..", "..", "build")):
        for name in ("libattn.so", "libattn.so.0", "libattn.dylib"):
            p = os.path.join(d, name)
            if os.path.exists(p):
                found.append(os.path.normpath(p))
        found += sorted(glob.glob(os.path.join(d, "libattn.so.*")))
    return found


def _load():
    tried = _candidates()
    errors = []
    for p in tried:
        try:
            return ctypes.CDLL(p), p
        except OSError as e:
            errors.append(f"{p}: {e}")
    if os.environ.get("ATTN_LIBRARY"):
        raise ImportError("attn: cannot load ATTN_LIBRARY: " + "; ".join(errors))
    raise ImportError(
        "attn: libattn.so not found (looked next to the package, in " + os.path.normpath(_HERE)
        + ", and in the source tree's build/ folder). Build it with `make` at the top of the source tree,"
        " install the package with `pip install ./python`, or set ATTN_LIBRARY to the library's path."
        + (" Errors: " + "; ".join(errors) if errors else ""))


lib, path = _load()

# ---- structures (mirror include/attn.h) ------------------------------------------------------------


class Ctx(ctypes.Structure):
    _fields_ = [("isa", ctypes.c_int), ("threads", ctypes.c_int)]


class Layout(ctypes.Structure):
    _fields_ = [("b", ctypes.c_int64), ("h", ctypes.c_int64), ("t", ctypes.c_int64)]


class Mask(ctypes.Structure):
    _fields_ = [("valid_lens_kind", ctypes.c_int), ("valid_lens", ctypes.c_void_p), ("causal", ctypes.c_int),
                ("allow", ctypes.c_void_p), ("allow_stride", ctypes.c_int64 * 3),
                ("bias", ctypes.c_void_p), ("bias_stride", ctypes.c_int64 * 3),
                ("window", ctypes.c_int), ("window_left", ctypes.c_int), ("window_right", ctypes.c_int),
                ("sinks", ctypes.c_int), ("sink_logits", ctypes.c_void_p), ("alibi_slopes", ctypes.c_void_p),
                ("softcap", ctypes.c_float), ("block_map", ctypes.c_void_p), ("block_size", ctypes.c_int),
                ("block_map_stride", ctypes.c_int64 * 3)]


class SdpaDesc(ctypes.Structure):
    _fields_ = [("B", ctypes.c_int), ("H", ctypes.c_int), ("Hkv", ctypes.c_int), ("T", ctypes.c_int),
                ("S", ctypes.c_int), ("D", ctypes.c_int), ("Dv", ctypes.c_int), ("scale", ctypes.c_float),
                ("q", Layout), ("k", Layout), ("v", Layout), ("out", Layout), ("mask", Mask),
                ("dropout", ctypes.c_float), ("seed", ctypes.c_uint64),
                ("dtype", ctypes.c_int), ("compute", ctypes.c_int)]   # attn_dtype: 0 = F32


class AdditiveDesc(ctypes.Structure):
    _fields_ = [("B", ctypes.c_int), ("T", ctypes.c_int), ("S", ctypes.c_int), ("Dq", ctypes.c_int),
                ("Dk", ctypes.c_int), ("Dv", ctypes.c_int), ("Dh", ctypes.c_int), ("mask", Mask),
                ("dropout", ctypes.c_float), ("seed", ctypes.c_uint64), ("compute", ctypes.c_int)]   # 0 = F32


class Heatmap(ctypes.Structure):
    _fields_ = [("values", ctypes.c_void_p), ("rows", ctypes.c_int), ("cols", ctypes.c_int),
                ("row_stride", ctypes.c_int64), ("row_labels", ctypes.c_void_p), ("col_labels", ctypes.c_void_p),
                ("title", ctypes.c_char_p), ("row_title", ctypes.c_char_p), ("col_title", ctypes.c_char_p),
                ("vmin", ctypes.c_float), ("vmax", ctypes.c_float), ("annotate", ctypes.c_int),
                ("palette", ctypes.c_int)]


class StTensor(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("ndim", ctypes.c_int),
                ("shape", ctypes.c_int64 * 8), ("data", ctypes.c_void_p), ("nbytes", ctypes.c_size_t)]


class StFile(ctypes.Structure):
    _fields_ = [("tensors", ctypes.POINTER(StTensor)), ("n", ctypes.c_int),
                ("meta_keys", ctypes.POINTER(ctypes.c_char_p)), ("meta_values", ctypes.POINTER(ctypes.c_char_p)),
                ("n_meta", ctypes.c_int), ("buffer", ctypes.c_void_p), ("size", ctypes.c_size_t)]


# ---- signatures -------------------------------------------------------------------------------------

_P = ctypes.c_void_p
_I = ctypes.c_int
_S = ctypes.c_int            # attn_status
_CP = ctypes.POINTER(Ctx)


def _sig(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_sig("attn_version", ctypes.c_char_p)
_sig("attn_status_string", ctypes.c_char_p, _I)
_sig("attn_ctx_init", _S, _CP, _I, _I)
_sig("attn_ctx_default", Ctx)
_sig("attn_set_num_threads", _S, _I)
_sig("attn_get_num_threads", _I)
_sig("attn_set_isa", _S, _I)
_sig("attn_get_isa", _I)
_sig("attn_cpu_supports", _I, _I)
_sig("attn_isa_name", ctypes.c_char_p, _I)
_sig("attn_isa_parse", _S, ctypes.c_char_p, ctypes.POINTER(_I))
_sig("attn_blas_set_num_threads", _S, _I)
_sig("attn_blas_core_name", ctypes.c_char_p)
_DP = ctypes.POINTER(SdpaDesc)
_sig("attn_sdpa_desc_init", _S, _DP, _I, _I, _I, _I, _I, _I)
_sig("attn_sdpa_validate", _S, _DP)
_sig("attn_sdpa_workspace_size", _S, _CP, _DP, _I, ctypes.POINTER(ctypes.c_size_t))
_sig("attn_sdpa_logsumexp", _S, _P, ctypes.c_int64, _P)
_sig("attn_sdpa_forward", _S, _CP, _DP, _P, _P, _P, _P, _P, _P, _P, ctypes.c_size_t)
_sig("attn_sdpa_backward", _S, _CP, _DP, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, ctypes.c_size_t)
_AP = ctypes.POINTER(AdditiveDesc)
_sig("attn_additive_desc_init", _S, _AP, _I, _I, _I, _I, _I, _I, _I)
_sig("attn_additive_workspace_size", _S, _CP, _AP, _I, ctypes.POINTER(ctypes.c_size_t))
_sig("attn_additive_forward", _S, _CP, _AP, _P, _P, _P, _P, _P, _P, _P, _P, _P, ctypes.c_size_t)
_sig("attn_additive_backward", _S, _CP, _AP, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P,
     ctypes.c_size_t)
_sig("attn_softmax", _S, _P, _I)
_sig("attn_palette_from_name", _S, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int))
_sig("attn_heatmap_png", _S, ctypes.POINTER(Heatmap), ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t)
_sig("attn_heatmap_png_grid", _S, ctypes.POINTER(Heatmap), _I, _I, ctypes.c_char_p, ctypes.c_char_p,
     ctypes.c_size_t)
_sig("attn_st_read", _S, ctypes.POINTER(StFile), ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
     ctypes.c_size_t)
_sig("attn_st_free", None, ctypes.POINTER(StFile))

# ---- errors -----------------------------------------------------------------------------------------

STATUS_NAMES = {0: "ATTN_OK", -1: "ATTN_ERR_NULL", -2: "ATTN_ERR_SIZE", -3: "ATTN_ERR_SHAPE",
                -4: "ATTN_ERR_STRIDE", -5: "ATTN_ERR_WORKSPACE", -6: "ATTN_ERR_ARG", -7: "ATTN_ERR_NOMEM",
                -8: "ATTN_ERR_IO", -9: "ATTN_ERR_FORMAT", -10: "ATTN_ERR_UNSUPPORTED"}


class AttnError(RuntimeError):
    """A call into libattn returned an error status. `status` is the number, `name` its C name
    (ATTN_ERR_SHAPE, ...), and the message holds attn_status_string's text."""

    def __init__(self, status, what, detail=None):
        self.status = status
        self.name = STATUS_NAMES.get(status, str(status))
        self.reason = lib.attn_status_string(status).decode()
        msg = f"{what}: {self.reason} ({self.name})"
        if detail:
            msg += ": " + detail
        super().__init__(msg)


def check(st, what, detail=None):
    if st != 0:
        raise AttnError(st, what, detail)
