"""pactmesh orchestrator: every workflow as a checkpointed LangGraph graph."""
