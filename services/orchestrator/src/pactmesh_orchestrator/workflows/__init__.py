"""One module per workflow; each exports ``WORKFLOW``."""
