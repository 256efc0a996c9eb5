"""Routing's exceptions; each carries a stable code."""

from __future__ import annotations

from pactmesh_kit.errors import PactmeshError


class RoutingError(PactmeshError):
    """Root of routing's exceptions."""

    code = "routing_error"


class InvalidExamples(RoutingError):
    """The few-shot examples file cannot serve the classifier; the message says why."""

    code = "routing_examples_invalid"
