"""``check``: the outcome of comparing snapshot files with their rebuilt models, as text, JSON or
GitHub Actions annotations.

Every diff reads old → new: the snapshot's value, then the model's value now. A ``-`` layer is only
in the snapshot (the model lost it), a ``+`` layer only in the model (the snapshot lacks it), and a
``~`` layer is in both with some fields changed.
"""
from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.text import Text

from ..snapshot import Change, CheckResult, LayerChange, LayerOnlyIn, SnapshotDiff
from ..text import visible, visible_lines
from .fit import Facts, Hanging
from .table import count_text, shape_text

LIMIT = 50  # layers listed per kind (changed, added, removed) before "… and N more"
GITHUB_LIMIT = 20  # layer annotations per file; GitHub shows only the first few anyway
_LABELS = {"output_shapes": "output", "macs": "MACs", "params": "params", "type": "type",
           "trainable_params": "trainable params", "buffers": "buffers", "input_size": "input size",
           "built_from": "built from", "options": "options", "model": "model"}
_STYLES = {"+": "green", "-": "red", "~": "yellow", "": ""}
LEGEND = "old → new is the snapshot's value → the model's now; - only in the snapshot, + only in the model"


def layer_label(layer: dict[str, Any]) -> str:
    """``layer1.0.conv1 (Conv2d)``; the root module is ``(root)``, a repeat call says which."""
    name = layer["name"] or "(root)"
    call = f" call {layer['call']}" if layer["call"] else ""
    return f"{name}{call} ({layer['type']})"


def _shapes(shapes: list[list[int]] | None) -> str:
    if not shapes:
        return "—"
    return ", ".join(shape_text(shape) for shape in shapes)


def value_text(name: str, value: Any) -> str:
    """One field's value as the diff shows it."""
    if value is None:
        return "—"
    if name == "output_shapes":
        return _shapes(value)
    if name == "input_size" or (isinstance(value, list) and all(isinstance(d, int) for d in value)):
        return shape_text(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    return count_text(value)


def change_text(change: Change, label: str | None = None) -> str:
    """``MACs: 115,605,504 → 28,901,376 (-75.00%)``."""
    text = f"{label or _LABELS.get(change.field, change.field)}: {value_text(change.field, change.old)} → " \
           f"{value_text(change.field, change.new)}"
    old, new = change.old, change.new
    if isinstance(old, int) and isinstance(new, int) and not isinstance(old, bool) and old:
        text += f" ({(new - old) / old * 100:+.2f}%)"
    return text


def _layer_parts(sign: str, entry: LayerChange | LayerOnlyIn) -> tuple[str, list[str]]:
    """A layer's line as its head (sign and layer) and its facts, each with the punctuation that
    follows it: joined by spaces they are the line; on a narrow terminal each fact may start a line."""
    if isinstance(entry, LayerChange):
        facts = [change_text(c) for c in entry.changes]
        return f"{sign} {layer_label(entry.old)}", [f"{fact};" for fact in facts[:-1]] + facts[-1:]
    layer = entry.layer
    return f"{sign} {layer_label(layer)}", [f"output {_shapes(layer['output_shapes'])},",
                                            f"params {count_text(layer['params'])},",
                                            f"MACs {count_text(layer['macs'])}"]


def _joined(head: str, parts: list[str]) -> str:
    return f"{head}  {' '.join(parts)}" if parts else head


def _layer_line(sign: str, entry: LayerChange | LayerOnlyIn) -> str:
    return _joined(*_layer_parts(sign, entry))


def diff_entries(diff: SnapshotDiff, limit: int | None = LIMIT) -> list[tuple[str, str, list[str]]]:
    """The diff as ``(sign, head, facts)``: the build, then layers in order, then outputs and totals."""
    lines: list[tuple[str, str, list[str]]] = [("~", f"build {change_text(c)}", []) for c in diff.build]
    for sign, entries, kind in (("~", diff.changed, "changed"), ("-", diff.removed, "removed"),
                                ("+", diff.added, "added")):
        shown = entries if limit is None else entries[:limit]
        lines.extend((sign, *_layer_parts(sign, entry)) for entry in shown)
        if len(entries) > len(shown):
            lines.append((sign, f"{sign} … and {len(entries) - len(shown)} more {kind} layers "
                                "(--format json lists them all)", []))
    lines.extend(("~", f"~ {change_text(c, 'output ' + c.field)}", []) for c in diff.outputs)
    lines.extend(("~", f"~ {change_text(c, 'total ' + _LABELS.get(c.field, c.field))}", []) for c in diff.totals)
    return lines


def diff_lines(diff: SnapshotDiff, limit: int | None = LIMIT) -> list[tuple[str, str]]:
    """The diff as ``(sign, text)`` lines: the build, then layers in order, then outputs and totals."""
    return [(sign, _joined(head, parts)) for sign, head, parts in diff_entries(diff, limit)]


def counts_text(diff: SnapshotDiff) -> str:
    """``2 layers changed, 1 removed, 0 added; totals differ``."""
    changed = len(diff.changed)
    text = (f"{changed} layer{'s' if changed != 1 else ''} changed, {len(diff.removed)} removed, "
            f"{len(diff.added)} added")
    extra = [what for what, items in (("the build", diff.build), ("outputs", diff.outputs), ("totals", diff.totals))
             if items]
    return text + (f"; {', '.join(extra)} differ" if extra else "")


def plain_diff(diff: SnapshotDiff, limit: int | None = LIMIT) -> str:
    """The diff as plain text lines (what the pytest plugin prints)."""
    body = [f"  {text}" for _, text in diff_lines(diff, limit)]
    return "\n".join([f"{counts_text(diff)} ({LEGEND}):", *body])


def _subject(diff: SnapshotDiff) -> str:
    """``resnet50 (num_classes=10) at 1×3×224×224``: what was rebuilt, with its build options."""
    options = ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(diff.new.options.items()))
    return f"{diff.new.model}{f' ({options})' if options else ''} at {shape_text(list(diff.new.input_size))}"


def result_entries(result: CheckResult, limit: int | None = LIMIT) -> list[tuple[str, str, list[str]]]:
    """One file's outcome: a headline, then its diff (style key, head, facts; see :func:`diff_entries`)."""
    diff = result.diff
    if result.status in ("error", "bug"):
        assert result.error is not None
        return [("-", f"✗ {result.error}", [])]
    assert diff is not None
    if result.status == "match":
        tolerated = f" ({diff.tolerated} value{'s' if diff.tolerated != 1 else ''} within tolerance)" \
            if diff.tolerated else ""
        return [("", f"✓ {result.file} matches {_subject(diff)}{tolerated}", [])]
    if result.status == "updated":
        head = f"↻ Updated {result.file} ({_subject(diff)}: {counts_text(diff)})"
    else:
        head = f"✗ {result.file}: {_subject(diff)} differs from the snapshot: {counts_text(diff)}"
    lines = [("" if result.status == "updated" else "-", head, []), ("", f"  ({LEGEND})", [])]
    lines.extend((sign, f"  {head}", parts) for sign, head, parts in diff_entries(diff, limit))
    return lines


def result_lines(result: CheckResult, limit: int | None = LIMIT) -> list[tuple[str, str]]:
    """One file's outcome: a headline, then its diff (style key, text)."""
    return [(sign, _joined(head, parts)) for sign, head, parts in result_entries(result, limit)]


def summary_line(results: list[CheckResult]) -> str:
    """``Checked 3 snapshot files: 1 match, 1 differ, 0 updated, 1 could not be checked.``"""
    count = {status: sum(1 for r in results if r.status == status)
             for status in ("match", "changed", "updated", "error", "bug")}
    files = f"{len(results)} snapshot file{'s' if len(results) != 1 else ''}"
    bugs = f", {count['bug']} hit a bug in resnet-inspect" if count["bug"] else ""
    return (f"Checked {files}: {count['match']} match, {count['changed']} differ, {count['updated']} updated, "
            f"{count['error']} could not be checked{bugs}.")


def print_result(result: CheckResult, console: Console, limit: int | None = LIMIT) -> None:
    """One file's outcome and diff, as text: a line each when piped; on a terminal, wrapped at
    its width, a layer's facts each moving whole to an indented line when they do not fit."""
    for sign, head, parts in result_entries(result, limit):
        if not console.is_terminal:
            console.print(Text(visible(_joined(head, parts)), style=_STYLES[sign]), soft_wrap=True)
            continue
        style = _STYLES[sign]
        if parts:
            facts = [Text(visible(head) + " ", style=style), *(Text(visible(part), style=style) for part in parts)]
            console.print(Facts(facts, indent=6, sep=" "))
        else:
            console.print(Hanging(Text(visible(head), style=style), indent=4))


def print_summary(results: list[CheckResult], console: Console) -> None:
    """The closing line: how many files matched, differed, were updated or could not be checked."""
    text = Text(summary_line(results), style="bold")
    console.print(Hanging(text) if console.is_terminal else text, soft_wrap=not console.is_terminal)


def print_results(results: list[CheckResult], console: Console, limit: int | None = LIMIT) -> None:
    """The text report: each file's outcome and diff, then one summary line."""
    for result in results:
        print_result(result, console, limit)
    print_summary(results, console)


# -- json ----------------------------------------------------------------------------------------

def _change_dict(changes: list[Change]) -> dict[str, dict[str, Any]]:
    return {c.field: {"old": c.old, "new": c.new} for c in changes}


def result_dict(result: CheckResult) -> dict[str, Any]:
    """One file's outcome as JSON-ready data (every layer, no limit)."""
    entry: dict[str, Any] = {"file": result.file, "status": result.status}
    if result.error is not None:
        error = result.error
        entry["error"] = {"message": str(error), "reason": error.reason, "line": error.line, "column": error.column,
                          "key": error.key}
    diff = result.diff
    if diff is not None:
        entry.update(
            model=diff.new.model, input_size=list(diff.new.input_size), tolerated=diff.tolerated,
            build=_change_dict(diff.build),
            changed=[{"name": c.old["name"], "call": c.old["call"], "type": c.old["type"], "line": c.line,
                      "changes": _change_dict(c.changes)} for c in diff.changed],
            removed=[{**e.layer, "line": e.line} for e in diff.removed],
            added=[{**e.layer, "line": e.line} for e in diff.added],
            outputs=_change_dict(diff.outputs), totals=_change_dict(diff.totals),
        )
    return entry


def results_json(results: list[CheckResult], code: int) -> str:
    """The whole check as one JSON document."""
    return json.dumps({"exit_code": code, "summary": summary_line(results),
                       "files": [result_dict(r) for r in results]}, indent=2, sort_keys=True) + "\n"


# -- GitHub Actions annotations ------------------------------------------------------------------

def _escape_data(text: str) -> str:
    # GitHub's log viewer renders ANSI escapes, so control characters are shown, never sent.
    return visible_lines(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, file: str, message: str, *, line: int | None = None, column: int | None = None,
               title: str | None = None) -> str:
    """``::error file=...,line=...::message``, escaped as the workflow-command syntax requires."""
    props = [f"file={_escape_property(file)}"]
    if line is not None:
        props.append(f"line={line}")
    if column is not None:
        props.append(f"col={column}")
    if title:
        props.append(f"title={_escape_property(title)}")
    return f"::{level} {','.join(props)}::{_escape_data(message)}"


def github_annotations(result: CheckResult, limit: int = GITHUB_LIMIT) -> list[str]:
    """One ``::error`` per difference (the line is the layer's line in the snapshot), or per bad file."""
    if result.status in ("error", "bug"):
        assert result.error is not None
        error = result.error
        where = f"at {error.key}: " if error.key else ""
        title = "Unusable shape snapshot" if result.status == "error" else "Bug in resnet-inspect"
        return [annotation("error", result.file, where + error.reason, line=error.line, column=error.column,
                           title=title)]
    diff = result.diff
    if result.status == "match" or diff is None:
        return []
    level = "warning" if result.status == "updated" else "error"
    title = "Shape snapshot updated" if result.status == "updated" else "Shape snapshot differs"
    old = diff.old
    notes: list[tuple[str, int | None]] = [(f"build {change_text(c)}", old.key_lines.get(c.field)) for c in diff.build]
    layers: list[tuple[str, int | None]] = []
    for sign, entries in (("~", diff.changed), ("-", diff.removed), ("+", diff.added)):
        layers.extend((_layer_line(sign, e), e.line) for e in entries)
    notes.extend(layers[:limit])
    if len(layers) > limit:
        notes.append((f"… and {len(layers) - limit} more layers differ; run resnet-inspect check {result.file} "
                      "for all of them", old.key_lines.get("layers")))
    notes.extend((change_text(c, "output " + c.field), old.key_lines.get("outputs")) for c in diff.outputs)
    notes.extend((change_text(c, "total " + _LABELS.get(c.field, c.field)), old.key_lines.get("totals"))
                 for c in diff.totals)
    return [annotation(level, result.file, f"{_subject(diff)}: {message}", line=line, title=title)
            for message, line in notes]
