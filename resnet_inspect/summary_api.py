"""``summary()``: torchinfo's call, resnet-inspect's numbers.

``from resnet_inspect import summary`` takes the arguments of torchinfo's ``summary`` (torchinfo
1.8, https://github.com/TylerYep/torchinfo) with the same meaning where they make sense, and
returns a :class:`ModelSummary` with the attributes of torchinfo's ``ModelStatistics``
(``total_params``, ``trainable_params``, ``total_mult_adds``, ``summary_list`` ...). It prints as
the summary table, and Jupyter shows it as an HTML table.

The numbers are this package's (docs/python.md says where torchinfo counts differently):
``total_mult_adds`` is MACs of Conv and Linear weights only, as torchvision's tables and He et al.
2016 count them; torchinfo also counts each bias and each norm layer's affine parameters.

Arguments resnet-inspect cannot honour raise ``TypeError`` or ``ValueError`` saying why; none is
ignored. The model is never changed: not moved to ``device``, and its training mode is the same
afterwards whatever ``mode`` the trace ran in.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .analysis.records import LayerRecord, Report
from .render.notebook import COLUMNS, Renderable, View, every_layer, html, plain_text

#: ``row_settings`` that the table always honours: its Layer column is the qualified name
#: (torchinfo's var_names), indented by nesting depth (its depth).
ROW_SETTINGS = ("depth", "var_names")
VERBOSITY = (0, 1, 2)
TORCHINFO_COL_WIDTH = 25


class ModelSummary:
    """What :func:`summary` returns: prints as the table, holds the report and its totals.

    The attributes follow torchinfo's ``ModelStatistics``; every figure comes from :attr:`report`.
    """

    def __init__(self, report: Report, view: View, input_size: list[tuple[int, ...]], input_bytes: int,
                 param_bytes: int) -> None:
        self.report = report
        self.view = view
        #: One record per module call or functional op, in call order (torchinfo's LayerInfo list).
        self.summary_list: list[LayerRecord] = report.layers
        self.input_size = input_size
        self.total_input = input_bytes
        self.total_params: int = report.totals["params"]
        self.trainable_params: int = report.totals["trainable_params"]
        #: Conv and Linear MACs, bias excluded (torchinfo adds bias and norm terms: docs/python.md).
        self.total_mult_adds: int = report.totals["macs"]
        self.total_param_bytes = param_bytes
        #: Every layer's output, summed once (torchinfo doubles the outputs of layers with weights).
        self.total_output_bytes: int = report.totals["activation_bytes"]

    @property
    def non_trainable_params(self) -> int:
        """Parameters with ``requires_grad=False`` (frozen)."""
        return self.total_params - self.trainable_params

    def to_dict(self) -> dict[str, Any]:
        """The engine's JSON form of the report (every layer, whatever the depth)."""
        return self.report.to_dict()

    def __str__(self) -> str:
        return plain_text(self.report, self.view)

    # As torchinfo's ModelStatistics: echoing the result in a REPL shows the table.
    __repr__ = __str__

    def __rich__(self) -> Renderable:
        return Renderable(self.report, self.view)

    def _repr_html_(self) -> str:
        return html(self.report, self.view)


def summary(
    model: nn.Module | str,
    input_size: Sequence[Any] | None = None,
    input_data: Any = None,
    batch_dim: int | None = None,
    cache_forward_pass: bool | None = None,
    col_names: Iterable[str] | None = None,
    col_width: int = TORCHINFO_COL_WIDTH,
    depth: int = 3,
    device: torch.device | str | None = None,
    dtypes: Sequence[torch.dtype] | None = None,
    mode: str | None = None,
    row_settings: Iterable[str] | None = None,
    verbose: int | None = None,
    *,
    counter: str = "analytic",
    **kwargs: Any,
) -> ModelSummary:
    """Summarise ``model`` as torchinfo's ``summary`` does, with resnet-inspect's records and counts.

    - ``model``: an ``nn.Module``, or a variant name (``"resnet50"``) that resnet-inspect builds.
    - ``input_size``: one shape, batch included (``(1, 3, 224, 224)`` or ``[1, 3, 224, 224]``), or a
      list holding one shape; ``batch_dim`` inserts a batch of 1 at that position. Default: the
      variant's own size for a name; required for a module.
    - ``input_data``: a tensor (or a list or tuple holding one): its shape and dtype are traced.
    - ``depth``: rows nested deeper are folded into their ancestor (1 = top-level modules).
    - ``col_names``: torchinfo's column names (``input_size``, ``output_size``, ``num_params``,
      ``params_percent``, ``kernel_size``, ``mult_adds``, ``trainable``) and ``receptive_field``;
      without it the table is resnet-inspect's own.
    - ``dtypes``: one dtype for the ``input_size`` tensor (default: the model's floating dtype).
    - ``device``: ``None`` or ``"meta"`` traces on the meta device (nothing allocated); a real
      device runs a real forward where the model already lives. The model is never moved.
    - ``mode``: ``"eval"`` (default), ``"train"`` or ``"same"``; the model's modes are put back.
    - ``verbose``: 0 prints nothing, 1 prints the table, 2 prints it with every layer (``depth``
      ignored). Default: 0 in an interactive session (as torchinfo decides it), else 1.
    - ``counter``: who counts MACs, as ``--counter`` (analytic, fvcore or torch).

    Several inputs, keyword inputs for ``forward`` and ``cache_forward_pass=True`` are not supported
    and raise; so do row settings and column widths the table cannot honour.
    """
    if kwargs:
        raise TypeError(f"summary() got unexpected keyword argument(s) {', '.join(sorted(kwargs))}: torchinfo "
                        "passes them to model.forward(), while resnet-inspect traces forward(x) with one input tensor.")
    verbose = _verbosity(verbose)
    depth = _depth(depth)
    columns = _columns(col_names)
    _check_unsupported(cache_forward_pass, col_width, row_settings)
    if input_size is not None and input_data is not None:
        raise ValueError("Give input_size or input_data, not both (as torchinfo).")
    size, dtype = _input(model, input_size, input_data, batch_dim, dtypes)
    real = _real(model, device)
    from .resolve import inspect_target

    report = inspect_target(model, size, real=real, dtype=dtype, mode=_mode(mode), counter=counter)
    view = View(depth=every_layer(report) if verbose == 2 else depth, col_names=columns)
    result = ModelSummary(report, view, [tuple(report.input_size)], _input_bytes(report, dtype, model),
                          report.totals["params"] * _itemsize(_param_dtype(model)))
    if verbose:
        print(result)
    return result


def _verbosity(verbose: int | None) -> int:
    if verbose is None:  # torchinfo's rule: quiet where the session echoes the result itself
        return 0 if getattr(sys, "ps1", None) else 1
    if isinstance(verbose, bool) or verbose not in VERBOSITY:
        raise ValueError(f"verbose must be 0 (quiet), 1 (print the table) or 2 (every layer), not {verbose!r}.")
    return int(verbose)


def _depth(depth: int) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"depth must be an int, not {type(depth).__name__}.")
    if depth < 1:
        raise ValueError(f"depth must be 1 or more (1 = the model's top-level modules), not {depth}: resnet-inspect "
                         "has no row for the model itself.")
    return depth


def _columns(col_names: Iterable[str] | None) -> tuple[str, ...] | None:
    if col_names is None:
        return None
    if isinstance(col_names, str):
        raise TypeError(f"col_names must be a list of column names, not the string {col_names!r}.")
    names = tuple(str(getattr(name, "value", name)) for name in col_names)  # torchinfo's ColumnSettings too
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        raise ValueError(f"Unknown column(s) {', '.join(map(repr, unknown))}: use {', '.join(COLUMNS)}.")
    return names


def _check_unsupported(cache_forward_pass: bool | None, col_width: int, row_settings: Iterable[str] | None) -> None:
    if cache_forward_pass:
        raise ValueError("cache_forward_pass=True is not supported: resnet-inspect traces on the meta device, "
                         "which is cheap, and does not reuse a trace for a changed model.")
    if col_width != TORCHINFO_COL_WIDTH:
        raise ValueError(f"col_width={col_width!r} is not supported: resnet-inspect sizes each column to its "
                         "content and the terminal.")
    if row_settings is None:
        return
    if isinstance(row_settings, str):
        raise TypeError(f"row_settings must be a list of settings, not the string {row_settings!r}.")
    unsupported = [s for s in (str(getattr(r, "value", r)) for r in row_settings) if s not in ROW_SETTINGS]
    if unsupported:
        raise ValueError(f"row_settings {', '.join(map(repr, unsupported))} not supported: the Layer column always "
                         "shows the qualified name indented by depth (torchinfo's 'depth' and 'var_names').")


def _mode(mode: str | None) -> str:
    mode = "eval" if mode is None else str(getattr(mode, "value", mode))
    if mode not in ("eval", "train", "same"):
        raise ValueError(f"mode must be 'eval', 'train' or 'same', not {mode!r}.")
    return mode


def _input(model: Any, input_size: Sequence[Any] | None, input_data: Any, batch_dim: int | None,
           dtypes: Sequence[torch.dtype] | None) -> tuple[Any, torch.dtype | None]:
    """The traced input's shape (None: the variant's own size) and dtype (None: the model's)."""
    if input_data is not None:
        if dtypes is not None:
            raise ValueError("dtypes applies to input_size; input_data carries its own dtype.")
        tensor = _one_tensor(input_data)
        return tuple(tensor.shape), tensor.dtype
    dtype = _one_dtype(dtypes)
    if input_size is None:
        if isinstance(model, nn.Module) and not hasattr(model, "spec"):
            raise ValueError("Give input_size or input_data: resnet-inspect needs an input to trace your model "
                             "(torchinfo without one lists only names and parameters).")
        if batch_dim is not None:
            raise ValueError("batch_dim applies to input_size; give input_size too.")
        return None, dtype
    shape = _one_shape(input_size)
    if batch_dim is not None:
        if isinstance(batch_dim, bool) or not isinstance(batch_dim, int) or not 0 <= batch_dim <= len(shape):
            raise ValueError(f"batch_dim must be a position from 0 to {len(shape)} in {shape}, not {batch_dim!r}.")
        shape = (*shape[:batch_dim], 1, *shape[batch_dim:])
    return shape, dtype


def _one_shape(input_size: Sequence[Any]) -> tuple[Any, ...]:
    if isinstance(input_size, torch.Size):
        return tuple(input_size)
    if not isinstance(input_size, (list, tuple)) or not input_size:
        raise TypeError(f"input_size must be a shape such as (1, 3, 224, 224), or a list holding one, "
                        f"not {type(input_size).__name__}.")
    nested = [s for s in input_size if isinstance(s, (list, tuple, torch.Size))]
    if not nested:
        return tuple(input_size)
    if len(input_size) > 1:
        raise ValueError(f"input_size gives {len(input_size)} inputs: resnet-inspect traces a forward that takes "
                         "one input tensor.")
    return tuple(input_size[0])


def _one_tensor(input_data: Any) -> torch.Tensor:
    if isinstance(input_data, torch.Tensor):
        return input_data
    if isinstance(input_data, Mapping):
        raise ValueError("input_data as a dict passes keyword arguments to forward(); resnet-inspect traces "
                         "forward(x) with one input tensor.")
    if isinstance(input_data, (list, tuple)) and len(input_data) == 1 and isinstance(input_data[0], torch.Tensor):
        return input_data[0]
    if isinstance(input_data, (list, tuple)):
        raise ValueError(f"input_data holds {len(input_data)} items: resnet-inspect traces a forward that takes "
                         "one input tensor.")
    raise TypeError(f"input_data must be a tensor (or a list holding one), not {type(input_data).__name__}.")


def _one_dtype(dtypes: Sequence[torch.dtype] | None) -> torch.dtype | None:
    if dtypes is None:
        return None
    if isinstance(dtypes, torch.dtype):
        raise TypeError("dtypes must be a list, as in torchinfo: dtypes=[torch.long].")
    dtypes = list(dtypes)
    if len(dtypes) != 1:
        raise ValueError(f"dtypes gives {len(dtypes)} dtypes: resnet-inspect traces one input tensor.")
    if not isinstance(dtypes[0], torch.dtype):
        raise TypeError(f"dtypes must hold torch.dtype values such as torch.float32, not {dtypes[0]!r}.")
    return dtypes[0]


def _real(model: Any, device: torch.device | str | None) -> bool:
    """Whether to run a real forward: only where the model already lives (it is never moved)."""
    if device is None:
        return False
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device: {exc}") from None
    if device.type == "meta":
        return False
    tensors = [*model.parameters(), *model.buffers()] if isinstance(model, nn.Module) else []
    where = {t.device for t in tensors} or {torch.device("cpu")}
    if any(_same_device(device, w) is False for w in where):
        shown = ", ".join(sorted(map(str, where)))
        raise ValueError(f"The model lives on {shown}, and resnet-inspect never moves it (torchinfo's device= calls "
                         f"model.to({str(device)!r})): pass device={shown!r}, or leave device out for the meta trace.")
    return True


def _same_device(asked: torch.device, actual: torch.device) -> bool:
    return asked.type == actual.type and (asked.index is None or asked.index == actual.index)


def _param_dtype(model: Any) -> torch.dtype:
    if not isinstance(model, nn.Module):
        return torch.float32  # a variant, built by resnet-inspect in float32
    from .analysis.inspect import model_dtype

    return model_dtype(model)


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype, device="meta").element_size()


def _input_bytes(report: Report, dtype: torch.dtype | None, model: Any) -> int:
    elements = 1
    for d in report.input_size:
        elements *= d
    return elements * _itemsize(dtype or _param_dtype(model))
