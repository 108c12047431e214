"""The one error the agent tools raise: what went wrong, and the command that fixes it.

An agent acts on the hint, so every AgentError carries one; the CLI prints both (or emits
{"error": ..., "hint": ...} under --output json) and the MCP server returns them as a tool error.
"""

from __future__ import annotations


class AgentError(Exception):
    """`message` says what happened, with the names and numbers involved; `hint` says what to do
    next, as a command or a field to change."""

    def __init__(self, message: str, hint: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or []

    def __str__(self) -> str:
        lines = [self.message, *(f"  {d}" for d in self.details)]
        return "\n".join(lines) + f"\nhint: {self.hint}"

    def as_dict(self) -> dict[str, object]:
        """The --output json shape of an error."""
        body: dict[str, object] = {"error": self.message, "hint": self.hint}
        if self.details:
            body["details"] = self.details
        return body
