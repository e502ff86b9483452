"""wavelet: succinct data structures with a C core.

Rank/select bitvectors, wavelet matrices and wavelet trees (balanced and
Huffman-shaped), with batch queries computed in C (GIL released), a shared
versioned binary format (save/load with mmap, to_bytes/from_bytes, pickle 5),
and CuPy twins for NVIDIA GPUs. Needs only numpy and cffi; never imports
torch.
"""

from ._bitvector import BitVector
from ._build_info import build_info, isa_level, set_isa_level
from ._core import WaveletError
from ._fields import gap_positions, gap_scatter, lookup, merge_float_fields, zero_signs
from ._wavelet_matrix import WaveletMatrix
from ._wavelet_tree import FieldDecoder, WaveletTree

__all__ = [
    "BitVector",
    "FieldDecoder",
    "WaveletError",
    "WaveletMatrix",
    "WaveletTree",
    "build_info",
    "gap_positions",
    "gap_scatter",
    "zero_signs",
    "lookup",
    "merge_float_fields",
    "isa_level",
    "set_isa_level",
]
__version__ = "0.1.0"
