# The cffi extension is declared here because setuptools does not accept
# `cffi_modules` in pyproject.toml (python-cffi/cffi#55). Everything else is in
# pyproject.toml.
from setuptools import setup

setup(
    cffi_modules=[
        "wavelet_c/build_ffi.py:ffibuilder",
        "dnn_adapter/csrc/build_kernels.py:ffibuilder",
    ],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
