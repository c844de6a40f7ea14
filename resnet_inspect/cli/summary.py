"""``resnet-inspect summary MODEL``: the per-layer table and the totals."""
from __future__ import annotations



from . import common
from . import app


@app.command()
@common.handle_errors
def summary(
    model: common.ModelArg,
    input: common.InputOpt = "224",
    stride_in_1x1: common.StrideIn1x1 = None,
    caffe_maxpool: common.CaffeMaxpool = None,
    norm: common.Norm = None,
    output_stride: common.OutputStride = None,
    num_classes: common.NumClasses = None,
    num_bins: common.NumBins = None,
    groups: common.Groups = None,
    width_per_group: common.WidthPerGroup = None,
    fpn: common.Fpn = None,
    block: common.Block = None,
    layers: common.Layers = None,
    pad_to: common.PadTo = None,
) -> None:
    """Per-layer table of shapes, params and MACs, with totals.

    Example: resnet-inspect summary resnet50 --input 800x1344
    """
    options = common.build_options(stride_in_1x1=stride_in_1x1, caffe_maxpool=caffe_maxpool, norm=norm,
                                   output_stride=output_stride, num_classes=num_classes, num_bins=num_bins,
                                   groups=groups, width_per_group=width_per_group, fpn=fpn, block=block, layers=layers)
    size = common.input_size(input)
    target = common.resolve_model(model, options)
    from ..analysis.inspect import inspect
    from ..render.table import print_summary

    report = inspect(target, size, pad_to=pad_to, **(options if isinstance(target, str) else {}))
    print_summary(report, common.console())
