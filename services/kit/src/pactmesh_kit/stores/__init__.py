"""The stateful services' stores: what their SQLite and Postgres implementations share.

Install with the ``stores`` extra (``pactmesh-kit[stores]``). One setting,
``PACTMESH_POSTGRES_URL``, moves every store to PostgreSQL, where several instances of a
service share it; without it each service keeps a SQLite file in the data dir and holds
that dir's lock for its service (one instance per data dir).

* ``settings``: :class:`StoreSettings`, the fields every stateful service adds;
* ``migrations``: each service's Alembic migrations, run at start-up, one instance at a
  time, on SQLite as on Postgres (no ``CREATE TABLE`` anywhere else);
* ``lock``: the data dir's per-service lock that refuses a second SQLite instance;
* ``postgres``: the psycopg connection pool the Postgres stores run on;
* ``outbox``: the transactional outbox and its relay, for writes that must be published;
* ``retention``: the periodic task that prunes rows past their time to live.
"""

from pactmesh_kit.stores.lock import InstanceLocked, instance_lock
from pactmesh_kit.stores.migrations import Migrations
from pactmesh_kit.stores.settings import StoreSettings

__all__ = ["InstanceLocked", "Migrations", "StoreSettings", "instance_lock"]
