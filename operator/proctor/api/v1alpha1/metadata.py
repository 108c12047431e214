"""The part of Kubernetes object metadata that Proctor reads; the API server owns the rest."""

from __future__ import annotations

import re
from typing import Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from proctor.api.v1alpha1._base import (
    DNS_LABEL_PATTERN,
    FREE_FORM,
    MAX_NAME_LENGTH,
    NAME_TOO_LONG,
    ApiModel,
    ObjectName,
)


class ObjectMeta(ApiModel):
    """Kubernetes object metadata. Fields Proctor does not use are kept, not refused."""

    model_config = ConfigDict(extra="allow", json_schema_extra=FREE_FORM)

    name: ObjectName | None = Field(default=None, description="The object's name.")
    generate_name: str | None = Field(
        default=None, max_length=200, description="Prefix for a server-generated name."
    )
    namespace: ObjectName | None = Field(default=None, description="The object's namespace.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
    generation: int | None = Field(default=None, description="Bumped on every spec change.")

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        """`labels: null` is what the API server stores as no labels (a nil map)."""
        return {} if value is None else value


class TopLevelObject(ApiModel):
    """What every Proctor resource has: metadata, with a name that fits the names derived from it
    (the API server enforces the same with a CEL rule, NAME_LENGTH_RULE)."""

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_validator(mode="after")
    def _name_fits_derived_names(self) -> Self:
        name = self.metadata.name
        if name and (len(name) > MAX_NAME_LENGTH or not re.fullmatch(DNS_LABEL_PATTERN, name)):
            raise ValueError(NAME_TOO_LONG)
        return self
