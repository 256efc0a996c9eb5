"""pactmesh workflows: each subpackage is one workflow.

A workflow's ``__init__.py`` exports ``WORKFLOW``, its definition (contracts, tools,
routing description, examples, keywords and fields, gates), and imports only pydantic
and the contracts; its ``graph.py`` builds the LangGraph graph (``build_graph``), loaded
only by the orchestrator. ``pactmesh_workflows.registry`` discovers the definitions;
everything else (routing's schema and prompt, result topics, which tools a workflow may
use, which contract a reviewer's edit must satisfy) is derived from it.
"""
