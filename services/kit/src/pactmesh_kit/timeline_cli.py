"""``pactmesh timeline <request id>`` and ``pactmesh trace <request id>``: a request's
story in a terminal.

``timeline`` asks intake (``GET /v1/requests/{id}/timeline``) and prints one line per
step, with the detail that step carries: the model and prompt of each call, its raw
output and whether it validated, each tool's arguments and result, each gate's rule and
the reviewer's decision. ``trace`` reads the services' local span files
(``<data dir>/traces/*.jsonl``, written when no OTLP endpoint is set), so traces can be
read without Docker or Jaeger: every span of the request's traces as an indented tree,
with the traces a review pause links together.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from pactmesh_kit.telemetry import WORKFLOW_ID_ATTRIBUTE


def fetch_timeline(url: str, request_id: str, token: str) -> dict[str, Any]:
    """The request's timeline from intake at ``url``."""
    answer = httpx.get(
        f"{url.rstrip('/')}/v1/requests/{request_id}/timeline",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    if answer.status_code == 404:
        raise LookupError(f"no request {request_id} this token may read")
    answer.raise_for_status()
    found: dict[str, Any] = answer.json()
    return found


def render_timeline(timeline: dict[str, Any]) -> str:
    """The timeline as text: one block per step."""
    lines = [f"request {timeline['request_id']} (tenant {timeline['tenant']})"]
    for entry in timeline["entries"]:
        at = entry["at"]
        kind = entry["type"].removeprefix("audit.").rsplit(".v", 1)[0]
        head, *rest = _describe(kind, entry["detail"])
        lines.append(f"{at[11:23]}  {kind:<20} {head}")
        lines += [textwrap.indent(line, " " * 35) for line in rest]
    return "\n".join(lines)


def _clip(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _describe(kind: str, d: dict[str, Any]) -> list[str]:
    """A step's summary line, then its detail lines."""
    if kind == "request.accepted":
        return [f"over {d['channel']}: {_clip(d['text'])}"]
    if kind == "request.routed":
        by = f" by {d['model']}" if d.get("model") else ""
        human = ", needs a person" if d.get("needs_human") else ""
        return [f"{d['workflow']} ({d['confidence']:.2f}{human}){by}", f"reason: {d['reason']}"]
    if kind == "model.called":
        return _model_call(d)
    if kind == "tool.called":
        outcome = "ok" if d["ok"] else f"{d['error_code']}: {d['message']}"
        return [
            f"{d['tool']} -> {outcome} ({d['attempts']} attempt(s), {d['duration_ms']} ms)",
            f"arguments: {_clip(d['arguments'])}",
            *([f"result: {_clip(d['result'])}"] if d["ok"] else []),
        ]
    if kind == "gate.fired":
        return [
            f"{d['rule']}: waits for a {d['required_role']} ({d['priority']})",
            f"summary: {d['summary']}",
            f"proposed: {_clip(d['proposed_action'])}",
        ]
    if kind == "review.decided":
        edit = [f"edited to: {_clip(d['edited_action'])}"] if d.get("edited_action") else []
        return [f"{d['decision']} by {d['reviewer']}", f"comment: {d['comment'] or '-'}", *edit]
    if kind == "workflow.completed":
        spent = d.get("usage") or {}
        cost = f", {spent.get('input_tokens', 0)}+{spent.get('output_tokens', 0)} tokens"
        return [f"{d['workflow']} {d['outcome']}{cost if spent else ''}"] + (
            [f"error: {d['error']}"] if d.get("error") else []
        )
    if kind == "result.delivered":
        return [f"{d['outcome']} on {d['topic']}"]
    return [_clip(d)]


def _model_call(d: dict[str, Any]) -> list[str]:
    prompt = d.get("prompt") or {}
    template = f"{prompt['name']} v{prompt['version']}" if prompt else "no template"
    answered = d.get("response_model") or d["model"]
    usage = d.get("usage") or {}
    head = (
        f"{d['role']} ({template}) -> {answered}: {d['validation']}"
        f"{' (repair)' if d.get('attempt', 1) > 1 else ''}, "
        f"{usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)} tokens"
    )
    if d.get("error_type"):
        return [f"{d['role']} ({template}) -> {d['model']}: failed, {d['error_type']}"]
    lines = [head, f"raw output: {_clip(d.get('raw_output') or '')}"]
    lines += [f"error: {e}" for e in d.get("errors", [])]
    return lines


# -- the local span files -------------------------------------------------------------


def read_spans(trace_dir: Path) -> list[dict[str, Any]]:
    """Every span in the JSON-lines files under ``trace_dir`` (rotated ones included)."""
    spans = []
    for path in sorted(trace_dir.glob("*.jsonl*")):
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.strip():
                    try:
                        spans.append(json.loads(line))
                    except ValueError:
                        continue  # a line cut by a crash
    return spans


def request_spans(spans: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    """The spans of every trace that touched the request, and of the traces linked to
    them (a review's pause and its resumption are two traces, linked)."""
    traces = {
        s["context"]["trace_id"]
        for s in spans
        if s.get("attributes", {}).get(WORKFLOW_ID_ATTRIBUTE) == request_id
    }
    linked = {
        link["trace_id"] for s in spans if s["context"]["trace_id"] in traces for link in s["links"]
    }
    linking = {
        s["context"]["trace_id"]
        for s in spans
        if any(link["trace_id"] in traces for link in s["links"])
    }
    wanted = traces | linked | linking
    return [s for s in spans if s["context"]["trace_id"] in wanted]


def render_trace(spans: list[dict[str, Any]]) -> str:
    """The spans as one indented tree per trace, children in start order."""
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    ids = {s["context"]["span_id"] for s in spans}
    for span in sorted(spans, key=lambda s: s["start_time"]):
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children[parent].append(span)
    lines: list[str] = []
    for root in children[None]:
        if not lines or root["context"]["trace_id"] != _trace_of(lines):
            lines.append(f"trace {root['context']['trace_id']}")
        lines += _tree(root, children, depth=1)
    return "\n".join(lines)


def _trace_of(lines: list[str]) -> str:
    return next(line.split()[1] for line in reversed(lines) if line.startswith("trace "))


def _tree(
    span: dict[str, Any], children: dict[str | None, list[dict[str, Any]]], *, depth: int
) -> Iterator[str]:
    service = span.get("resource", {}).get("attributes", {}).get("service.name", "?")
    took = (span["end_time"] - span["start_time"]) / 1e6
    error = " ERROR" if span["status"]["status_code"] == "ERROR" else ""
    yield f"{'  ' * depth}{span['name']}  [{service}] {took:.1f} ms{error}{_genai(span)}"
    for link in span["links"]:
        yield f"{'  ' * (depth + 1)}↳ linked to {link['trace_id']}/{link['span_id']}"
    for child in children.get(span["context"]["span_id"], []):
        yield from _tree(child, children, depth=depth + 1)


def _genai(span: dict[str, Any]) -> str:
    attributes = span.get("attributes", {})
    keys = ("gen_ai.response.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
    found = [f"{k.rsplit('.', 1)[-1]}={attributes[k]}" for k in keys if k in attributes]
    return f"  ({', '.join(found)})" if found else ""


def trace_dir(data_dir: Path) -> Path:
    """Where the services write their spans without an OTLP endpoint."""
    return Path(os.environ.get("PACTMESH_TRACE_DIR", data_dir / "traces"))
