"""The allocation ledger's operand walk (resnet_inspect.analysis.allocations)."""
from __future__ import annotations

from collections import OrderedDict, namedtuple

import torch
from torch.utils._pytree import tree_leaves

from resnet_inspect.analysis.allocations import tensors_in

Pair = namedtuple("Pair", "first second")


def test_tensors_in_finds_what_tree_leaves_finds_in_the_same_order() -> None:
    a, b, c, d, e, f = (torch.empty(i + 1, device="meta") for i in range(6))
    values = [
        a, None, 3, (a, b), [a, [b, (c, None, 2.0)], torch.float32, "x"], {"k": a, "j": [b, c]},
        (a, Pair(b, [c, d]), OrderedDict(x=e, y=(f,))), torch.return_types.max((a, b)), torch.Size([2, 3]),
        ([], (), {}), (torch.device("meta"), torch.strided, torch.channels_last, 1j, True),
    ]
    for value in values:
        expected = [t for t in tree_leaves(value) if isinstance(t, torch.Tensor)]
        assert [id(t) for t in tensors_in(value)] == [id(t) for t in expected], value
    found: list[torch.Tensor] = [a]
    assert tensors_in((b, c), found) is found and [id(t) for t in found] == [id(a), id(b), id(c)]  # appends
