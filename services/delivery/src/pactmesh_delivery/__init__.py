"""pactmesh delivery: hands finished workflows' results to downstream consumers."""
