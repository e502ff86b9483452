"""cffi builder for ``dnn_adapter._kernels`` (out-of-line API mode).

The fused inference kernels belong to ``dnn_adapter`` (the design keeps ``wavelet`` a
general succinct-structure library), so they are a second extension with their own C in
``dnn_adapter/csrc``. As for ``wavelet._ffi`` (``wavelet_c/build_ffi.py``), the cdef is the
public header ``kernels.h`` with its preprocessor lines removed, and the flags are portable:
no ``-march=native``; an AVX2+FMA variant is compiled with ``__attribute__((target))`` and
chosen at run time. ``WAVELET_WERROR=1`` turns warnings into errors (CI),
``WAVELET_DEBUG=1`` builds -O0 -g, ``WAVELET_SANITIZE=1`` adds ASan/UBSan.
"""

import glob
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
REL = "dnn_adapter/csrc"


def _cdef_text():
    with open(os.path.join(HERE, "kernels.h"), encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            m = re.match(r"#define\s+(DNK_\w+)\s+(-?\d+)\s*$", s)
            if m:
                out.append(f"#define {m.group(1)} {m.group(2)}")
            continue
        out.append(line)
    return "\n".join(out)


ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())

_depends = sorted(
    os.path.join(REL, os.path.basename(p)) for p in glob.glob(os.path.join(HERE, "*.h"))
)
_args = [
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Wno-unused-function",
    "-fno-strict-aliasing",
    "-ffp-contract=fast",
]
if os.environ.get("WAVELET_DEBUG"):
    _args += ["-O0", "-g", "-UNDEBUG"]
else:
    _args += ["-O3", "-DNDEBUG"]
if os.environ.get("WAVELET_WERROR"):
    _args += ["-Werror"]
_link = []
if os.environ.get("WAVELET_SANITIZE"):
    _args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    _link += ["-fsanitize=address,undefined"]

ffibuilder.set_source(
    "dnn_adapter._kernels",
    '#include "kernels.h"',
    sources=[os.path.join(REL, "kernels.c")],
    include_dirs=[REL],
    depends=_depends,
    extra_compile_args=_args,
    extra_link_args=_link,
)
