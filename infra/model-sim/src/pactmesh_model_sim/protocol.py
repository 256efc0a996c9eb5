"""The part of OpenAI's chat completions schema the simulator reads and writes.

Requests allow unknown fields, as OpenAI does for the many options a client may send
(``n``, ``seed``, ``parallel_tool_calls``...); the simulator ignores those.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class FunctionDef(BaseModel):
    """A tool's function: its name and the JSON Schema of its arguments."""

    model_config = ConfigDict(extra="allow")

    name: str
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class ToolDef(BaseModel):
    """One tool offered to the model."""

    model_config = ConfigDict(extra="allow")

    type: Literal["function"] = "function"
    function: FunctionDef


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]]
    tools: list[ToolDef] | None = None
    tool_choice: str | dict[str, Any] | None = None
    """``"auto"``, ``"none"``, ``"required"`` or ``{"type": "function", "function":
    {"name": ...}}``."""
    response_format: dict[str, Any] | None = None
    """``{"type": "text" | "json_object"}`` or ``{"type": "json_schema", "json_schema":
    {"name": ..., "schema": {...}}}``."""
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None

    def last_user_text(self) -> str:
        """The text of the last user message ("" when there is none)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return content_text(message.get("content"))
        return ""

    def chosen_tool(self) -> ToolDef | None:
        """The tool the answer calls: the one ``tool_choice`` names, else the first;
        ``None`` when no tools are offered or ``tool_choice`` is ``"none"``."""
        if not self.tools or self.tool_choice == "none":
            return None
        if isinstance(self.tool_choice, dict):
            name = self.tool_choice.get("function", {}).get("name")
            for tool in self.tools:
                if tool.function.name == name:
                    return tool
            raise UnknownToolChoice(f"tool_choice names {name!r}, which is not in tools")
        return self.tools[0]

    def json_schema(self) -> dict[str, Any] | None:
        """The schema a ``json_schema`` response format asks the content to follow;
        ``{}`` (any object) for ``json_object``; ``None`` for plain text."""
        if not self.response_format:
            return None
        kind = self.response_format.get("type")
        if kind == "json_schema":
            schema: dict[str, Any] = self.response_format.get("json_schema", {}).get("schema", {})
            return schema
        return {} if kind == "json_object" else None


class UnknownToolChoice(ValueError):
    """``tool_choice`` names a tool the request does not offer (OpenAI answers 400)."""


def content_text(content: Any) -> str:
    """A message's text, whether its content is a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        ).strip()
    return ""


def error_body(message: str, *, kind: str, code: str | None = None) -> dict[str, Any]:
    """An error in OpenAI's shape, which the ``openai`` client turns into its exceptions."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
