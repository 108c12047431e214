"""When to check next: densely while a run warms up and near the end of its budget (where most
failures happen: bad initialisation, a last checkpoint that does not land), sparsely between."""

from __future__ import annotations

from proctor.api.v1alpha1 import duration_seconds
from proctor.api.v1alpha1.experiment import WatchdogSchedule


def next_interval(elapsed: float, budget_used: float | None, schedule: WatchdogSchedule) -> float:
    """Seconds until the next check, `elapsed` seconds into a run that has used `budget_used`
    of its budget (0 to 1, the larger of time and steps; None when it has no bound)."""
    dense = float(duration_seconds(schedule.dense_interval))
    sparse = float(duration_seconds(schedule.sparse_interval))
    if elapsed < duration_seconds(schedule.warmup):
        return dense
    if budget_used is not None and budget_used >= 1 - schedule.end_window_ratio:
        return dense
    return sparse
