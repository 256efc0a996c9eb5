"""Routing's outbound I/O: the chat models that answer routing requests."""
