"""`proctor mcp`: the agent verbs (proctor.agent) as an MCP server on stdio, for agents whose
harness speaks the Model Context Protocol rather than a shell. Needs the `agent` extra."""
