"""Reasoning helpers shared by the services: offline sentence embeddings and a semantic
cache for answers to questions that have been answered before."""
