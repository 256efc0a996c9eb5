"""The ACL table: who may write and read which topic (Kafka enforces it in
tests-integration/test_secured_kafka.py)."""

from __future__ import annotations

import re

import pytest
from pactmesh_kit.acls import (
    SERVICE_TOPICS,
    Acl,
    Operation,
    PatternType,
    ResourceType,
    Upstream,
    acl_table,
    format_table,
)
from pactmesh_workflows.registry import registry

PREFIX = "pactmesh."


def writers(acls: set[Acl], topic: str) -> set[str]:
    """The principals that may write ``topic`` (a literal name, or a prefixed pattern)."""
    return {
        a.principal.removeprefix("User:")
        for a in acls
        if a.operation is Operation.WRITE
        and a.resource is ResourceType.TOPIC
        and (a.name == topic if a.pattern is PatternType.LITERAL else topic.startswith(a.name))
    }


TABLE = acl_table(prefix=PREFIX, upstreams=[Upstream.parse("crm=refund")])


@pytest.mark.parametrize(
    ("topic", "owners"),
    [
        ("requests.inbound", {"crm"}),
        ("requests.accepted", {"intake"}),
        ("requests.routed", {"routing"}),
        ("tool.calls", {"orchestrator"}),
        ("reviews.requested", {"orchestrator"}),
        # the orchestrator answers a call past its deadline with a timeout
        ("tool.results", {"tools", "orchestrator"}),
        ("reviews.decided", {"hitl"}),
        ("results.refund", {"delivery"}),
        ("results.support-triage", {"delivery"}),
        # routing ends a refused start with its rejected result
        ("workflow.completed", {"orchestrator", "routing"}),
        ("workflow.progress", {"routing", "orchestrator", "delivery"}),
        ("dlq", set(SERVICE_TOPICS)),
        # every step of a request is audited where it happens (hitl's decisions reach the
        # timeline through the orchestrator, which records them as they resume a run)
        ("audit", {"intake", "routing", "orchestrator", "tools", "delivery"}),
    ],
)
def test_only_the_owners_write_a_topic(topic: str, owners: set[str]) -> None:
    assert writers(TABLE, PREFIX + topic) == owners


def test_each_service_reads_only_its_inputs_in_groups_named_after_it() -> None:
    tools = {a for a in TABLE if a.principal == "User:tools"}
    reads = {(a.resource, a.name, a.pattern) for a in tools if a.operation is Operation.READ}
    assert reads == {
        (ResourceType.TOPIC, "pactmesh.tool.calls", PatternType.LITERAL),
        (ResourceType.TOPIC, "pactmesh.requests.accepted", PatternType.LITERAL),
        (ResourceType.GROUP, "pactmesh.tools.", PatternType.PREFIXED),
    }


def test_only_intake_reads_the_audit_topic() -> None:
    readers = {
        a.principal for a in TABLE if a.operation is Operation.READ and a.name == PREFIX + "audit"
    }
    assert readers == {"User:intake"}


def test_an_upstream_reads_only_the_result_topics_it_is_granted() -> None:
    crm = {a for a in TABLE if a.principal == "User:crm"}
    assert {(a.operation, a.name) for a in crm if a.resource is ResourceType.TOPIC} == {
        (Operation.WRITE, "pactmesh.requests.inbound"),
        (Operation.READ, "pactmesh.results.refund"),
    }
    assert {a.name for a in crm if a.resource is ResourceType.GROUP} == {"pactmesh.crm."}
    assert Upstream.parse("erp") == Upstream("erp", ())
    everything = tuple(sorted(registry().names))
    assert {"procurement", "refund", "supply-chain-reroute", "support-triage"} <= set(everything)
    assert Upstream.parse("bi=*") == Upstream("bi", everything)


@pytest.mark.parametrize("spec", ["=refund", "=*", "crm=not-a-workflow"])
def test_a_malformed_upstream_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="bad upstream"):
        Upstream.parse(spec)


def test_services_can_run_under_other_principal_names() -> None:
    table = acl_table(prefix=PREFIX, principals={"tools": "svc-tools"})
    assert writers(table, "pactmesh.tool.results") == {"svc-tools", "orchestrator"}


def test_the_printed_table_lists_every_entry() -> None:
    text = format_table(TABLE)
    assert text.splitlines()[0].split() == [
        "principal",
        "operation",
        "resource",
        "name",
        "(*",
        "=",
        "prefix)",
    ]
    assert len(text.splitlines()) == len(TABLE) + 1
    assert re.search(r"^User:delivery +WRITE +TOPIC +pactmesh\.results\.\*$", text, re.M)


def test_only_delivery_may_use_transactional_ids_and_only_its_own() -> None:
    """Delivery publishes results in Kafka transactions under ``<prefix>delivery-…``."""
    transactional = {
        (a.principal, a.operation, a.name, a.pattern)
        for a in TABLE
        if a.resource is ResourceType.TRANSACTIONAL_ID
    }
    assert transactional == {
        ("User:delivery", Operation.WRITE, "pactmesh.delivery-", PatternType.PREFIXED)
    }
