"""Hypothesis strategies for Experiment and ValidationPyramid manifests.

Three families, as a user or an agent might send them:

- valid: drawn from the generated CRD's own structural schema (types, enums, bounds, patterns,
  list-map keys), so every field the API has can appear, not only those the examples use;
- near-valid: an example manifest (examples/digits, examples/demo) with one thing changed: a
  field set to a value just past its bound, of the wrong type, null, removed, or duplicated;
- hostile: the same walk with values nobody should send: huge strings, deep nesting, control
  characters, NUL, right-to-left overrides, lone surrogates, numbers beyond int64 and float64,
  NaN and infinities, unknown fields.

Each strategy returns a plain dict, the JSON a client would send.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator
from typing import Any

import yaml
from hypothesis import strategies as st

from tests.support.crd_schema import REPO, load_crd, root_schema

KINDS = {"Experiment": "experiments", "ValidationPyramid": "validationpyramids"}
SCHEMAS = {kind: root_schema(load_crd(plural)) for kind, plural in KINDS.items()}


def _load(path: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((REPO / path).read_text())
    return manifest


# Every field of an Experiment set, so a mutation can reach fields the examples leave out.
_FULL_EXPERIMENT: dict[str, Any] = {
    "apiVersion": "proctor.dev/v1alpha1",
    "kind": "Experiment",
    "metadata": {"name": "fuzz-full", "labels": {"proctor.dev/study": "fuzz"}},
    "spec": {
        "hypothesis": {
            "statement": "Pre-norm blocks train at twice the learning rate.",
            "expectedOutcome": "val loss below 2.10 at 20k steps",
            "inspiredBy": [
                {"kind": "Experiment", "ref": "digits-mlp-baseline"},
                {"kind": "Paper", "ref": "arXiv:2002.04745"},
                {"kind": "Note", "ref": "a hunch"},
            ],
            "independentVariable": "code.config.lr",
            "controls": ["seed 0", "same image"],
        },
        "baseline": "digits-mlp-baseline",
        "code": {
            "image": "registry.example/team/model:1.4",
            "entrypoint": "pkg.module:setup",
            "config": {"lr": 0.003, "layers": [1, 2], "nested": {"a": None, "b": True}},
            "env": [
                {"name": "DATA_DIR", "value": "/data"},
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}},
                {
                    "name": "MODE",
                    "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "m", "optional": True}},
                },
            ],
            "imagePullSecrets": ["regcred"],
            "imagePullPolicy": "IfNotPresent",
        },
        "validation": {
            "layers": {
                "l0": {
                    "enabled": True,
                    "timeout": "5m",
                    "steps": 10,
                    "warmupSteps": 2,
                    "maxDataWaitRatio": 0.2,
                    "maxMemoryRatio": 0.8,
                    "minMfuRatio": 0.1,
                    "peakFlops": 5.0e10,
                },
                "l1": {
                    "steps": 3,
                    "minGradNorm": 1e-9,
                    "maxGradNorm": 1e3,
                    "maxDeadActivationRatio": 0.8,
                    "minAttentionEntropyRatio": 0.1,
                    "maxEmbeddingNormDriftRatio": 0.4,
                },
                "l2": {
                    "samples": 128,
                    "maxSteps": 200,
                    "targetLossRatio": 0.2,
                    "lossFloor": 0.1,
                    "minMonotonicity": 0.6,
                },
                "l3": {
                    "enabled": False,
                    "steps": 3,
                    "predictionTolerance": 1e-5,
                    "resumeLossTolerance": 1e-4,
                },
            },
            "resources": {
                "cpu": "500m",
                "memory": "1Gi",
                "gpus": 0,
                "sharedMemory": "256Mi",
                "gpuResourceName": "nvidia.com/gpu",
            },
        },
        "training": {
            "budget": {"maxSteps": 1000, "maxDuration": "1h30m"},
            "resources": {
                "cpu": 2,
                "memory": "4Gi",
                "gpus": 1,
                "sharedMemory": "2Gi",
                "gpuResourceName": "nvidia.com/mig-1g.10gb",
            },
            "scheduling": {
                "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {
                        "key": "spot",
                        "operator": "Equal",
                        "value": "true",
                        "effect": "NoExecute",
                        "tolerationSeconds": 60,
                    },
                ],
                "priorityClassName": "research",
            },
            "serviceAccountName": "trainer",
            "nodes": 2,
            "checkpoint": {
                "uri": "s3://ckpts/runs",
                "everySteps": 100,
                "everyDuration": "10m",
                "keepLast": 2,
            },
            "queueName": "gpu-queue",
            "command": ["python", "-m", "train", "--lr=3e-3"],
        },
        "watchdog": {
            "enabled": True,
            "thresholds": {
                "lossSpikeFactor": 5,
                "stallFactor": 8,
                "minMfuRatio": 0.2,
                "throughputDropRatio": 0.4,
                "maxMemoryRatio": 0.9,
                "detectPlateau": True,
                "maxCheckpointAge": "1h",
            },
            "schedule": {
                "denseInterval": "10s",
                "sparseInterval": "1m",
                "warmup": "5m",
                "endWindowRatio": 0.2,
            },
            "metricSources": {
                "trainerMetricsPort": 9200,
                "prometheusURL": "http://prom:9090",
                "dcgmExporterURL": "http://node:9400/metrics",
            },
        },
        "recovery": {"bundleURI": "file:///var/lib/proctor/bundles", "onAnomaly": "StopTraining"},
        "guardrails": {
            "allowMultipleChanges": {"reason": "a sweep"},
            "allowRetry": {"reason": "measuring variance"},
        },
    },
}

SEEDS: dict[str, list[dict[str, Any]]] = {
    "Experiment": [
        _load("examples/digits/experiment.yaml"),
        _load("examples/demo/healthy.yaml"),
        _load("examples/demo/planted-bug.yaml"),
        _load("examples/demo/lr-restart.yaml"),
        _FULL_EXPERIMENT,
    ],
    "ValidationPyramid": [
        _load("examples/digits/pyramid.yaml"),
        {
            "apiVersion": "proctor.dev/v1alpha1",
            "kind": "ValidationPyramid",
            "metadata": {"name": "fuzz-full"},
            "spec": {
                "code": copy.deepcopy(_FULL_EXPERIMENT["spec"]["code"]),
                "layers": copy.deepcopy(_FULL_EXPERIMENT["spec"]["validation"]["layers"]),
                "resources": {"cpu": "1", "memory": "1Gi", "gpus": 1},
                "scheduling": copy.deepcopy(_FULL_EXPERIMENT["spec"]["training"]["scheduling"]),
                "maxInfrastructureRetries": 2,
                "reportURI": "s3://reports/pyramids",
            },
        },
    ],
}

# ---- hostile values --------------------------------------------------------------------------

INT64_MAX = 2**63 - 1

_NASTY_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\n",
    "x\n",  # `$` in a Python regex matches before a trailing newline; RE2's does not
    "\r\n",
    "\t",
    "\u202eevil\u202c",  # right-to-left override
    "\u200b",  # zero width space
    "\ufeff",
    "\ud800",  # a lone surrogate: not UTF-8 encodable
    "\U0001f916",
    "é",
    "Ω≈ç√",
    "../../../etc/passwd",
    "$(PATH)",
    "${HOME}",
    "'; DROP TABLE experiments; --",
    "%s%n%x",
    "\\",
    '"',
    "{{ .Values }}",
    "<script>alert(1)</script>",
    "a:b",
    "1e3",
    "0x10",
    "NaN",
    "-1",
    "10m\n",
    "digits_mlp:setup\n",
    "s3://bucket/../../other",
    "file:///../../etc",
]

_LONG_SIZES = [63, 64, 253, 254, 512, 513, 1024, 1025, 4096, 4097, 32768, 32769, 200_000]

_NUMBERS: list[Any] = [
    -1,
    0,
    1,
    -(2**31),
    2**31,
    -(2**63),
    INT64_MAX,
    2**63,
    2**64,
    10**30,
    -(10**30),
    10**400,  # beyond float64 too
    -0.0,
    0.5,
    1.0,
    1e-320,
    1e308,
    -1e308,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
]


def hostile_text(longest: int = _LONG_SIZES[-1]) -> st.SearchStrategy[str]:
    """Strings nobody should send: control characters, NUL, bidi overrides, lone surrogates,
    injection-shaped text, and strings of up to `longest` characters."""
    return st.one_of(
        st.sampled_from(_NASTY_TEXT),
        st.text(
            alphabet=st.characters(codec=None, exclude_categories=()),  # every code point
            max_size=24,
        ),
        st.builds(
            lambda unit, size: unit * size,
            st.sampled_from(["a", "é", "\U0001f916", "\x00", "0", "a-", "A"]),
            st.sampled_from([size for size in _LONG_SIZES if size <= longest]),
        ),
    )


def nested(depth: int, leaf: Any = 1, as_list: bool = False) -> Any:
    """A value nested `depth` levels deep, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


def hostile_value() -> st.SearchStrategy[Any]:
    json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
    return st.one_of(
        hostile_text(),
        st.sampled_from(_NUMBERS),
        st.integers(),
        st.floats(),
        st.sampled_from([None, [], {}, [None], [1, 1], {"": 1}, {"a": {"b": []}}, "1", 1.5]),
        st.builds(
            nested,
            st.sampled_from([2, 16, 64, 254, 256, 300, 600]),
            st.just(1),
            st.booleans(),
        ),
        st.recursive(
            json_leaf,
            lambda inner: st.one_of(
                st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
            ),
            max_leaves=8,
        ),
    )


# ---- valid values, from the structural schema -----------------------------------------------


def _regex(pattern: str) -> str:
    """The pattern as Python reads it with RE2's meaning of `$` (end of text, never before a
    trailing newline), so valid strings are really valid."""
    return re.sub(r"(?<!\\)\$", r"\\Z", pattern)


_BUILT: dict[tuple[int, int], st.SearchStrategy[Any]] = {}


def valid_value(node: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """A value the schema node admits (its CEL rules aside). Built once per schema node:
    building strategies costs far more than drawing from them."""
    key = (id(node), depth)
    if key not in _BUILT:
        _BUILT[key] = _valid_value(node, depth)
    return _BUILT[key]


def _valid_value(node: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    if node.get("x-kubernetes-int-or-string"):
        return st.one_of(
            st.integers(0, 10**6),
            st.from_regex(r"\A[1-9][0-9]{0,3}(m|Mi|Gi|k)?\Z"),
        )
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "string":
        low, high = node.get("minLength", 0), node.get("maxLength", 64)
        if "pattern" in node:
            return st.from_regex(_regex(node["pattern"])).filter(lambda s: low <= len(s) <= high)
        return st.text(min_size=max(low, 0), max_size=min(high, 40))
    if kind == "integer":
        return st.integers(node.get("minimum", -(10**6)), node.get("maximum", 10**6))
    if kind == "number":
        return st.floats(
            min_value=node.get("minimum"),
            max_value=node.get("maximum", 1e6),
            exclude_min=bool(node.get("exclusiveMinimum")) and "minimum" in node,
            exclude_max=bool(node.get("exclusiveMaximum")) and "maximum" in node,
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        items = valid_value(node["items"], depth + 1)
        low, high = node.get("minItems", 0), min(node.get("maxItems", 3), 3)
        keys = node.get("x-kubernetes-list-map-keys")
        unique_by = (lambda item: tuple(item.get(k) for k in keys)) if keys else None
        return st.lists(items, min_size=low, max_size=max(low, high), unique_by=unique_by)
    if kind == "object":
        if "properties" in node:
            required = set(node.get("required", []))
            props = {k: v for k, v in node["properties"].items() if k not in ("status",)}
            if depth == 0:  # the root: apiVersion and kind are fixed, metadata has a name
                props = {k: v for k, v in props.items() if k not in ("apiVersion", "kind")}
            return st.fixed_dictionaries(
                {k: valid_value(v, depth + 1) for k, v in props.items() if k in required},
                optional={
                    k: valid_value(v, depth + 1) for k, v in props.items() if k not in required
                },
            )
        if isinstance(node.get("additionalProperties"), dict):
            return st.dictionaries(
                st.from_regex(r"\A[a-z]([a-z0-9.-]{0,20}/)?[a-z0-9]{1,20}\Z"),
                valid_value(node["additionalProperties"], depth + 1),
                max_size=3,
            )
        return st.recursive(  # free-form (code.config)
            st.one_of(st.none(), st.booleans(), st.integers(-100, 100), st.text(max_size=8)),
            lambda inner: st.dictionaries(st.text(max_size=6), inner, max_size=3),
            max_leaves=6,
        ).map(lambda v: v if isinstance(v, dict) else {"value": v})
    return st.none()


_NAMES = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}[a-z0-9]\Z")


@st.composite
def valid_manifest(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """A manifest whose every field is drawn from the CRD's schema."""
    body = draw(valid_value(SCHEMAS[kind]))
    body.pop("metadata", None)
    return {
        "apiVersion": "proctor.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": draw(_NAMES)},
        **body,
    }


# ---- mutations -------------------------------------------------------------------------------

Path = tuple[str | int, ...]


def paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every path into a JSON value (dict keys and list indexes), the root excluded."""
    todo: list[tuple[Path, Any]] = [(prefix, value)]
    while todo:
        path, node = todo.pop()
        children: list[tuple[str | int, Any]] = []
        if isinstance(node, dict):
            children = list(node.items())
        elif isinstance(node, list):
            children = list(enumerate(node))
        for key, child in children:
            yield (*path, key)
            if len(path) < 12:
                todo.append(((*path, key), child))


def _parent(doc: Any, path: Path) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


def schema_at(kind: str, path: Path) -> dict[str, Any] | None:
    """The schema node of `path` in `kind`'s CRD, or None where the schema says nothing."""
    node: dict[str, Any] | None = SCHEMAS[kind]
    for key in path:
        if node is None:
            return None
        if isinstance(key, int):
            node = node.get("items")
        elif "properties" in node:
            node = node["properties"].get(key)
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return node


def typed_hostile(node: dict[str, Any] | None, current: Any) -> st.SearchStrategy[Any]:
    """A hostile value of the type the schema expects (or close to it): the bounds' neighbours,
    integers past int64, NaN, patterns' near misses, duplicated items."""
    if node is None:
        return hostile_value()
    if node.get("x-kubernetes-int-or-string"):
        return st.sampled_from(
            ["1\n", " 1", "1 ", "-1", "+1", "1e400", "1.5Gi", "0x10", "∞", -1, 2**63, 10**400, 1.5]
        )
    if "enum" in node:
        return st.sampled_from(
            ["", *(v.lower() for v in node["enum"]), *(f"{v} " for v in node["enum"]), None]
        )
    kind = node.get("type")
    if kind == "integer":
        low, high = node.get("minimum", 0), node.get("maximum", INT64_MAX)
        return st.sampled_from(
            [low - 1, high + 1, low, high, 2**63, -(2**63) - 1, 2**64, 10**30, 10**400, 1.0, 0.5]
        )
    if kind == "number":
        low, high = node.get("minimum", -1e308), node.get("maximum", 1e308)
        return st.sampled_from(
            [
                *(math.nan, math.inf, -math.inf, low, high, -0.0, 5e-324, 1e308, 2**64, 10**400),
                *(math.nextafter(low, -math.inf), math.nextafter(high, math.inf)),
            ]
        )
    if kind == "string":
        text = current if isinstance(current, str) else "x"
        near = [text + "\n", text + "\x00", text * 50, "\u202e" + text]
        if text:
            near += [text.upper(), f" {text}", text[:-1]]
        strategies = [st.sampled_from(near), hostile_text()]
        if "pattern" in node:  # Python's `$` lets hypothesis add a final newline sometimes
            strategies.append(st.from_regex(node["pattern"]))
        if "maxLength" in node:
            strategies.append(st.just("a" * (node["maxLength"] + 1)))
        return st.one_of(*strategies)
    if kind == "array" and isinstance(current, list):
        extra = [*current, *(current[:1] or [None])]
        return st.sampled_from([extra, current * 40, [None], [[]], current[::-1] + current])
    if kind == "object":
        return st.sampled_from([{}, None, [], {"": None}, {"\x00": 1}])
    return hostile_value()


@st.composite
def mutated(
    draw: st.DrawFn, manifest: dict[str, Any], hostile: bool, kind: str = ""
) -> dict[str, Any]:
    """`manifest` with one to three things changed."""
    doc = copy.deepcopy(manifest)
    for _ in range(draw(st.integers(1, 3))):
        candidates = sorted(paths(doc), key=repr)
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent, key = _parent(doc, path), path[-1]
        action = draw(
            st.sampled_from(
                ["replace", "replace", "replace", "delete", "null", "unknown", "duplicate", "wrap"]
            )
        )
        if action == "replace":
            if not hostile:
                value = draw(_near(parent[key]))
            elif kind and draw(st.booleans()):
                value = draw(typed_hostile(schema_at(kind, path), parent[key]))
            else:
                value = draw(hostile_value())
            parent[key] = value
        elif action == "delete":
            del parent[key]
        elif action == "null":
            parent[key] = None
        elif action == "unknown" and isinstance(parent[key], dict):
            parent[key][draw(st.sampled_from(["extra", "Spec", "x-y", "", "\x00"]))] = 1
        elif action == "duplicate" and isinstance(parent[key], list) and parent[key]:
            parent[key].append(copy.deepcopy(parent[key][0]))
        elif action == "wrap":
            parent[key] = draw(st.sampled_from([[parent[key]], {"value": parent[key]}]))
    return doc


@st.composite
def one_field(draw: st.DrawFn, manifest: dict[str, Any], kind: str) -> dict[str, Any]:
    """`manifest` with one field (a leaf, a list or an object) given a hostile value of about
    the type the schema expects there."""
    doc = copy.deepcopy(manifest)
    path = draw(st.sampled_from(sorted(paths(doc), key=repr)))
    parent, key = _parent(doc, path), path[-1]
    parent[key] = draw(typed_hostile(schema_at(kind, path), parent[key]))
    return doc


def _near(value: Any) -> st.SearchStrategy[Any]:
    """A value close to `value`: its bounds' neighbours, another type, a slight edit."""
    if isinstance(value, bool):
        return st.sampled_from([not value, "true", 1, None])
    if isinstance(value, int):
        return st.sampled_from([value - 1, value + 1, -value, 0, -1, float(value), str(value)])
    if isinstance(value, float):
        return st.sampled_from([-value, 0.0, 1.0, 1.0000001, value * 1e6, int(value), str(value)])
    if isinstance(value, str):
        return st.one_of(
            st.sampled_from(["", value.upper(), value + " ", " " + value, value * 20, value[:1]]),
            st.builds(lambda s: value + s, st.text(max_size=3)),
        )
    if isinstance(value, list):
        return st.sampled_from([[], value * 2, value[:1], [*value, value[0] if value else 1]])
    if isinstance(value, dict):
        return st.sampled_from([{}, {**value, "extra": 1}])
    return st.sampled_from([None, "", 0])


# Where hostile input does the most harm: the free-form config (copied into every pod's
# environment), durations (Job deadlines), and the names that become labels or pod fields.
_DURATIONS = [
    ("spec", "training", "budget", "maxDuration"),
    ("spec", "validation", "layers", "l0", "timeout"),
    ("spec", "layers", "l1", "timeout"),
    ("spec", "training", "checkpoint", "everyDuration"),
    ("spec", "watchdog", "schedule", "denseInterval"),
    ("spec", "watchdog", "thresholds", "maxCheckpointAge"),
]


@st.composite
def _bombed(draw: st.DrawFn, manifest: dict[str, Any]) -> dict[str, Any]:
    """`manifest` with its config, a duration or a name made as large as the API allows."""
    doc = copy.deepcopy(manifest)
    spec = doc["spec"]
    target = draw(st.sampled_from(["config", "duration", "name"]))
    if target == "config":
        spec["code"]["config"] = {
            "bomb": draw(
                st.one_of(
                    st.builds(nested, st.sampled_from([64, 200, 254, 255, 256, 400, 900])),
                    st.builds(lambda n: "x" * n, st.sampled_from([100_000, 131_072, 2_000_000])),
                    st.builds(lambda n: list(range(n)), st.sampled_from([10_000, 50_000])),
                )
            )
        }
    elif target == "duration":
        path = draw(st.sampled_from([p for p in _DURATIONS if p[1] in spec or p[1] == "layers"]))
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        digits = draw(st.integers(1, 31))
        node[path[-1]] = "9" * digits + draw(st.sampled_from("hms"))
    else:
        where = draw(
            st.sampled_from(["queueName", "serviceAccountName", "priorityClassName", "baseline"])
        )
        name = draw(st.sampled_from(["a" * 63, "a" * 64, "a." * 126 + "a", "a" * 253]))
        if where == "baseline":
            spec["baseline"] = name
        elif "training" in spec:
            training = spec["training"]
            if where == "priorityClassName":
                training.setdefault("scheduling", {})[where] = name
            else:
                training[where] = name
    return doc


def manifests(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Valid, near-valid and hostile manifests of `kind`."""
    seeds = st.sampled_from(SEEDS[kind])
    return st.one_of(
        valid_manifest(kind),
        seeds.flatmap(lambda seed: mutated(seed, hostile=False)),
        seeds.flatmap(lambda seed: one_field(seed, kind)),
        seeds.flatmap(lambda seed: one_field(seed, kind)),
        seeds.flatmap(lambda seed: mutated(seed, hostile=True, kind=kind)),
        valid_manifest(kind).flatmap(lambda doc: mutated(doc, hostile=True, kind=kind)),
        seeds.flatmap(_bombed),
    )


def field_path(path: Path) -> str:
    """`("spec", "code", "env", 1, "name")` as the API server writes it: spec.code.env[1].name."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
