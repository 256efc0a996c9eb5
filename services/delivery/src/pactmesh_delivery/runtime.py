"""What the delivery service's handlers, routes and dispatcher share for the life of the app."""

from __future__ import annotations

from dataclasses import dataclass, field

from pactmesh_kit.errors import NotReady
from pactmesh_kit.kafka import EventPublisher
from pactmesh_kit.provenance import Provenance

from pactmesh_delivery.adapters.dispatcher import Dispatcher
from pactmesh_delivery.adapters.egress import EgressGuard
from pactmesh_delivery.domain.results import ResultOutlet
from pactmesh_delivery.domain.webhooks import WebhookOutbox
from pactmesh_delivery.settings import Settings


@dataclass
class Runtime:
    """Filled in by the app's lifespan."""

    settings: Settings
    publisher: EventPublisher
    egress: EgressGuard = field(default_factory=EgressGuard)
    """Where webhooks may send (public addresses unless the settings allow networks):
    checked at registration and before every POST."""
    results: ResultOutlet | None = None
    """Publishes each result once (``adapters.transactions`` on Kafka)."""
    webhooks: WebhookOutbox | None = None
    dispatcher: Dispatcher | None = None
    provenance: Provenance = field(default_factory=Provenance)
    """The requests the mesh accepted: a result goes only to its request's tenant."""

    def require_results(self) -> ResultOutlet:
        """The result outlet; ``NotReady`` outside the app's lifespan."""
        if self.results is None:
            raise NotReady("the result outlet is not open")
        return self.results

    def require_webhooks(self) -> WebhookOutbox:
        """The webhook store and outbox; ``NotReady`` outside the app's lifespan."""
        if self.webhooks is None:
            raise NotReady("the webhook store is not open")
        return self.webhooks

    def wake_dispatcher(self) -> None:
        """Tell the dispatcher new deliveries are queued (a no-op when none runs)."""
        if self.dispatcher is not None:
            self.dispatcher.wake()
