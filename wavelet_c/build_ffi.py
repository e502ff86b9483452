"""cffi builder for ``wavelet._ffi`` (out-of-line API mode).

The cdef is the public header ``wavelet_c/wavelet.h`` itself with its
preprocessor lines removed (integer ``#define`` constants are kept, cffi
understands them), so the C API has a single source of truth, as
python-zstandard's ``make_cffi.py`` does.

Compiler flags are portable: no ``-march=native``. Hot kernels are compiled
twice inside the C sources (portable and POPCNT+BMI2 on x86-64) and chosen at
run time, so one wheel runs on any x86-64 or arm64 CPU. Set
``WAVELET_WERROR=1`` to turn warnings into errors (CI) and
``WAVELET_DEBUG=1`` for an -O0 -g build with assertions.
"""

import glob
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
REL = "wavelet_c"


def _cdef_text():
    with open(os.path.join(HERE, "wavelet.h"), encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            m = re.match(r"#define\s+(WV_\w+)\s+(-?\d+)\s*$", s)
            if m:
                out.append(f"#define {m.group(1)} {m.group(2)}")
            continue
        out.append(line)
    return "\n".join(out)


ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())

_sources = sorted(
    os.path.join(REL, os.path.basename(p)) for p in glob.glob(os.path.join(HERE, "*.c"))
)
_depends = sorted(
    os.path.join(REL, os.path.basename(p)) for p in glob.glob(os.path.join(HERE, "*.h"))
)

_args = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-function", "-fno-strict-aliasing"]
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
    "wavelet._ffi",
    '#include "wavelet.h"',
    sources=_sources,
    include_dirs=[REL],
    depends=_depends,
    extra_compile_args=_args,
    extra_link_args=_link,
    libraries=["pthread"] if os.name == "posix" else [],
)
