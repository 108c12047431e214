"""What an agent (or a person at a terminal) does with Proctor, as plain functions over typed
results: submit a manifest, read an experiment's status, wait for a phase, list and fetch its
recovery bundles, conclude it, read its study's digest.

The `proctor` CLI verbs (proctor.cli.agent) and the MCP server (proctor.mcpserver) are two thin
faces of this package, so both answer with the same shapes (proctor.agent.models) and the same
teaching errors (proctor.agent.errors.AgentError).
"""

from proctor.agent.bundles import fetch_bundle, list_bundles, recovery_prompt
from proctor.agent.conclusion import conclude
from proctor.agent.connection import Connection
from proctor.agent.errors import AgentError
from proctor.agent.report import status
from proctor.agent.study import study
from proctor.agent.submit import submit, submit_text
from proctor.agent.waiting import wait

__all__ = [
    "AgentError",
    "Connection",
    "conclude",
    "fetch_bundle",
    "list_bundles",
    "recovery_prompt",
    "status",
    "study",
    "submit",
    "submit_text",
    "wait",
]
