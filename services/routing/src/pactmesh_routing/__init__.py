"""pactmesh routing: decides which workflow handles each accepted request."""
