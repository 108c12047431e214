"""The terminal view: a panel per run while it works, and the final table.

Pure rendering: each function takes views (proctor.local.progress) and returns a rich
renderable, so tests draw them on a fixed-size Console and read the text.
"""

from __future__ import annotations

import math

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from proctor.local.progress import LayerView, RunView, TrainingView
from proctor.local.summary import as_expected

_PHASE_STYLE = {
    "Succeeded": "bold green",
    "Concluded": "bold green",
    "Failed": "bold red",
    "Blocked": "bold yellow",
    "Training": "bold cyan",
    "Validating": "bold blue",
}
_LAYER_MARK = {
    "Passed": ("✓", "green"),
    "Failed": ("✗", "red"),
    "Running": ("…", "cyan"),
    "Skipped": ("-", "dim"),
    "Pending": ("·", "dim"),
}
_MESSAGE_WIDTH = 110


def live_view(views: list[RunView], elapsed: float) -> RenderableType:
    """Every run's panel, then one line of totals."""
    done = sum(view.finished for view in views)
    footer = Text(f"{done} of {len(views)} finished · {elapsed:.0f}s · Ctrl-C stops", style="dim")
    return Group(*(run_panel(view) for view in views), footer)


def run_panel(view: RunView) -> Panel:
    lines: list[RenderableType] = [pyramid_line(view.layers)]
    done = [layer for layer in view.layers if layer.phase in ("Passed", "Failed")]
    if done and view.training is None:  # the checks of the layer that finished last
        lines.append(_check_line(done[-1]))
    if view.training is not None:
        lines.append(training_line(view.training))
    for anomaly in view.anomalies:
        where = f" → {anomaly.bundle_uri}" if anomaly.bundle_uri else " (bundle pending)"
        lines.append(
            Text.assemble(
                ("anomaly  ", "bold"),
                (f"{anomaly.kind} ({anomaly.severity})", "red"),
                f" at step {anomaly.step}" if anomaly.step is not None else "",
                where,
            )
        )
    if view.message and (view.blocked or (view.phase == "Failed" and not view.failed_layer)):
        lines.append(Text(_short(view.message), style="yellow" if view.blocked else "red"))
    phase = view.phase
    title = Text.assemble((view.name, "bold"), "  ", (phase, _PHASE_STYLE.get(phase, "")))
    return Panel(Group(*lines), title=title, title_align="left")


def pyramid_line(layers: tuple[LayerView, ...]) -> Text:
    line = Text("pyramid  ", style="bold")
    for layer in layers:
        mark, style = _LAYER_MARK.get(layer.phase, ("?", ""))
        passed = sum(check.verdict == "Passed" for check in layer.checks)
        counted = sum(check.verdict != "Skipped" for check in layer.checks)
        score = f" {passed}/{counted}" if layer.checks else ""
        line.append(f"{layer.layer} {mark}{score}", style=style)
        line.append("   ")
    return line


def _check_line(layer: LayerView) -> Text:
    """A passed layer's checks by name; a failed layer's failures with the message that
    teaches the fix."""
    line = Text(f"{layer.layer} checks ", style="bold")
    failed = [check for check in layer.checks if check.verdict == "Failed"]
    if failed:
        for check in failed:
            line.append(f"\n  ✗ {check.name}: ", style="red")
            line.append(_short(check.message, _MESSAGE_WIDTH))
        return line
    for check in layer.checks:
        mark, style = {"Passed": ("✓", "green"), "Warning": ("!", "yellow")}.get(
            check.verdict, ("-", "dim")
        )
        line.append(f"{mark} {check.name}  ", style=style)
    return line


def training_line(training: TrainingView) -> RenderableType:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold")
    table.add_column(width=24)
    table.add_column()
    step, total = training.step or 0, training.max_steps
    bar: RenderableType = (
        ProgressBar(total=total, completed=min(step, total), width=24) if total else Text("")
    )
    figures = [f"step {step}" + (f"/{total}" if total else "")]
    if training.loss is not None:
        figures.append(f"loss {_number(training.loss)}")
    if training.samples_per_second:
        figures.append(f"{training.samples_per_second:,.0f} samples/s")
    if training.mfu is not None:
        figures.append(f"MFU {training.mfu:.1%}")
    figures += [f"{name} {value:.3g}" for name, value in sorted(training.eval.items())]
    table.add_row("training", bar, "  ".join(figures))
    return table


def final_table(views: list[RunView], expected: dict[str, str] | None = None) -> Table:
    """One row per run: how far it got and what went wrong; `findings` says why. With
    `expected` phases (--expect), the phase says whether each run ended as expected."""
    table = Table(title="proctor local run", title_justify="left")
    table.add_column("experiment", style="bold", no_wrap=True)
    table.add_column("phase")  # these wrap first when the terminal is narrow
    table.add_column("pyramid", no_wrap=True)
    table.add_column("training")
    table.add_column("anomalies")
    for view in views:
        table.add_row(
            view.name,
            _phase_cell(view, expected),
            _pyramid_cell(view),
            _training_cell(view),
            _anomalies_cell(view),
        )
    return table


def _phase_cell(view: RunView, expected: dict[str, str] | None) -> Text:
    phase = view.phase
    text = Text(phase, style=_PHASE_STYLE.get(phase, ""))
    if expected:
        if as_expected(view, expected):
            text.append(" ✓", style="green")
        else:
            text.append(f" ✗ not {expected.get(view.name, 'Succeeded')}", style="bold red")
    return text


def findings(views: list[RunView]) -> Text:
    """Why each run that did not succeed ended as it did, in the words that teach the fix."""
    text = Text()
    for view in views:
        if view.succeeded:
            continue
        failed = view.failed_layer
        reasons = [
            f"{check.name}: {check.message}"
            for check in (failed.checks if failed else ())
            if check.verdict == "Failed"
        ]
        reasons += [f"{a.kind}: {a.message}" for a in view.anomalies[:1]]
        if not reasons and view.message:
            reasons.append(view.message)
        for reason in reasons:
            text.append(f"{view.name}: ", style="bold")
            text.append(" ".join(reason.split()) + "\n")
    return text


def _pyramid_cell(view: RunView) -> Text:
    failed = view.failed_layer
    if failed is not None:
        bad = sum(check.verdict == "Failed" for check in failed.checks)
        judged = sum(check.verdict != "Skipped" for check in failed.checks)
        detail = f" ({bad} of {judged} checks)" if judged else ""
        return Text(f"{failed.layer} failed{detail}", style="red")
    passed = [layer for layer in view.layers if layer.phase == "Passed"]
    checks = sum(check.verdict == "Passed" for layer in passed for check in layer.checks)
    if len(passed) == len(view.layers):
        return Text(f"passed ({checks} checks)", style="green")
    if all(layer.phase == "Skipped" for layer in view.layers) or not view.layers:
        return Text("skipped", style="dim")
    names = ", ".join(layer.layer for layer in passed)
    return Text(f"{names or 'no layer'} passed", style="dim")


def _training_cell(view: RunView) -> Text:
    if view.kind == "ValidationPyramid":
        return Text("-", style="dim")
    training = view.training
    if training is None or training.step is None:
        return Text("no training Job" if view.finished else "not started", style="dim")
    total = f"/{training.max_steps}" if training.max_steps else ""
    text = Text(f"step {training.step}{total}")
    if training.loss is not None:
        text.append(f", loss {_number(training.loss)}")
    return text


def _anomalies_cell(view: RunView) -> Text:
    if not view.anomalies:
        return Text("none", style="dim")
    first = view.anomalies[0]  # its severity and message are in the findings below the table
    text = Text(first.kind, style="red")
    if first.step is not None:
        text.append(f" at step {first.step}")
    if len(view.anomalies) > 1:
        text.append(f", {len(view.anomalies) - 1} more")
    return text


def _number(value: float) -> str:
    return str(value) if not math.isfinite(value) else f"{value:.4g}"


def _short(message: str, width: int = _MESSAGE_WIDTH) -> str:
    message = " ".join(message.split())
    return message if len(message) <= width else message[: width - 1] + "…"


def event_lines(before: dict[str, RunView], views: list[RunView], elapsed: float) -> list[str]:
    """What changed since `before` (keyed by name), one line each: the live view for a log or a
    pipe, where a redrawn screen would be noise."""
    lines = []
    for view in views:
        old = before.get(view.name)
        stamp = f"{elapsed:5.0f}s  {view.name}:"
        old_layers = {layer.layer: layer.phase for layer in old.layers} if old else {}
        for layer in view.layers:
            if layer.phase in ("Passed", "Failed") and old_layers.get(layer.layer) != layer.phase:
                failed = [c.name for c in layer.checks if c.verdict == "Failed"]
                passed = sum(c.verdict == "Passed" for c in layer.checks)
                detail = f"failed: {', '.join(failed)}" if failed else f"{passed} checks passed"
                lines.append(f"{stamp} {layer.layer} {layer.phase} ({detail})")
        seen = len(old.anomalies) if old else 0
        for anomaly in view.anomalies[seen:]:
            lines.append(
                f"{stamp} anomaly {anomaly.kind} ({anomaly.severity}) at step {anomaly.step}: "
                f"bundle {anomaly.bundle_uri or 'pending'}"
            )
        phase = view.phase
        old_phase = old.phase if old else None
        if phase != old_phase:
            detail = f" ({_short(view.message, 90)})" if view.message and view.finished else ""
            lines.append(f"{stamp} {phase}{detail}")
        elif view.training and view.training.step and _crossed_quarter(old, view):
            lines.append(f"{stamp} {training_text(view.training)}")
    return lines


def training_text(training: TrainingView) -> str:
    total = f"/{training.max_steps}" if training.max_steps else ""
    loss = f", loss {_number(training.loss)}" if training.loss is not None else ""
    return f"training step {training.step}{total}{loss}"


def _crossed_quarter(old: RunView | None, view: RunView) -> bool:
    """Whether training passed another quarter of its step budget since `old`."""
    assert view.training is not None
    total = view.training.max_steps
    if not total or view.training.step is None:
        return False
    before = (old.training.step or 0) if old and old.training else 0
    return int(4 * view.training.step / total) > int(4 * before / total)
