"""pactmesh's runtime kit: what every service needs and nothing service-specific.

``settings`` (the shared settings), ``app`` (the app builder every service is made with),
``kafka`` (the broker, the one subscriber, the publisher, dead letters and the failure
policy), ``telemetry``, ``auth`` (tokens, the access policy, FastAPI dependencies) and
``errors`` (the root exception and the HTTP status of each kind of error).
"""
