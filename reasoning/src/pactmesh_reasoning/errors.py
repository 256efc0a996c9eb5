"""The reasoning package's exceptions; each carries a stable code."""

from __future__ import annotations


class ReasoningError(Exception):
    """Root of the reasoning package's exceptions."""

    code = "reasoning_error"
