"""What to run: the training code's image, entrypoint, configuration and environment.

Shared by Experiment and ValidationPyramid (spec.code).
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from proctor.api.v1alpha1._base import (
    ENTRYPOINT_PATTERN,
    FREE_FORM,
    SHORT_TEXT,
    ApiModel,
    ObjectName,
    cel_rule,
    cel_rules,
    list_map,
)

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Env names that hold credentials; their values must come from a Secret, never the spec.
# Matched per underscore-separated word, so HF_TOKEN is refused but TOKENIZER_PATH is not.
SECRET_LIKE_ENV_NAME = (
    r"(?i)(^|.*_)(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|ACCESS_KEY|PRIVATE_KEY)(_.*|$)"
)


# Each rule is stated once and enforced twice: by the model here and by the API server (CEL).
EXACTLY_ONE_SOURCE = "set exactly one of secretKeyRef or configMapKeyRef"
VALUE_OR_VALUE_FROM = "set value or valueFrom, not both"
NO_LITERAL_CREDENTIALS = (
    "this variable looks like a credential, and a literal value is readable by anyone who can "
    "read the Experiment: put it in a Secret and use valueFrom.secretKeyRef"
)


# The config reaches every pod as one environment variable (PROCTOR_CONFIG, JSON), and Linux
# refuses to start a process with a variable over 128 KiB; the API server cannot check either
# limit (the field is free-form), so the operator's model does, and the object fails SpecInvalid.
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_BYTES = 64 * 1024
CONFIG_LIMITS_WHY = (
    "spec.code.config reaches every pod as the environment variable PROCTOR_CONFIG (JSON); keep it "
    f"to settings (at most {MAX_CONFIG_BYTES // 1024} KiB, {MAX_CONFIG_DEPTH} levels) and put bulk "
    "data in a file or object storage whose path the config names"
)


def _depth(value: Any) -> int:
    """How many lists and objects deep `value` nests, counted without recursion."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, dict | list):
            level += 1
            deepest = max(deepest, level)
            todo.extend(
                (child, level) for child in (node.values() if isinstance(node, dict) else node)
            )
    return deepest


class ImagePullPolicy(StrEnum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class KeySelector(ApiModel):
    """A key of a Secret or ConfigMap in the experiment's namespace."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        description="Name of the Secret or ConfigMap."
    )
    key: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        description="The key whose value becomes the variable."
    )
    optional: bool = Field(
        default=False, description="Start anyway when the object or key is missing."
    )


class EnvVarSource(ApiModel):
    """Where a variable's value comes from: exactly one of secretKeyRef or configMapKeyRef."""

    secret_key_ref: KeySelector | None = Field(
        default=None, description="Take the value from a key of a Secret (for credentials)."
    )
    config_map_key_ref: KeySelector | None = Field(
        default=None, description="Take the value from a key of a ConfigMap."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError(EXACTLY_ONE_SOURCE)
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel_rule("has(self.secretKeyRef) != has(self.configMapKeyRef)", EXACTLY_ONE_SOURCE)
        )
    )


class EnvVar(ApiModel):
    """An environment variable for the training and validation containers."""

    name: Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN, max_length=SHORT_TEXT)] = (
        Field(description="Variable name, a C identifier such as DATA_DIR.")
    )
    value: Annotated[str, StringConstraints(max_length=32768)] | None = Field(
        default=None,
        description="A literal value. Credentials are refused here: use valueFrom.secretKeyRef.",
    )
    value_from: EnvVarSource | None = Field(
        default=None, description="Take the value from a Secret or ConfigMap instead of `value`."
    )

    @model_validator(mode="after")
    def _no_literal_secrets(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(VALUE_OR_VALUE_FROM)
        if self.value is not None and re.fullmatch(SECRET_LIKE_ENV_NAME, self.name):
            raise ValueError(f"{self.name}: {NO_LITERAL_CREDENTIALS}")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel_rule("!(has(self.value) && has(self.valueFrom))", VALUE_OR_VALUE_FROM),
            cel_rule(
                f"!has(self.value) || !self.name.matches('{SECRET_LIKE_ENV_NAME}')",
                NO_LITERAL_CREDENTIALS,
            ),
        )
    )


class CodeSpec(ApiModel):
    """The training code under test: an image and the setup function inside it."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(
        description="Container image holding the code and Proctor's runner, for example "
        "registry.example/team/model:1.4. Pin a tag or digest: the pyramid validates this "
        "exact image."
    )
    entrypoint: Annotated[
        str, StringConstraints(pattern=ENTRYPOINT_PATTERN, max_length=SHORT_TEXT)
    ] = Field(
        description="The setup function as `package.module:function`. It is called with "
        "spec.code.config and returns the model, optimizer, data and loss; it must not import "
        "proctor."
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form configuration passed to the setup function as a dict "
        "(hyperparameters, data paths). The single-variable guardrail compares it field by field.",
        json_schema_extra=FREE_FORM,
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="Environment variables for every container that runs the code.",
        json_schema_extra=list_map("name"),
    )

    @field_validator("config")
    @classmethod
    def _config_fits_the_environment(cls, config: dict[str, Any]) -> dict[str, Any]:
        depth = _depth(config)
        if depth > MAX_CONFIG_DEPTH:
            raise ValueError(
                f"nests {depth} levels deep, more than {MAX_CONFIG_DEPTH}: {CONFIG_LIMITS_WHY}"
            )
        size = len(json.dumps(config, separators=(",", ":")).encode())
        if size > MAX_CONFIG_BYTES:
            raise ValueError(
                f"is {size} bytes as JSON, more than {MAX_CONFIG_BYTES}: {CONFIG_LIMITS_WHY}"
            )
        return config

    @model_validator(mode="after")
    def _unique_env_names(self) -> CodeSpec:
        names = [var.name for var in self.env]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"env names must be unique; repeated: {', '.join(duplicates)}")
        return self

    image_pull_secrets: list[ObjectName] = Field(
        default_factory=list,
        max_length=16,
        description="Names of Secrets (type kubernetes.io/dockerconfigjson) to pull a private "
        "image with.",
    )
    image_pull_policy: ImagePullPolicy | None = Field(
        default=None,
        description="Always, IfNotPresent or Never; unset follows the Kubernetes default for "
        "the tag.",
    )
