"""The Proctor API: pydantic models of the custom resources, the single source of their schemas.

Everything else (CRDs, the chart's CRD templates, `kubectl explain` text) is generated from these
models. This package imports nothing else of Proctor's, so any component may depend on it.
"""
