"""What to run: the training code's image, entrypoint, configuration, environment and resources.

Shared by Experiment (spec.code, spec.training.resources) and ValidationPyramid (spec.code).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from proctor.api.v1alpha1._base import (
    ENTRYPOINT_PATTERN,
    FREE_FORM,
    SHORT_TEXT,
    ApiModel,
    Quantity,
    cel_rule,
    cel_rules,
)

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Env names that hold credentials; their values must come from a Secret, never the spec.
# Matched per underscore-separated word, so HF_TOKEN is refused but TOKENIZER_PATH is not.
SECRET_LIKE_ENV_NAME = (
    r"(?i)(^|.*_)(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|ACCESS_KEY|PRIVATE_KEY)(_.*|$)"
)


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
            raise ValueError("set exactly one of secretKeyRef or configMapKeyRef")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel_rule(
                "has(self.secretKeyRef) != has(self.configMapKeyRef)",
                "set exactly one of secretKeyRef or configMapKeyRef",
            )
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
            raise ValueError("set value or valueFrom, not both")
        if self.value is not None and re.fullmatch(SECRET_LIKE_ENV_NAME, self.name):
            raise ValueError(
                f"{self.name} looks like a credential, and a literal value would be readable by "
                "anyone who can read the Experiment: put it in a Secret and use "
                "valueFrom.secretKeyRef"
            )
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel_rule(
                "!(has(self.value) && has(self.valueFrom))", "set value or valueFrom, not both"
            ),
            cel_rule(
                f"!has(self.value) || !self.name.matches('{SECRET_LIKE_ENV_NAME}')",
                "this variable looks like a credential: put it in a Secret and use "
                "valueFrom.secretKeyRef instead of a literal value",
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
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    image_pull_policy: ImagePullPolicy | None = Field(
        default=None,
        description="Always, IfNotPresent or Never; unset follows the Kubernetes default for "
        "the tag.",
    )


class Resources(ApiModel):
    """Compute for one pod: CPU, memory, GPUs."""

    cpu: Quantity | None = Field(
        default=None, description="CPU cores requested and limited, for example 4 or 500m."
    )
    memory: Quantity | None = Field(
        default=None, description="Memory requested and limited, for example 16Gi."
    )
    gpus: int = Field(default=0, ge=0, le=64, description="Whole GPUs per pod (0 runs on CPU).")
    gpu_resource_name: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        default="nvidia.com/gpu",
        description="The extended resource that counts GPUs on your nodes, e.g. nvidia.com/gpu "
        "or a MIG profile such as nvidia.com/mig-1g.10gb.",
    )
