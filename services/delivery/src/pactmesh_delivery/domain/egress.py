"""Where webhooks may send results, and how their URLs are shown.

A webhook URL is supplied by a tenant and POSTed to by the mesh: left unchecked it is a
server-side request forgery probe into the mesh's own network (loopback, the cloud
metadata service at 169.254.169.254, private ranges). So a URL must be ``http(s)``,
carry no credentials, and its host must be, or resolve only to, globally routable
addresses, unless an operator allowed a network (``allowed`` below: the test suite and
on-premises receivers). The address checks are the standard library's ``ipaddress``
properties; the dispatcher resolves again at send time and connects to the address it
checked (``adapters.egress``).

Pure logic only: resolving names is the adapters' business.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = frozenset({"http", "https"})
_CATEGORIES = (
    "loopback",
    "link_local",
    "multicast",
    "unspecified",
    "site_local",
    "reserved",
    "private",
)
"""``ipaddress`` properties that make an address unfit as a webhook's destination, the
most specific first (``is_private`` also holds for link-local and unspecified
addresses; ``is_site_local`` is IPv6 only)."""
REDACTED = "redacted"
"""What a query string's value is shown as."""


def address_refusal(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not receive a webhook (``"loopback"``, ``"link_local"``, ...),
    or ``None`` when it may: a globally routable address, or one in an ``allowed``
    network.

    An IPv6 address that carries an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, 6to4,
    Teredo) is judged by the IPv4 address it reaches.
    """
    if any(address in network for network in allowed):
        return None
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return address_refusal(embedded, allowed)
    for category in _CATEGORIES:
        if getattr(address, f"is_{category}", False):
            return category
    return None if address.is_global else "not_global"


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    return address.teredo[1] if address.teredo is not None else None


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells (``127.0.0.1``, ``[::1]``), or ``None`` for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def url_refusal(url: str) -> str | None:
    """Why ``url`` can never be a webhook, whatever its host resolves to: not ``http``
    or ``https``, no host, or credentials in it (they would reach every log line and
    dead letter that shows the URL); ``None`` when it may be."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        return "only http and https URLs are accepted"
    if parts.username is not None or parts.password is not None:
        return "a URL may not carry credentials (user:password@); deliveries are signed"
    if not parts.hostname:
        return "the URL has no host"
    return None


def redact_url(url: str) -> str:
    """``url`` as it may be shown (API, logs, dead letters, spans): without user
    information, query values replaced by ``redacted`` (keys kept), no fragment.

    The path is kept: it is what tells two webhooks of one receiver apart.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal, bracketed again
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a number: shown without it
        port = None
    netloc = host if port is None else f"{host}:{port}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(f"{key}={REDACTED}" for key, _ in pairs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
