"""The reasoning layer routing and the orchestrator share (no other service installs it).

* ``embeddings``: offline sentence embeddings (all-MiniLM-L6-v2 on numpy);
* ``semantic_cache``: answers to questions that have been answered before;
* ``models``: per-role model chains from configuration, with latency budgets, fallbacks
  and ``Retry-After`` handling;
* ``structured``: schema-first outputs, strictly parsed, validated and repaired once;
* ``offline``: the offline model, a deterministic stand-in (not an LLM) used when no
  provider is configured;
* ``classifier``: nearest-example classification on the embeddings.
"""
