"""pactmesh hitl: human review of the actions workflows pause on."""
