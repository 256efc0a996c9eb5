"""What pactmesh's tests and benchmarks share (a dev-only workspace member).

- ``pactmesh_harness.mesh``: a real Kafka broker, the six services and the sandbox as
  real processes, waits by polling, reading topics from the start.
- ``pactmesh_harness.workflow_client``: what a workflow test does to the mesh from outside.
- ``pactmesh_harness.postgres``: a private PostgreSQL server and fresh databases on it.
- ``pactmesh_harness.faults``: the fault suite's faults (a dependency down for a while,
  a full disk on a tmpfs, topics taking large messages), each undone on exit.
- ``pactmesh_harness.pytest_plugin``: the fixtures over them, loaded by pytest in every
  package's tests (an entry point): ``postgres_server`` and ``postgres_url``.
"""
