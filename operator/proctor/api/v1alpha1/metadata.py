"""The part of Kubernetes object metadata that Proctor reads; the API server owns the rest."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from proctor.api.v1alpha1._base import FREE_FORM, ApiModel, ObjectName


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
