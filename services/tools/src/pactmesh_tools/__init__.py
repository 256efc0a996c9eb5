"""pactmesh tools: runs the tool calls workflows request over Kafka."""
