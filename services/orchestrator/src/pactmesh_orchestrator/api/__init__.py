"""The orchestrator's HTTP API: workflow runs and the semantic cache."""
