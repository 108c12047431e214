"""What an agent (or a person at a terminal) does with Proctor, as plain functions over typed
results: submit a manifest, read an experiment's status, wait for a phase, list and fetch its
recovery bundles, conclude it, read its study's digest.

The `proctor` CLI verbs (proctor.cli.agent) and the MCP server (proctor.mcpserver) are two thin
faces of this package, so both answer with the same shapes (proctor.agent.models) and the same
teaching errors (proctor.agent.errors.AgentError).

Import each function from its module (proctor.agent.submit, proctor.agent.report, ...). This
__init__ imports nothing, because proctor.agent.errors and proctor.agent.models are also used
where the Kubernetes client is not installed (the `proctor` command of every image).
"""
