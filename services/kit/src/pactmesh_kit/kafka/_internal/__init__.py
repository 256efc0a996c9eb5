"""The Kafka layer's private parts: batching, tracing, decoding and documentation."""
