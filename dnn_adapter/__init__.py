"""dnn_adapter: lossless PyTorch weight compression with succinct structures.

Tensors become runtime-accessible sequences (RAS) stored in ``wavelet`` trees; models run
inference straight from the compressed form. See :func:`wrap`, :func:`save`, :func:`load`,
:func:`report` and the codecs in :mod:`dnn_adapter.codecs`.
"""

from .codecs import Codec, CodecError, Encoded, encode_best, get_codec, register_codec, registry
from .ras import RAS

__all__ = [
    "RAS",
    "Codec",
    "CodecError",
    "Encoded",
    "encode_best",
    "get_codec",
    "register_codec",
    "registry",
]
