"""The simulator's tests run against a real server (``pactmesh_model_sim.testing``)."""

from pactmesh_model_sim.testing import sim, sim_url

__all__ = ["sim", "sim_url"]
