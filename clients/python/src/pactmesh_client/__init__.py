"""pactmesh client: for the parties at the mesh's edges.

- :class:`RequestPublisher`: upstream systems publish typed requests on the inbound topic.
- :class:`ResultSubscriber`: downstream systems read typed results from result topics.
- :class:`ReviewerClient`: reviewers list, claim and decide reviews from a script.
- :func:`verify_webhook`: webhook receivers check a delivery's signature.
- :class:`KafkaSecurity`: TLS and SASL for a secured cluster (the standard ``KAFKA_*``
  variables by default).

It depends on the contracts, aiokafka and httpx only (not on the services' runtime kit).
"""

from pactmesh_contracts.envelope import Envelope, Principal
from pactmesh_contracts.events import Outcome, WorkflowResult
from pactmesh_contracts.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    SignatureError,
)
from pactmesh_contracts.webhooks import verify as verify_webhook

from pactmesh_client.errors import (
    ApiError,
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    PactmeshClientError,
    Unauthorized,
    ValidationFailed,
)
from pactmesh_client.publisher import RequestPublisher
from pactmesh_client.reviewer import HistoryEntry, Review, ReviewerClient, ReviewPage
from pactmesh_client.security import KafkaSecurity
from pactmesh_client.subscriber import ResultSubscriber, UndecodableResult

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "ApiError",
    "Conflict",
    "Envelope",
    "FieldError",
    "Forbidden",
    "HistoryEntry",
    "KafkaSecurity",
    "NotFound",
    "Outcome",
    "PactmeshClientError",
    "Principal",
    "RequestPublisher",
    "ResultSubscriber",
    "Review",
    "ReviewPage",
    "ReviewerClient",
    "SignatureError",
    "Unauthorized",
    "UndecodableResult",
    "ValidationFailed",
    "WorkflowResult",
    "verify_webhook",
]
