"""Write the dashboards' JSON for the chart, or check (`--check`) that the committed JSON is
what the code generates. `make generate` and `make check-generated` run this."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import experiment, overview

OUTPUT = Path(__file__).resolve().parent.parent / "charts" / "proctor" / "files" / "dashboards"
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "proctor-overview.json": overview.build,
    "proctor-experiment.json": experiment.build,
}


def as_json(build: Callable[[], Dashboard]) -> dict[str, Any]:
    model: dict[str, Any] = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    # Stable panel ids keep links to a single panel (`viewPanel=`) working across regenerations.
    for number, panel in enumerate(model.get("panels", []), start=1):
        panel.setdefault("id", number)
    for annotation in model.get("annotations", {}).get("list", []):
        if annotation.get("name") == "Anomalies":
            annotation.update(experiment.ANOMALY_ANNOTATION_FIELDS)
    return model


def render() -> dict[str, str]:
    """File name to file content, for every dashboard."""
    return {
        name: json.dumps(as_json(build), indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the files have drifted")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.output / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(f"{path} is out of date: run `make generate` and commit it", file=sys.stderr)
    if args.check and not stale:
        print("Dashboards are up to date with dashboards/.")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
