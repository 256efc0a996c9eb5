"""The hitl service's HTTP surface: the reviewer API and the reviewer page."""
