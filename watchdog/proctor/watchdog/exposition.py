"""Reading a Prometheus text exposition that may be broken, as the watchdog scrapes it.

A scrape is not always what the exporter meant to send: a response cut short (a timeout, a size
limit), a line garbled on the way, a proxy's error page answered with 200. The parser of
prometheus_client gives up on the whole text at the first bad line; this module keeps every line
that parses, so one broken line costs that line, not the scrape, and says how much it skipped.
A last line without its newline (every line of the format ends with one) is a cut: it is dropped,
since a number cut short still parses, to a wrong value ("0.0123" cut to "0.0").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

# What prometheus_client's parser raises for text it cannot read (ValueError in practice; the
# others have been seen from older versions and cost nothing to catch).
PARSE_ERRORS = (ValueError, IndexError, KeyError, TypeError)
_QUOTE_LIMIT = 200

Series = tuple[str, Mapping[str, str], float]
"""(metric name, labels, value) of one sample line."""


@dataclass(frozen=True)
class Exposition:
    series: list[Series] = field(default_factory=list)
    skipped: int = 0
    """Lines that did not parse (the cut last line included)."""
    first_skipped: str = ""
    """The first of them, at most 200 characters, for a note."""

    @property
    def problem(self) -> str | None:
        """What was wrong with the text, for a degraded note; None when nothing was."""
        if not self.skipped:
            return None
        return (
            f"{self.skipped} line(s) of the exposition did not parse, first: {self.first_skipped}"
        )


def parse(text: str) -> Exposition:
    """Every sample of `text` that parses; see the module docstring."""
    skipped, first = 0, ""
    if text and not text.endswith("\n"):
        cut = text.rfind("\n") + 1
        skipped, first = 1, quote(text[cut:])
        text = text[:cut]
    try:
        return Exposition(_samples(text), skipped, first)
    except PARSE_ERRORS:
        pass
    series: list[Series] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue  # comments (HELP, TYPE) matter to no sample the watchdog reads
        try:
            series += _samples(line)
        except PARSE_ERRORS:
            skipped += 1
            first = first or quote(line)
    return Exposition(series, skipped, first)


def _samples(text: str) -> list[Series]:
    return [
        (sample.name, sample.labels, float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def quote(text: str) -> str:
    """`text` quoted (control characters escaped), at most 200 characters of it, so a huge or
    binary bad answer cannot flood a note."""
    shown = repr(text[: _QUOTE_LIMIT + 1])
    return shown if len(shown) <= _QUOTE_LIMIT else shown[:_QUOTE_LIMIT] + "..."
