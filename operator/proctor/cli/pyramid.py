"""`proctor pyramid run`: the validation pyramid against user code, locally or in a layer's Job."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from proctor.api.manifests import ManifestError, load_manifests
from proctor.api.redaction import known_secrets, redact
from proctor.api.v1alpha1 import (
    CheckResult,
    CheckVerdict,
    Experiment,
    LayerName,
    LayerPhase,
    LayerResult,
    PyramidLayers,
)

if TYPE_CHECKING:
    from proctor.pyramid.runner import LayerRun


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pyramid = commands.add_parser(
        "pyramid", help="the validation pyramid (L0-L3) against user code"
    )
    verbs = pyramid.add_subparsers(title="pyramid commands", metavar="COMMAND", required=True)
    run = verbs.add_parser("run", help="run the layers in order, stopping at the first failure")
    source = run.add_argument_group("what to validate (an entrypoint, or a manifest that has one)")
    source.add_argument(
        "--entrypoint",
        default=os.environ.get("PROCTOR_ENTRYPOINT"),
        help="the setup function, package.module:function",
    )
    source.add_argument(
        "--manifest",
        type=Path,
        help="an Experiment or ValidationPyramid YAML: its spec.code and layer settings are used",
    )
    run.add_argument(
        "--config",
        default=os.environ.get("PROCTOR_CONFIG"),
        help="JSON object passed to setup (overrides the manifest's spec.code.config)",
    )
    run.add_argument(
        "--layers",
        default=os.environ.get("PROCTOR_LAYERS"),
        help="JSON object of layer settings, as spec.layers (overrides the manifest's)",
    )
    run.add_argument(
        "--path",
        type=Path,
        action="append",
        default=[],
        help="directory to import the code from (repeatable)",
    )
    run.add_argument(
        "--layer",
        choices=[layer.value for layer in LayerName],
        help="run only this layer (what each validation Job does)",
    )
    run.add_argument("--output", choices=["table", "json"], default="table")
    run.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="write the full report (every check, curves) here as JSON",
    )
    run.add_argument(
        "--termination-log",
        type=Path,
        default=None,
        help="write the layer's compact result here (a pod's terminationMessagePath)",
    )
    run.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    run.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import torch  # the pyramid extra; imported here so `proctor --help` works without it

    from proctor.pyramid.contract import ContractError, factory
    from proctor.pyramid.runner import run_pyramid, termination_message, write_report

    try:
        entrypoint, config, layers = _inputs(args)
    except (ManifestError, ValueError, OSError) as exc:
        print(f"proctor pyramid run: {exc}", file=sys.stderr)
        return 2
    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as exc:
        print(f"proctor pyramid run: --device: {exc}", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "proctor pyramid run: --device cuda, but PyTorch sees no CUDA device", file=sys.stderr
        )
        return 2
    only = LayerName(args.layer) if args.layer else None
    try:
        make = factory(entrypoint, config, args.path)
    except ContractError as exc:
        print(f"proctor pyramid run: {exc}", file=sys.stderr)
        if args.termination_log is not None and only is not None:
            # In a layer's Job: the operator reads the verdict from here, so say it here too.
            failure = _redacted(_contract_failure(only, exc))
            _write(args.termination_log, termination_message(failure))
        return 2
    table = args.output == "table"
    runs = run_pyramid(
        make, layers, entrypoint, device, only=only, on_layer=_print_layer if table else None
    )
    if args.termination_log is not None and runs:
        _write(args.termination_log, termination_message(_redacted(runs[-1].result)))
    if args.report_dir is not None:
        report = write_report(runs, args.report_dir, entrypoint)
        if table:
            print(f"full report: {report}")
    failed = any(run.result.phase == LayerPhase.FAILED for run in runs)
    passed = [run for run in runs if run.result.phase == LayerPhase.PASSED]
    if args.output == "json":
        print(
            json.dumps(
                [{**r.result.to_wire(), "seconds": round(r.seconds, 2)} for r in runs], indent=2
            )
        )
    elif not failed and passed:
        print("the pyramid passed: this code may spend GPU time")
    elif not failed:
        print("no layer ran (every one is disabled): nothing was validated")
    return 1 if failed else 0


def _inputs(args: argparse.Namespace) -> tuple[str, dict[str, Any], PyramidLayers]:
    config: dict[str, Any] = {}
    layers = PyramidLayers()
    entrypoint = args.entrypoint
    if args.manifest is not None:
        resources = load_manifests(args.manifest)
        if not resources:
            raise ValueError(f"{args.manifest} holds no Experiment or ValidationPyramid")
        resource = resources[0]
        code = resource.spec.code
        entrypoint = entrypoint or code.entrypoint
        config = dict(code.config)
        layers = (
            resource.spec.validation.layers
            if isinstance(resource, Experiment)
            else resource.spec.layers
        )
    if not entrypoint:
        raise ValueError("give --entrypoint package.module:setup or --manifest FILE")
    if args.config is not None:
        parsed = yaml.safe_load(args.config)
        if not isinstance(parsed, dict):
            raise ValueError("--config must be a JSON (or YAML) object, like '{\"lr\": 0.001}'")
        config = parsed
    if args.layers is not None:
        try:
            layers = PyramidLayers.model_validate(yaml.safe_load(args.layers))
        except (yaml.YAMLError, ValidationError) as exc:
            raise ValueError(f"--layers is not valid layer settings: {exc}") from None
    return entrypoint, config, layers


def _redacted(result: LayerResult) -> LayerResult:
    """`result` with its messages cut of secrets: they quote the user's exceptions, and the
    operator copies them into status and Events. This process knows the Secret-held values
    (PROCTOR_SECRET_ENV names them), which the operator's own pattern-based redaction cannot."""
    known = known_secrets(os.environ)
    checks = [c.model_copy(update={"message": redact(c.message, known)}) for c in result.checks]
    return result.model_copy(update={"message": redact(result.message, known), "checks": checks})


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _contract_failure(layer: LayerName, exc: Exception) -> LayerResult:
    message = f"the code does not meet the setup contract: {exc}"[:4000]
    return LayerResult(
        layer=layer,
        phase=LayerPhase.FAILED,
        attempts=1,
        checks=[CheckResult(name="contract", verdict=CheckVerdict.FAILED, message=message)],
        message=f"1 of 1 checks failed; first: contract: {message}"[:4000],
    )


_MARK = {
    CheckVerdict.PASSED: "ok",
    CheckVerdict.FAILED: "FAIL",
    CheckVerdict.WARNING: "warn",
    CheckVerdict.SKIPPED: "skip",
}


def _print_layer(run: LayerRun) -> None:
    result = run.result
    print(
        f"{result.layer.value}  {result.phase.upper():7s} {run.seconds:6.1f}s  "
        f"{result.message[:90]}"
    )
    for item in result.checks:
        value = "" if item.value is None else f"{item.value:.4g}"
        threshold = "" if item.threshold is None else f"{item.threshold:.4g}"
        judged = f"{value} / {threshold}" if threshold else value
        print(f"    {_MARK[item.verdict]:4s} {item.name:26s} {judged:22s} {item.message[:100]}")
    sys.stdout.flush()
