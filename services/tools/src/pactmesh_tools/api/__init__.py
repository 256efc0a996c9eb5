"""The tools service's HTTP API: the tool registry and its backends."""
