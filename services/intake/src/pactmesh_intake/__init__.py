"""pactmesh intake: the front door for HTTP clients and upstream systems."""
