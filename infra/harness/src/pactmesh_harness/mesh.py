"""Real processes against a real broker: start the broker and the six services, wait
for them, and stop exactly what was started (by PID)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pactmesh_contracts.envelope import Envelope, Principal
from pactmesh_kit.auth.records import authorization


def _checkout() -> Path:
    """The checkout the harness runs from. The harness is a dev-only workspace member,
    installed editable, so its source (and this file) sits inside that checkout."""
    here = Path(__file__).resolve()
    return next(p for p in here.parents if (p / "infra" / "kafka" / "kafka.sh").is_file())


REPO = _checkout()
KAFKA_SH = REPO / "infra" / "kafka" / "kafka.sh"
SERVICES = ("intake", "routing", "orchestrator", "tools", "hitl", "delivery")
SANDBOX = "sandbox"
MODEL_SIM = "modelsim"
"""The OpenAI-compatible model simulator (optional; ``running_mesh(model_sim=True)``)."""
_MODULES = {MODEL_SIM: "pactmesh_model_sim"}
_PORT_ENV = {MODEL_SIM: "PACTMESH_MODEL_SIM_PORT"}
_READY = {MODEL_SIM: "/v1/models"}
"""The sandbox backends the tools service calls: started first, not part of the mesh."""

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None], *, timeout: float, interval: float = 0.1, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now.

    Every socket stays bound until all are chosen: a port released before the next bind
    can be handed out again, and two services of one mesh would then clash."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


ADMIN = "admin"
"""The super user of a secured local cluster (kafka.sh's)."""
KAFKA_USERS = (*SERVICES, "upstream")
"""The SCRAM users kafka.sh creates by default besides the admin: one per service and an
upstream system."""
UPSTREAM = "upstream"


LOCAL_NETWORKS = "127.0.0.0/8,::1/128"
"""Where the tests' webhook receivers listen: delivery is allowed to reach them."""

LOCAL_CLUSTER_PORTS = range(19600, 19700)
"""Where tests that start brokers of their own (a secured one, a cluster) listen."""


def free_port_block(count: int, within: range = LOCAL_CLUSTER_PORTS) -> int:
    """The first port of ``within`` that starts ``count`` consecutive free ports."""
    for first in range(within.start, within.stop - count + 1, count):
        sockets = [socket.socket() for _ in range(count)]
        try:
            for offset, sock in enumerate(sockets):
                sock.bind(("127.0.0.1", first + offset))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first
    raise RuntimeError(f"no {count} consecutive free ports in {within}")


@dataclass
class Broker:
    """A Kafka cluster the tests may use, and how to let go of it."""

    bootstrap: str
    how: str
    startup_s: float
    stop: Callable[[], object] = lambda: None
    credentials: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per Kafka user of a secured cluster, the ``KAFKA_*`` client settings it connects
    with (protocol, mechanism, user name and password, CA file); empty for plaintext."""
    halt: Callable[[], object] | None = None
    """Stop the broker, keeping its data, for a fault test (only the local broker)."""
    resume: Callable[[], object] | None = None
    """Start a halted broker again, and wait until it is ready."""
    pids: Callable[[], list[int]] = list
    """The PIDs of its running nodes (a local broker's JVM, for a bench to read its
    CPU); none for a broker this process did not start."""

    @property
    def secured(self) -> bool:
        """Whether clients authenticate (and the cluster checks ACLs)."""
        return bool(self.credentials)

    def client_env(self, user: str = ADMIN) -> dict[str, str]:
        """The ``KAFKA_*`` variables a client connecting as ``user`` needs."""
        if self.secured and user not in self.credentials:
            raise KeyError(f"no Kafka user {user!r} (users: {sorted(self.credentials)})")
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, **self.credentials.get(user, {})}

    def client_options(self, user: str = ADMIN) -> dict[str, Any]:
        """aiokafka's keyword arguments for a client connecting as ``user``
        (``bootstrap_servers`` included), read the way the services read them."""
        from pactmesh_kit.settings import KitSettings

        # Settings read the environment too: an external cluster's KAFKA_* variables.
        return KitSettings.model_validate(self.client_env(user)).kafka_client_options()


def _docker_engine_reachable() -> bool:
    """Whether a Docker engine answers ``/_ping`` (the client binary alone is not enough).

    A raw request rather than the docker SDK, whose failed probes leak sockets."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        family, address = socket.AF_UNIX, host.removeprefix("unix://")
    elif host.startswith("tcp://"):
        name, _, port = host.removeprefix("tcp://").partition(":")
        family, address = socket.AF_INET, (name, int(port or 2375))  # type: ignore[assignment]
    else:
        return False
    try:
        with socket.socket(family) as sock:
            sock.settimeout(2)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(64)
    except OSError:
        return False


def start_broker(
    cache: Path,
    *,
    name: str = "kafka-test",
    port: int | None = None,
    security_protocol: str | None = None,
    data_dir: Path | None = None,
) -> Broker:
    """The external cluster if configured, else testcontainers' Kafka where a Docker
    engine answers, else the project's local KRaft broker (never an in-memory fake).

    The local broker listens on ``port`` and the next one (default
    ``PACTMESH_TEST_KAFKA_PORT`` and ``PACTMESH_TEST_KAFKA_CONTROLLER_PORT``, else 19092
    and 19093). ``security_protocol`` (default ``PACTMESH_TEST_KAFKA_SECURITY_PROTOCOL``,
    else ``PLAINTEXT``) set to ``SASL_PLAINTEXT`` or ``SASL_SSL`` starts it secured
    (kafka.sh: SCRAM users, ACLs, a throwaway CA), its data in ``data_dir`` (default
    ``<cache>/<name>-<protocol>/data``)."""
    if external := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return Broker(external, "external", 0.0)
    protocol = security_protocol or os.environ.get(
        "PACTMESH_TEST_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"
    )
    started = time.monotonic()
    if protocol == "PLAINTEXT" and _docker_engine_reachable():
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer().with_kraft()
        container.start()
        return Broker(
            container.get_bootstrap_server(),
            "testcontainers",
            time.monotonic() - started,
            container.stop,
        )
    if data_dir is None:
        suffix = "" if protocol == "PLAINTEXT" else "-" + protocol.lower().replace("_", "-")
        data_dir = cache / f"{name}{suffix}" / "data"
    if port is None:
        port = int(os.environ.get("PACTMESH_TEST_KAFKA_PORT", "19092"))
        controller = int(os.environ.get("PACTMESH_TEST_KAFKA_CONTROLLER_PORT", str(port + 1)))
    else:
        controller = port + 1
    return _start_local(data_dir, (port, controller), protocol=protocol, started=started)


def kafka_sh_env() -> dict[str, str]:
    """The environment kafka.sh is run with: this process's, less the ``KAFKA_*``
    settings (a shell's own broker's would move a test's), but for the JIT's flags
    (``KAFKA_JIT_OPTS``), which a bench may set to measure them."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("KAFKA_") or k == "KAFKA_JIT_OPTS"
    }


def _start_local(
    data_dir: Path, ports: tuple[int, int], *, started: float, protocol: str
) -> Broker:
    """kafka.sh's single local broker on ``ports`` (client, controller)."""
    env = {
        **kafka_sh_env(),
        "KAFKA_DATA_DIR": str(data_dir),
        "KAFKA_SECURITY_PROTOCOL": protocol,
        "KAFKA_PORT": str(ports[0]),
        "KAFKA_CONTROLLER_PORT": str(ports[1]),
        # A machine shared with other test runs can take minutes to start a JVM broker.
        "KAFKA_START_TIMEOUT": os.environ.get("KAFKA_START_TIMEOUT", "180"),
    }
    subprocess.run([str(KAFKA_SH), "start"], env=env, check=True)
    credentials = {}
    if protocol != "PLAINTEXT":
        credentials = {user: _client_env(env, user) for user in (ADMIN, *KAFKA_USERS)}
    return Broker(
        f"127.0.0.1:{env['KAFKA_PORT']}",
        "local KRaft broker" + ("" if protocol == "PLAINTEXT" else f" ({protocol}, SCRAM, ACLs)"),
        time.monotonic() - started,
        lambda: subprocess.run([str(KAFKA_SH), "stop"], env=env, check=False),
        credentials,
        halt=lambda: subprocess.run([str(KAFKA_SH), "stop"], env=env, check=True),
        # a loaded machine can take a minute to bring a restarted broker's metadata up
        resume=lambda: subprocess.run(
            [str(KAFKA_SH), "start"], env={**env, "KAFKA_START_TIMEOUT": "240"}, check=True
        ),
        pids=partial(_running_pid, _pid_file(env)),
    )


def _pid_file(env: Mapping[str, str]) -> Path:
    """Where kafka.sh keeps the PID of the single node it runs with ``env``."""
    done = subprocess.run(
        [str(KAFKA_SH), "env"], env=env, check=True, capture_output=True, text=True
    )
    return Path(dict(line.split("=", 1) for line in done.stdout.splitlines())["PID_FILE"])


def _running_pid(pid_file: Path) -> list[int]:
    """The PID the file names (none when it is gone or empty)."""
    text = pid_file.read_text().strip() if pid_file.is_file() else ""
    return [int(text)] if text.isdigit() else []


def _client_env(env: Mapping[str, str], user: str) -> dict[str, str]:
    """kafka.sh's client settings of ``user`` (bootstrap servers left out)."""
    done = subprocess.run(
        [str(KAFKA_SH), "client-env", user], env=env, check=True, capture_output=True, text=True
    )
    pairs = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    pairs.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return pairs


def kind_of(instance: str) -> str:
    """The service an instance runs: ``orchestrator-2`` runs ``orchestrator``."""
    return instance.split("-", 1)[0]


@dataclass
class Mesh:
    """The six services (and the sandbox), running as real processes on one topic prefix.

    An instance is named after its service, with ``-2``… for additional instances that
    share their service's consumer groups.
    """

    broker: Broker
    prefix: str
    data_dir: Path
    ports: dict[str, int]
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    startup_s: float = 0.0
    log_dir: Path | None = None
    """Where the processes' logs go; ``<data dir>/logs`` when unset."""

    @property
    def logs(self) -> Path:
        """The directory of the processes' logs."""
        return self.log_dir or self.data_dir / "logs"

    @property
    def bootstrap(self) -> str:
        """The cluster's bootstrap servers."""
        return self.broker.bootstrap

    def kafka_options(self, user: str = ADMIN) -> dict[str, Any]:
        """aiokafka's keyword arguments to reach the mesh's cluster as ``user`` (the
        super user by default, which a secured cluster lets do anything)."""
        return self.broker.client_options(user)

    @property
    def sandbox_url(self) -> str:
        """Base URL of the sandbox enterprise app (ledger, faults)."""
        return self.url(SANDBOX)

    def bearer(
        self,
        *,
        tenant: str = "default",
        roles: tuple[str, ...] = ("requester",),
        scopes: tuple[str, ...] = (),
        subject: str | None = None,
        ttl_s: int = 3600,
    ) -> dict[str, str]:
        """An ``Authorization`` header the mesh accepts: a token from the development
        issuer whose key lives in this mesh's data directory."""
        from pactmesh_kit.auth.testing import bearer
        from pactmesh_kit.settings import KitSettings

        settings = KitSettings(data_dir=self.data_dir)
        return bearer(
            settings, tenant=tenant, roles=roles, scopes=scopes, subject=subject, ttl_s=ttl_s
        )

    def token(self, *, tenant: str, principal: Principal, ttl_s: int = 3600) -> str:
        """A token of this mesh's development issuer proving ``principal`` in ``tenant``."""
        from pactmesh_kit.auth.devissuer import DevIssuer
        from pactmesh_kit.settings import KitSettings

        return DevIssuer.for_settings(KitSettings(data_dir=self.data_dir)).mint(
            subject=principal.subject,
            tenant=tenant,
            roles=principal.roles,
            scopes=principal.scopes,
            ttl_s=ttl_s,
        )

    def inbound_headers(self, event: Envelope[Any]) -> list[tuple[str, bytes]]:
        """The headers an upstream sends ``event`` on the inbound topic with: a bearer
        token proving the envelope's own tenant and principal."""
        token = self.token(tenant=event.tenant, principal=event.principal)
        return [("content-type", b"application/json"), authorization(token)]

    def url(self, service: str) -> str:
        """Base URL of ``service``'s HTTP API."""
        return f"http://127.0.0.1:{self.ports[service]}"

    def env(self, instance: str) -> dict[str, str]:
        """The environment ``instance`` runs with."""
        kind = kind_of(instance)
        # Each service authenticates as itself on a secured cluster (its own ACLs).
        kafka = self.broker.client_env(kind) if kind in SERVICES else {}
        return {
            **os.environ,
            **kafka,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "PACTMESH_TOPIC_PREFIX": self.prefix,
            "PACTMESH_DATA_DIR": str(self.data_dir),
            _PORT_ENV.get(kind, f"PACTMESH_{kind.upper()}_PORT"): str(self.ports[instance]),
            "PACTMESH_INTAKE_PUBLIC_URL": self._url_if_running("intake"),
            "PACTMESH_HITL_INTAKE_URL": self._url_if_running("intake"),
            "PACTMESH_TOOLS_SANDBOX_URL": self._url_if_running(SANDBOX),
            # The tests' webhook receivers listen on 127.0.0.1, which delivery refuses
            # unless it is allowed (tests that check the refusal override this).
            "PACTMESH_DELIVERY_WEBHOOK_ALLOWED_NETWORKS": LOCAL_NETWORKS,
            "OTEL_SERVICE_NAME": kind,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "PYTHONUNBUFFERED": "1",
            **{
                k: v.replace("{model_sim_url}", self._model_sim_url)
                for k, v in self.extra_env.items()
            },
        }

    @property
    def _model_sim_url(self) -> str:
        return self._url_if_running(MODEL_SIM)

    def _url_if_running(self, service: str) -> str:
        """``service``'s URL, or nothing when this mesh does not run it."""
        return self.url(service) if service in self.ports else ""

    def start(self, service: str) -> None:
        """Start the instance ``service``, logging to ``<logs>/<service>.log``."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{service}.log").open("ab") as log:
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", _MODULES.get(service, f"pactmesh_{kind_of(service)}")],
                env=self.env(service),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def ready(self, service: str) -> bool:
        """Whether ``service`` answers its readiness probe."""
        process = self.processes[service]
        if process.poll() is not None:
            raise RuntimeError(f"{service} exited with {process.returncode}:\n{self.log(service)}")
        try:
            path = _READY.get(service, "/health/ready")
            return httpx.get(f"{self.url(service)}{path}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, service: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Signal ``service`` (by PID) and wait for it; SIGKILL if it will not go."""
        process = self.processes.pop(service, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log(self, service: str) -> str:
        """What ``service`` has logged so far."""
        path = self.logs / f"{service}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def spans(self) -> list[dict[str, Any]]:
        """Every span the services have exported to their local trace files so far."""
        found = []
        for path in (self.data_dir / "traces").glob("*.jsonl"):
            for line in path.read_text().splitlines():
                if line.strip():
                    found.append(json.loads(line))
        return found


def instance_names(services: Sequence[str], counts: Mapping[str, int]) -> list[str]:
    """Every instance to start: each of ``services`` once, then ``<service>-2``… up to
    its count in ``counts``."""
    extra = [f"{s}-{n}" for s in services for n in range(2, counts.get(s, 1) + 1)]
    return [*services, *extra]


def create_topics(broker: Broker, prefix: str) -> None:
    """Every topic under ``prefix``, and on a secured cluster the ACL table for it (the
    six services as themselves, the upstream user granted every result topic)."""
    import asyncio

    from pactmesh_kit.acls import Upstream, acl_table, apply_acls
    from pactmesh_kit.bootstrap import admin_client, ensure_topics
    from pactmesh_kit.settings import TopicSettings

    settings = TopicSettings.model_validate(broker.client_env() | {"PACTMESH_TOPIC_PREFIX": prefix})

    async def create() -> None:
        async with admin_client(settings) as admin:
            await ensure_topics(admin, settings)
            if broker.secured:
                upstream = Upstream.parse(f"{UPSTREAM}=*")
                table = acl_table(prefix=prefix, upstreams=[upstream])
                await apply_acls(admin, table, prefix=prefix)

    asyncio.run(create())


@contextmanager
def running_mesh(
    broker: Broker,
    data_dir: Path,
    *,
    env: dict[str, str] | None = None,
    orchestrators: int = 1,
    instances: Mapping[str, int] | None = None,
    services: Sequence[str] = SERVICES,
    model_sim: bool = False,
    log_dir: Path | None = None,
    ready_timeout_s: float = 60,
) -> Iterator[Mesh]:
    """Create a fresh topic prefix, start the sandbox (when the tools service runs) and
    ``services`` (all six by default), ``instances[service]`` instances of each (one by
    default; ``orchestrators`` for the orchestrator), and stop them afterwards. Several
    instances of a service share its state only on Postgres (``PACTMESH_POSTGRES_URL``
    in ``env``): on SQLite a second instance refuses to start. ``env`` is added to every
    process's environment, with ``{model_sim_url}`` replaced by the simulator's URL when
    ``model_sim`` starts one. Each process has ``ready_timeout_s`` to become ready."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    create_topics(broker, prefix)
    counts = {"orchestrator": orchestrators, **(instances or {})}
    names = instance_names(services, counts)
    helpers = [
        *([SANDBOX] if "tools" in services else []),
        *([MODEL_SIM] if model_sim else []),
    ]
    everything = (*helpers, *names)
    ports = dict(zip(everything, free_ports(len(everything)), strict=True))
    mesh = Mesh(broker, prefix, data_dir, ports, extra_env=dict(env or {}), log_dir=log_dir)
    started = time.monotonic()
    try:
        for helper in helpers:
            mesh.start(helper)
        for helper in helpers:
            wait_for(partial(mesh.ready, helper), timeout=60, what=f"{helper} ready")
        for service in names:
            mesh.start(service)
        for service in names:
            wait_for(partial(mesh.ready, service), timeout=ready_timeout_s, what=f"{service} ready")
        mesh.startup_s = time.monotonic() - started
        yield mesh
    finally:
        for service in list(mesh.processes):
            mesh.stop(service)


async def read_from_start(
    mesh: Mesh,
    topics: list[str],
    *,
    on_record: Callable[[Any], None],
    done: Callable[[], bool],
    deadline_s: float,
    linger_s: float = 0.0,
) -> None:
    """Read ``topics`` (qualified names) from their start, in a consumer group of its
    own, handing every record to ``on_record`` until ``done()`` holds and then for
    ``linger_s`` more (so that a late duplicate would still be seen), or until
    ``deadline_s`` passes; the caller asserts on what it collected."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *topics,
        **mesh.kafka_options(),
        group_id=f"check-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",  # as every reader of the mesh's topics must
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + deadline_s
        linger_until: float | None = None
        while time.monotonic() < (linger_until or deadline):
            for records in (await consumer.getmany(timeout_ms=250)).values():
                for record in records:
                    on_record(record)
            if linger_until is None and done():
                linger_until = time.monotonic() + linger_s
                if linger_s <= 0:
                    return
    finally:
        await consumer.stop()
