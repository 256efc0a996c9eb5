"""Identity and access for the mesh's edges.

- :mod:`.tokens`: verify OAuth2 bearer JWTs (algorithms pinned; issuer, audience and
  expiry checked) against a JWKS URL in production or the local development issuer.
- :mod:`.devissuer`: the development issuer (``pactmesh token``), keys generated
  locally on first use and never committed.
- :mod:`.policy`: the one access policy (``access.toml``): which workflows a principal
  may start, which tools a workflow may use on its behalf, which review actions a
  reviewer may take.
- :mod:`.http`: FastAPI dependencies that enforce both on every request.
"""

from pactmesh_kit.auth.policy import AccessPolicy, load_access_policy
from pactmesh_kit.auth.tokens import AuthError, Identity, TokenVerifier

__all__ = ["AccessPolicy", "AuthError", "Identity", "TokenVerifier", "load_access_policy"]
