"""Children of ``python -m dnn_adapter bench``'s peak-memory measurement.

Each measurement runs in a fresh spawned process (:func:`dnn_adapter.memory.peak_rss_of`):
``setup`` builds the model there -- dense from a state-dict file, or loaded from the
compressed file in the given mode, fully read into memory (``mmap=False``) so the
compressed bytes are part of the baseline -- and ``forward`` runs one inference; the
reported increase is what the forward needs above the resident model: activations and
temporaries for the dense model, plus the decode workspace for streaming.
"""

from __future__ import annotations

import gc


def build(arch: str):
    from .models import DigitsCNN, resnet50, resnet101

    return {"digits": DigitsCNN, "resnet50": resnet50, "resnet101": resnet101}[arch]().eval()


def setup(arch, kind, path, mode, xshape, prefetch=False):
    import torch

    torch.set_num_threads(1)
    model = build(arch)
    if kind == "dense":
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        from .io import load
        from .wrapping import set_prefetch

        load(path, model, mode=mode, mmap=False, verify=False)
        if prefetch:
            set_prefetch(model, True)
    x = torch.randn(*xshape, generator=torch.Generator().manual_seed(0))
    gc.collect()
    return model, x


def forward(state):
    import torch

    model, x = state
    with torch.inference_mode():
        y = model(x)
        if "_dnn_adapter_prefetch" in model.__dict__:  # it learns the order on the first
            y = model(x)  # forward and decodes ahead from the second on
    return float(y.float().sum())
