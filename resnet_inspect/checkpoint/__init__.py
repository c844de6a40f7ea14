"""Inspect a checkpoint you were handed: load it without running its code, then infer the ResNet.

Loading never unpickles Python objects: ``torch.load(..., weights_only=True)`` accepts tensors and
plain containers only, so a checkpoint that names any other global (a pickled ``nn.Module``, or
``os.system`` hidden in a ``__reduce__``) is refused before that global is touched. Only
``trust_pickle=True`` (the CLI's ``--trust-pickle``) lifts this.

Inference reads names and shapes, never values. It finds the residual blocks by their names
(``layer{N}.{M}.`` as torchvision, timm and maskrcnn-benchmark write them, or timm ResNetV2's
``stages.{N}.blocks.{M}.``), derives the numbers a spec needs from them (block type, blocks per
stage, groups and width, classes or bins, pyramid kind), then builds every named variant with
those numbers on the meta device and keeps the one whose keys and shapes match best. Nothing
about a variant's naming is hard-coded here beyond the two block patterns: a new variant is
found as soon as the builder knows it.

Two parts: :mod:`.loading` (file -> tensors) and :mod:`.inference` (tensors -> spec); this module
joins them (:func:`load_model`) and re-exports their public names.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from .inference import INVISIBLE_OPTIONS, Inference, infer
from .loading import (
    CHECKPOINT_SUFFIXES, CONTAINER_KEYS, MAX_CHECKPOINT_BYTES, SAFE_GLOBALS, Checkpoint, load_checkpoint,
    parse_byte_size,
)

__all__ = [
    "CHECKPOINT_SUFFIXES", "CONTAINER_KEYS", "INVISIBLE_OPTIONS", "MAX_CHECKPOINT_BYTES", "SAFE_GLOBALS", "Checkpoint",
    "Inference", "infer", "load_checkpoint", "load_model", "materialize", "parse_byte_size",
]


# -- the model ----------------------------------------------------------------------------------

def load_model(path: str | Path, *, trust_pickle: bool = False, options: Mapping[str, Any] | None = None,
               max_bytes: int = MAX_CHECKPOINT_BYTES) -> tuple[Any, Inference | None]:
    """The model a checkpoint holds, carrying the checkpoint's own tensors, and how it was recognised.

    A state_dict is matched to a variant (:func:`infer`), built on the meta device and given the
    checkpoint's tensors (no copy: mmapped files stay mapped). Tensors the checkpoint lacks become
    zeros on the CPU so a real forward still runs; they are listed in ``Inference.missing``. A whole
    pickled module (``trust_pickle`` only) comes back as it is, with no inference.
    """
    checkpoint = load_checkpoint(path, trust_pickle=trust_pickle, max_bytes=max_bytes)
    if checkpoint.module is not None:
        given = sorted(k for k, v in (options or {}).items() if v is not None)
        if given:
            raise InputError(f"{path} holds a whole model, so builder options ({', '.join(given)}) do not apply.")
        return checkpoint.module, None
    inference = infer(checkpoint.tensors, path=str(path), container=checkpoint.container, overrides=options)
    inference.notes = checkpoint.notes
    return materialize(inference, checkpoint.tensors), inference


def materialize(inference: Inference, tensors: Mapping[str, Any]) -> Any:
    """Build ``inference.spec`` and assign it the checkpoint's tensors (floats as float32)."""
    import torch

    from ..models.resnet import build_model

    with torch.device("meta"):
        model = build_model(inference.spec)
    own = model.state_dict()
    prefix = inference.prefix
    state = {}
    widened: dict[tuple[int, Any], Any] = {}
    for key, tensor in tensors.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        if name in own and tuple(tensor.shape) == tuple(own[name].shape):
            if own[name].is_floating_point() and not tensor.is_floating_point():
                dtype = str(tensor.dtype).removeprefix("torch.")
                raise InputError(f"{inference.path}: {key} holds {dtype} numbers, but a weight must be floating "
                                 "point (float16, bfloat16, float32 or float64).")
            # The trace runs in float32; a half-precision checkpoint is widened (this copies it).
            state[name] = _widen(tensor, widened) if tensor.is_floating_point() and tensor.dtype != torch.float32 \
                else tensor
    model.load_state_dict(state, strict=False, assign=True)
    for module in model.modules():
        for table in (module._parameters, module._buffers):
            for name, value in table.items():
                if value is not None and value.is_meta:
                    # One number viewed with stride 0: the shape is right for a --real forward, and a
                    # missing 10^9-element tensor costs 4 bytes, not 4 GB.
                    fresh = torch.full((), 1.0 if name == "running_var" else 0, dtype=value.dtype).expand(value.shape)
                    table[name] = torch.nn.Parameter(fresh, value.requires_grad) if table is module._parameters \
                        else fresh
    return model


def _widen(tensor: Any, done: dict[tuple[int, Any], Any]) -> Any:
    """``tensor`` as float32, converting its storage rather than its elements.

    ``tensor.float()`` would allocate every element of a view: a stride-0 ``expand`` that claims a
    billion elements over one stored number would become 4 GB. Converting the storage (as many
    numbers as the file holds) and viewing it with the same strides costs what the file costs.
    Views of one storage share one conversion.
    """
    import torch

    storage = tensor.untyped_storage()
    key = (storage.data_ptr(), tensor.dtype)
    if key not in done:
        flat = torch.empty(0, dtype=tensor.dtype).set_(storage)
        done[key] = flat.float()
    return done[key].as_strided(tensor.shape, tensor.stride(), tensor.storage_offset())

