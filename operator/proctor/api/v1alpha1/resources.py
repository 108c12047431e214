"""How each model is served by the API server: names, scope, printer columns.

Together with the models this is everything the CRD generator needs; nothing about a resource is
written anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from proctor.api.v1alpha1._base import GROUP
from proctor.api.v1alpha1.experiment import Experiment
from proctor.api.v1alpha1.pyramid import ValidationPyramid

ProctorResource = Experiment | ValidationPyramid
"""Any object of a Proctor kind."""


@dataclass(frozen=True)
class PrinterColumn:
    """A column of `kubectl get`: a JSONPath into the object and how to show it."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    description: str
    priority: int = 0
    format: str | None = None


@dataclass(frozen=True)
class ResourceInfo:
    """A namespaced custom resource of group proctor.dev, served from `model`."""

    model: type[Experiment] | type[ValidationPyramid]
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = ("proctor",)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


_AGE = PrinterColumn(
    "Age", ".metadata.creationTimestamp", "date", "Time since the object was created."
)

EXPERIMENT = ResourceInfo(
    model=Experiment,
    kind="Experiment",
    plural="experiments",
    singular="experiment",
    short_names=("exp",),
    columns=(
        PrinterColumn("Phase", ".status.phase", "string", "Where the experiment is in its life."),
        PrinterColumn(
            "Layer", ".status.validation.layer", "string", "The pyramid layer running or failed."
        ),
        PrinterColumn("Step", ".status.training.step", "integer", "Latest training step."),
        PrinterColumn("Loss", ".status.training.loss", "number", "Latest training loss."),
        PrinterColumn("MFU", ".status.training.mfu", "number", "Model FLOPs utilisation (ratio)."),
        PrinterColumn(
            "Anomalies", ".status.anomalyCount", "integer", "Anomalies the watchdog found."
        ),
        PrinterColumn("Verdict", ".spec.conclusion.verdict", "string", "The conclusion's verdict."),
        _AGE,
    ),
)

VALIDATION_PYRAMID = ResourceInfo(
    model=ValidationPyramid,
    kind="ValidationPyramid",
    plural="validationpyramids",
    singular="validationpyramid",
    short_names=("vp",),
    columns=(
        PrinterColumn("Phase", ".status.phase", "string", "Pending, Running, Passed or Failed."),
        PrinterColumn("Layer", ".status.currentLayer", "string", "The layer running or last run."),
        PrinterColumn("Passed", ".status.passedChecks", "integer", "Checks passed so far."),
        PrinterColumn("Checks", ".status.totalChecks", "integer", "Checks run so far.", priority=1),
        _AGE,
    ),
)

RESOURCES: tuple[ResourceInfo, ...] = (EXPERIMENT, VALIDATION_PYRAMID)
