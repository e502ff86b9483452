"""dnn_adapter: lossless PyTorch weight compression with succinct structures.

Tensors become runtime-accessible sequences (RAS) stored in ``wavelet`` trees; models run
inference straight from the compressed form. See :func:`wrap`, :func:`save`, :func:`load`,
:func:`report` and the codecs in :mod:`dnn_adapter.codecs`.
"""

from .codecs import Codec, CodecError, Encoded, encode_best, get_codec, register_codec, registry
from .io import FileFormatError, load, save
from .ras import RAS
from .reporting import Report, count_macs, report
from .wrapping import InferenceOnlyError, WrapConfig, is_wrapped, set_prefetch, unwrap, wrap

__all__ = [
    "wrap",
    "save",
    "load",
    "FileFormatError",
    "unwrap",
    "is_wrapped",
    "set_prefetch",
    "WrapConfig",
    "InferenceOnlyError",
    "report",
    "Report",
    "count_macs",
    "RAS",
    "Codec",
    "CodecError",
    "Encoded",
    "encode_best",
    "get_codec",
    "register_codec",
    "registry",
]
