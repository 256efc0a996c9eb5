"""An OpenAI-compatible model simulator for tests and benchmarks."""
