"""L0 isolation: a model package whose core code imports a test helper."""
