"""pactmesh's runtime kit: what every service needs and nothing service-specific."""
