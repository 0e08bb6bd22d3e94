"""The ctypes structures in attn/_lib.py mirror the C headers: their sizes must match what a C compiler
gives for include/attn.h and include/attn/*.h (a field added in C but not here makes the library read
past the Python-made struct — which happened once, when the descriptor gained its data types)."""
import ctypes
import os
import shutil
import subprocess

import pytest

from attn import _lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INCLUDE = os.path.join(ROOT, "include")

STRUCTS = {
    "attn_ctx": _lib.Ctx,
    "attn_layout": _lib.Layout,
    "attn_mask": _lib.Mask,
    "attn_sdpa_desc": _lib.SdpaDesc,
    "attn_additive_desc": _lib.AdditiveDesc,
    "attn_heatmap": _lib.Heatmap,
    "attn_st_tensor": _lib.StTensor,
    "attn_st_file": _lib.StFile,
}


@pytest.mark.skipif(not os.path.isfile(os.path.join(INCLUDE, "attn.h")) or shutil.which("cc") is None,
                    reason="needs the source tree's headers and a C compiler")
def test_struct_sizes_match_the_headers(tmp_path):
    src = tmp_path / "sizes.c"
    body = "".join(f'    printf("{n} %zu\\n", sizeof({n}));\n' for n in STRUCTS)
    src.write_text("#include <stdio.h>\n#include <attn.h>\n#include <attn/heatmap.h>\n"
                   "#include <attn/safetensors.h>\nint main(void) {\n" + body + "    return 0;\n}\n")
    exe = tmp_path / "sizes"
    subprocess.run(["cc", "-std=c11", "-I", INCLUDE, str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    c_sizes = dict(zip(out[0::2], map(int, out[1::2])))
    for name, cls in STRUCTS.items():
        assert ctypes.sizeof(cls) == c_sizes[name], f"{name}: ctypes {ctypes.sizeof(cls)} bytes, C {c_sizes[name]}"
