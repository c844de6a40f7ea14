"""Loading a checkpoint without running its code: a file -> its tensors (or, trusted, a whole module).

Loading never unpickles Python objects: ``torch.load(..., weights_only=True)`` accepts tensors and
plain containers only, so a checkpoint that names any other global (a pickled ``nn.Module``, or
``os.system`` hidden in a ``__reduce__``) is refused before that global is touched. Only
``trust_pickle=True`` (the CLI's ``--trust-pickle``) lifts this.
"""
from __future__ import annotations

import argparse
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import reading
from ..errors import InputError
from ..text import article, visible

# Globals the restricted loader may rebuild besides tensors and containers (see load_checkpoint).
SAFE_GLOBALS = [argparse.Namespace]
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pkl", ".bin", ".ckpt", ".safetensors")
# Keys under which training scripts nest the state_dict, looked into in this order: the trained
# weights first, then the averaged copies (timm's state_dict_ema, model_ema, YOLO-style ema), then a
# distillation pair (DINO's teacher and student). Whichever is used is reported.
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module",
                  "state_dict_ema", "model_ema", "ema", "teacher", "student")
_LIST = 8  # keys shown in a message before "and N more"


@dataclass
class Checkpoint:
    """What a checkpoint file holds once loaded: tensors by key, or (trusted only) a whole module."""

    path: Path
    tensors: dict[str, Any]
    container: str | None = None  # e.g. "state_dict" when the tensors sat under that key
    module: Any = None  # an nn.Module, only when loaded with trust_pickle
    notes: list[str] = field(default_factory=list)  # what else the file held, and how it was read


# -- loading ------------------------------------------------------------------------------------

#: The most data a checkpoint may hold (the CLI's --max-checkpoint-size raises it). The largest
#: ResNet of the zoo, wide_resnet101_2, has 127 M parameters, 0.5 GB in float32; with an Adam
#: optimiser's two moments beside them 1.5 GB. 4 GiB leaves room and stops a zip entry that
#: inflates 8 MB into 17 GB.
MAX_CHECKPOINT_BYTES = 4 * 2**30
_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}


def parse_byte_size(text: str) -> int:
    """``4G``, ``512M``, ``1.5GB``, ``1000000``: a size in bytes (binary units: 1K = 1024)."""
    match = re.fullmatch(r"\s*(\d{1,15}(?:\.\d{1,6})?)\s*([a-zA-Z]{0,3})\s*", str(text))
    unit = match and match.group(2).upper()
    if match is None or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise InputError(f"Malformed size '{str(text)[:40]}': give a number of bytes, optionally with K, M, G or T "
                         "(binary: 1K = 1024), e.g. 8G or 512M.")
    return int(float(match.group(1)) * _UNITS[unit])


def _starts_as_zip(path: Path) -> bool:
    """True for torch.save's default format (a zip archive); only it can be mmapped."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"PK\x03\x04"
    except OSError as exc:
        raise InputError(f"Cannot read the checkpoint file {reading.short(path)}: {reading.reason(exc)}.") from None


def _check_expansion(path: Path, is_zip: bool, max_bytes: int) -> None:
    """Refuse a checkpoint whose own headers say it holds more than ``max_bytes``, before reading it.

    A zip archive says in its central directory how large each entry is once inflated: a crafted
    file can deflate gigabytes of zeros into a few megabytes, so the sum of those sizes is what
    counts. Every other format (a legacy torch.save pickle, safetensors) holds its data as it is,
    so its size on disk is the bound. The storages a pickle declares are checked by torch itself
    against the bytes the archive holds for them.
    """
    size = path.stat().st_size
    if is_zip:
        entries = _zip_entries(path)
        _refuse_torchscript(path, [name for name, _ in entries])
        size = sum(inflated for _, inflated in entries)
    if size > max_bytes:
        how = "its zip directory says its entries inflate to" if is_zip else "it is"
        why = ("no ResNet needs more, and a small file whose entries inflate this far is a decompression bomb"
               if is_zip else "no ResNet checkpoint needs more, and torch.load reads all of it into memory")
        raise InputError(f"Refused to load {path}: {how} {_bytes(size)}, over the limit of {_bytes(max_bytes)} a "
                         f"checkpoint may hold ({why}). If you trust the file, raise the limit: resnet-inspect "
                         f"--max-checkpoint-size {_bytes(size, flag=True)} summary FILE.")


def _refuse_torchscript(path: Path, names: list[str]) -> None:
    """A TorchScript archive (torch.jit.save) holds ``constants.pkl`` and a ``code/`` folder beside
    its ``data.pkl``; torch.load refuses it with a paragraph about weights_only. Say what it is."""
    if any(name.split("/")[1:2] in (["constants.pkl"], ["code"]) for name in names):
        raise InputError(
            f"{path} is a TorchScript archive (written by torch.jit.save), not a torch.save checkpoint: it holds "
            "compiled code, which resnet-inspect does not load. Save its weights as a state_dict and inspect "
            "that file: torch.save(torch.jit.load(PATH).state_dict(), 'weights.pth').")


def _zip_entries(path: Path) -> list[tuple[str, int]]:
    """Each entry's name and inflated size, read from the zip's central directory alone."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return [(info.filename, info.file_size) for info in archive.infolist()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError(f"Cannot read {path} as a PyTorch checkpoint: it starts as a zip archive, the format "
                         f"torch.save writes, but its zip directory cannot be read ({type(exc).__name__}: "
                         f"{str(exc)[:100]}). The file is truncated, corrupted or not a torch.save file.") from None


def _bytes(count: int, *, flag: bool = False) -> str:
    """``4.0 GiB``, or as the flag takes it (``5G``, rounded up)."""
    if flag:
        return f"{-(-count // 2**30)}G"
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit} ({count:,} bytes)"
    return f"{count:,} bytes"


def load_checkpoint(path: str | Path, *, trust_pickle: bool = False,
                    max_bytes: int = MAX_CHECKPOINT_BYTES) -> Checkpoint:
    """Load a ``.pth/.pt/.pkl/.bin/.ckpt`` (torch.save) or ``.safetensors`` file without running its code.

    Raises InputError for a missing, truncated or foreign file, for a pickle that names any
    global other than tensors and containers (unless ``trust_pickle``), and for a file whose own
    headers say it holds more than ``max_bytes`` (a decompression bomb: see :func:`_check_expansion`).
    """
    target = reading.require_regular(path, "checkpoint file")
    is_zip = _starts_as_zip(target)
    _check_expansion(target, is_zip, max_bytes)
    if target.suffix.lower() == ".safetensors":
        return Checkpoint(target, _load_safetensors(target))
    import torch

    try:
        # argparse.Namespace, which old training scripts save next to the weights, is allowed: the
        # restricted unpickler makes it with Namespace.__new__ and fills its __dict__ with values it
        # has already checked, and no code of the class runs. Every other global is still refused.
        with warnings.catch_warnings(), torch.serialization.safe_globals(SAFE_GLOBALS):
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols are not for our users
            obj = torch.load(target, map_location="cpu", weights_only=not trust_pickle, mmap=is_zip)
    except Exception as exc:  # noqa: BLE001 - every failure of a foreign file is the user's input
        raise _load_error(target, exc, trust_pickle, is_zip) from None
    checkpoint = _unwrap(target, obj)
    checkpoint.notes += _namespace_notes(obj)
    return checkpoint


def _namespace_notes(obj: Any) -> list[str]:
    """Say where an argparse.Namespace sat (top level or one dict down), read as plain data."""
    if not isinstance(obj, Mapping):
        return []
    found = [str(k) for k, v in obj.items() if isinstance(v, argparse.Namespace)]
    found += [f"{k}.{k2}" for k, v in obj.items() if isinstance(v, Mapping)
              for k2, v2 in v.items() if isinstance(v2, argparse.Namespace)]
    return [f"'{key}' holds an argparse.Namespace (training options), read as plain data: it is the one class "
            "allowed besides tensors and containers, since rebuilding it runs none of its code" for key in found]


def _load_error(path: Path, exc: Exception, trust_pickle: bool, is_zip: bool) -> InputError:
    text = str(exc)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused is not None and not trust_pickle:
        name = refused.group(1)
        last = name.rsplit(".", 1)[-1]
        if name.startswith(("torch.nn.", "torchvision.")):
            hint = f" '{name}' is a model class, so the file holds a whole pickled model (torch.save(model))."
        elif last[:1].isupper():
            hint = (f" '{name}' is a class: the file holds an object of it, a whole pickled model "
                    "(torch.save(model)) or training state saved next to the weights.")
        else:
            hint = f" '{name}' is a function: unpickling would call it, so the file may be malicious."
        return InputError(
            f"Refused to load {path}: it holds pickled Python objects, not only tensors, and the first one is "
            f"the global '{name}'.{hint} Unpickling runs whatever code a file names, so resnet-inspect loads "
            "checkpoints with torch.load(weights_only=True) and stops here. If you trust where the file comes "
            "from, pass --trust-pickle (resnet-inspect --trust-pickle summary FILE); better, re-save it as a "
            "state_dict with torch.save(model.state_dict(), path).")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if "WeightsUnpickler error:" in text:
        first = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0].strip() or first
        if not trust_pickle:
            return InputError(
                f"Cannot read {path}: torch.load(weights_only=True) refuses it ({first}). It is not a torch.save "
                "file of tensors (a plain pickle, perhaps), and unpickling it in full could run code from it. If "
                "you trust the file, pass --trust-pickle.")
    if trust_pickle and isinstance(exc, (ImportError, AttributeError)):
        return InputError(f"Cannot unpickle {path}: it names code that is not importable here ({exc}). Install or "
                          "put on sys.path the package that defined the model, or re-save it as a state_dict.")
    if path.stat().st_size == 0:
        reason = "the file is empty"
    elif is_zip:
        # torch's reader adds a paragraph of advice after the first sentence: keep the diagnosis.
        reason = f"{type(exc).__name__}: {re.split(r'(?<=[a-z][.!?]) ', first)[0].rstrip('.')}"[:200]
    else:
        reason = (f"it is neither a zip archive, the format torch.save writes, nor a legacy torch.save pickle "
                  f"({type(exc).__name__}{': ' + first[:80] if first else ''})")
    return InputError(f"Cannot read {path} as a PyTorch checkpoint: {reason}. The file is truncated, corrupted "
                      "or not a torch.save file.")


def _load_safetensors(path: Path) -> dict[str, Any]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise InputError(f"Reading {path} needs the safetensors package: pip install safetensors.") from None
    try:
        return dict(load_file(str(path), device="cpu"))
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"Cannot read {path} as a safetensors file ({reason}). The file is truncated, "
                         "corrupted or not a safetensors file.") from None


def _unwrap(path: Path, obj: Any, container: str | None = None, level: int = 0) -> Checkpoint:
    """Find the state_dict inside what torch.load returned (or the module, when trusted)."""
    import torch
    from torch import nn

    if isinstance(obj, nn.Module):
        return Checkpoint(path, {}, container, module=obj)
    if isinstance(obj, Mapping):
        for key in CONTAINER_KEYS:
            inner = obj.get(key)
            if level < 3 and isinstance(inner, (Mapping, nn.Module)):
                return _unwrap(path, inner, f"{container}.{key}" if container else key, level + 1)
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            _check_tensor_kinds(path, tensors)
            return Checkpoint(path, tensors, container)
        # Another name (``weights``, ``params`` ...): the one entry that is a dict of named tensors.
        nested = {k: sum(isinstance(t, torch.Tensor) for t in v.values()) for k, v in obj.items()
                  if isinstance(k, str) and isinstance(v, Mapping)}
        best = max(nested, key=lambda k: nested[k], default=None)
        if level < 3 and best is not None and nested[best] > 0:
            return _unwrap(path, obj[best], f"{container}.{best}" if container else best, level + 1)
        keys = ", ".join(map(str, list(obj)[:_LIST])) or "none"
        raise InputError(f"{path} holds a dict without tensors (keys: {keys}); a checkpoint should be a state_dict, "
                         f"or hold one under {' or '.join(repr(k) for k in CONTAINER_KEYS[:3])}.")
    kind = type(obj).__name__
    raise InputError(f"{path} holds {article(kind)} {kind}, not a state_dict (a dict of named tensors).")


def _tensor_kind(tensor: Any) -> str | None:
    """What makes a tensor unusable as a weight (nested, sparse, quantized), or None for a dense one."""
    import torch

    if tensor.is_nested:
        return "a nested tensor (torch.nested)"
    if tensor.layout != torch.strided:
        return f"a sparse tensor ({str(tensor.layout).removeprefix('torch.')})"
    if tensor.is_quantized:
        return f"a quantized tensor ({str(tensor.dtype).removeprefix('torch.')})"
    return None


def _check_tensor_kinds(path: Path, tensors: Mapping[str, Any]) -> None:
    """Refuse a state_dict that holds tensors no ResNet weight can be: a weight is dense."""
    odd = [(k, kind) for k, kind in ((k, _tensor_kind(v)) for k, v in tensors.items()) if kind is not None]
    if odd:
        shown = "; ".join(f"{visible(k)} is {kind}" for k, kind in odd[:_LIST])
        more = f" and {len(odd) - _LIST} more" if len(odd) > _LIST else ""
        raise InputError(f"{path} holds tensors that no model weight can be: {shown}{more}. A ResNet's state_dict "
                         "holds dense tensors: save it from the float model, before quantization, with sparse weights "
                         "made dense (tensor.to_dense()), and inspect that file.")


