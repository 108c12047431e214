"""The terminal view drawn on a fixed-size console: the live panels and the final table."""

from __future__ import annotations

import io

from rich.console import Console

from proctor.local import live
from proctor.local.progress import experiment_view
from tests.unit.local.conftest import experiment


def _draw(renderable, width: int = 120) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, record=True)
    console.print(renderable)
    return console.export_text()


def _rows(text: str) -> dict[str, str]:
    """Table rows by their first cell (the experiment's name)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0].startswith("digits-"):
            rows[cells[0]] = " | ".join(cells[1:])
    return rows


def test_the_final_table_shows_each_outcome_in_its_row(demo_objects):
    views = [experiment_view(e, p) for e, p in demo_objects]
    text = _draw(live.final_table(views))
    rows = _rows(text)
    assert set(rows) == {"digits-healthy", "digits-detached", "digits-lr-restart"}
    assert rows["digits-healthy"].startswith("Succeeded | passed (5 checks) | step 300/300")
    assert "none" in rows["digits-healthy"]
    assert rows["digits-detached"].startswith("Failed | L1 failed (1 of 2 checks)")
    assert "no training Job" in rows["digits-detached"]
    assert rows["digits-lr-restart"].endswith("| NonFiniteLoss at step 410")
    assert all(len(line) <= 120 for line in text.splitlines())


def test_the_final_table_marks_runs_that_ended_as_expected(demo_objects):
    views = [experiment_view(e, p) for e, p in demo_objects]
    expected = {"digits-detached": "Failed"}
    text = _draw(live.final_table(views, expected))
    rows = _rows(text)
    assert rows["digits-healthy"].startswith("Succeeded ✓ |")
    assert rows["digits-detached"].startswith("Failed ✓ |")
    assert rows["digits-lr-restart"].startswith("Failed ✗ not")  # wraps: "Succeeded" below
    assert "…" not in text, "nothing cut at 120 columns"
    assert all(len(line) <= 120 for line in text.splitlines())


def test_findings_quote_the_message_that_teaches_the_fix(demo_objects):
    views = [experiment_view(e, p) for e, p in demo_objects]
    text = _draw(live.findings(views), width=200)
    assert "digits-detached: gradients_present: 2 of 4 parameters got no gradient" in text
    assert "digits-lr-restart: NonFiniteLoss: The loss became nan at step 410." in text
    assert "digits-healthy" not in text


def test_a_live_panel_shows_the_pyramid_layer_by_layer_and_training_against_its_budget():
    status = {
        "phase": "Training",
        "training": {"step": 200, "loss": 0.25, "samplesPerSecond": 5000.0, "mfu": 0.004},
    }
    view = experiment_view(experiment("digits-healthy", status), None)
    text = _draw(live.live_view([view], elapsed=12.0), width=100)
    assert "digits-healthy  Training" in text
    assert "pyramid  L0 ·   L1 ·   L2 ·   L3 ·" in text
    assert "step 200/800" in text
    assert "loss 0.25" in text
    assert "5,000 samples/s" in text
    assert "MFU 0.4%" in text
    assert "0 of 1 finished · 12s" in text


def test_a_failed_layer_lists_its_failing_checks_in_the_live_panel(demo_objects):
    experiment_obj, pyramid_obj = demo_objects[1]
    text = _draw(live.run_panel(experiment_view(experiment_obj, pyramid_obj)), width=140)
    assert "L1 ✗ 1/2" in text
    assert "✗ gradients_present: 2 of 4 parameters got no gradient" in text


def test_events_for_a_log_name_each_change_once(demo_objects):
    views = [experiment_view(e, p) for e, p in demo_objects]
    first = live.event_lines({}, views, 30.0)
    assert any("digits-detached: L1 Failed (failed: gradients_present)" in line for line in first)
    assert any("anomaly NonFiniteLoss (Critical) at step 410" in line for line in first)
    assert any(
        line.endswith("digits-healthy: Succeeded (training finished at step 300)") for line in first
    )
    again = live.event_lines({v.name: v for v in views}, views, 31.0)
    assert again == []
