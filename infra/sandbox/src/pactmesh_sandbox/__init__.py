"""pactmesh sandbox: the enterprise backends the tools service calls over HTTP.

A knowledge base, a CRM, a procurement policy, an ERP, three carriers, a payment
provider and a health plan (payer: coverage policies, prior authorizations), each a
"backend" whose faults (latency, 5xx, hangs, dropped connections) can be
switched on at run time. Side effects honour an ``Idempotency-Key`` and land in a ledger
kept in SQLite, which tests read to prove that nothing happened twice.
"""
