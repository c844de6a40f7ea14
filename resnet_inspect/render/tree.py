"""The module hierarchy as a tree: each node with its output shape and the params of its subtree."""
from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from ..analysis.records import Report
from ..text import visible
from .fit import Facts
from .table import count_text, is_plain, model_title, shapes_text, si_text


@dataclass
class ModuleNode:
    """One module: its own figures, and (after :func:`module_tree`) its subtree's."""

    name: str
    type: str
    depth: int
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    own_params: int = 0
    own_macs: int = 0
    params: int = 0  # the subtree's, this module included
    macs: int = 0
    called: bool = True
    children: list[ModuleNode] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The last part of the qualified name (``conv1`` for ``layer1.0.conv1``)."""
        return self.name.rsplit(".", 1)[-1] if self.name else ""

    def size(self) -> int:
        """How many modules the subtree holds below this one."""
        return sum(1 + child.size() for child in self.children)


def module_tree(report: Report) -> ModuleNode:
    """The module hierarchy from the records (first calls), with never-called modules added.

    Function records (a residual add, a functional ReLU) are not modules: their MACs go to the
    module whose forward called them, so every subtree's MACs include its own direct ops.
    """
    nodes: dict[str, ModuleNode] = {}
    root: ModuleNode | None = None
    for rec in report.layers:
        if rec.kind != "module" or rec.call != 0:
            continue
        node = ModuleNode(rec.name, rec.type, rec.depth, list(rec.output_shapes), rec.params)
        nodes[rec.name] = node
        if rec.parent is None:
            root = node
        elif rec.parent in nodes:
            nodes[rec.parent].children.append(node)
    if root is None:
        raise ValueError("the report has no root record")
    for rec in report.layers:
        # Costs of repeat calls and of function records belong to the module that ran them.
        owner = rec.name if rec.kind == "module" else rec.parent
        if owner in nodes:
            nodes[owner].own_macs += rec.macs
    for entry in report.uncalled:
        parent = entry["name"].rpartition(".")[0]
        node = ModuleNode(entry["name"], entry["type"], nodes[parent].depth + 1 if parent in nodes else 1,
                          own_params=entry["params"], called=False)
        nodes[entry["name"]] = node
        nodes.get(parent, root).children.append(node)
    _aggregate(root)
    return root


def _aggregate(node: ModuleNode) -> None:
    node.params, node.macs = node.own_params, node.own_macs
    for child in node.children:
        _aggregate(child)
        node.params += child.params
        node.macs += child.macs


def _node_facts(node: ModuleNode, model: str, folded: int) -> list[Text]:
    """The node's facts: name, type, output shape, params, MACs, folded modules."""
    # The qualified name, so that it can be pasted into `explain MODEL LAYER` as it is.
    facts = [Text(visible(node.name or model), style="bold"), Text(visible(node.type), style="cyan")]
    if node.called:
        facts.append(Text(shapes_text(node.output_shapes)))
    else:
        facts.append(Text("never called", style="yellow"))
    facts.append(Text(f"{count_text(node.params)} params", style="green"))
    if node.macs:
        facts.append(Text(si_text(node.macs, "MACs"), style="magenta"))
    if folded:
        facts.append(Text(f"(+{folded} modules)", style="dim"))
    return facts


def _node_text(node: ModuleNode, model: str, folded: int) -> Text:
    return Text("  ").join(_node_facts(node, model, folded))


def _node_label(node: ModuleNode, model: str, folded: int) -> Facts:
    """On a terminal: the facts side by side, a fact that does not fit moving whole to the next
    line, so that a number never parts from its unit."""
    return Facts(_node_facts(node, model, folded), indent=2)


def print_tree(report: Report, console: Console, depth: int | None = None) -> None:
    """A rich Tree on a terminal; indented plain lines when piped. ``depth`` collapses deeper nodes."""
    root = module_tree(report)
    if is_plain(console):
        lines: list[Text] = []

        def walk(node: ModuleNode, level: int) -> None:
            collapse = depth is not None and level >= depth
            lines.append(Text("  " * level) + _node_text(node, model_title(report), node.size() if collapse else 0))
            if not collapse:
                for child in node.children:
                    walk(child, level + 1)

        walk(root, 0)
        for line in lines:
            console.print(line, no_wrap=True, crop=False, overflow="ignore")
        return

    def grow(branch: Tree, node: ModuleNode, level: int) -> None:
        for child in node.children:
            collapse = depth is not None and level + 1 >= depth
            sub = branch.add(_node_label(child, model_title(report), child.size() if collapse else 0))
            if not collapse:
                grow(sub, child, level + 1)

    tree = Tree(_node_label(root, model_title(report), 0), guide_style="dim")
    grow(tree, root, 0)
    console.print(tree)
