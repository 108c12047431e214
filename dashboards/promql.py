"""PromQL building blocks shared by the dashboards."""

from __future__ import annotations

# The label selector of the per-experiment dashboard, filled in by Grafana's template variables.
EXPERIMENT = 'namespace="$namespace", experiment="$experiment"'


def selector(metric: str, labels: str = "") -> str:
    """`metric{labels}`, or the bare metric name when there are no labels."""
    return f"{metric}{{{labels}}}" if labels else metric


def events(counter: str, window: str) -> str:
    """How much each series of `counter` grew during the trailing `window`.

    Proctor's counters count rare events (an anomaly, a pyramid layer's outcome), and a labelled
    counter's series only appears at its first event, already at 1. `increase()` never sees that
    first step (it only compares samples inside the window), so a lone anomaly would read 0.
    A series that did not exist `window` ago therefore counts with its whole value; every other
    series counts its `increase()`, which also copes with counter resets (an operator restart).
    """
    return f"(({counter} unless {counter} offset {window}) or increase({counter}[{window}]))"
