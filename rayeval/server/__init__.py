"""`rayeval server`: teams on one cluster through an authenticated HTTP API on Ray Serve.

Isolation between teams cannot be enforced inside Ray: whoever can submit Ray jobs runs code on the
cluster. So teams go through a front door: a Serve application (FastAPI) that holds the only Ray access,
accepts API tokens mapped to tags, acts with those tags, and writes every state change to an audit log.

- `tokens`: API tokens (`rve_<id>_<secret>`), stored as hashes, mapped to tags; the `Caller` they stand for;
- `audit`: the audit log of state-changing calls;
- `store`: the server location (a folder or URI) holding both;
- `config`: the server's settings (the Serve application builder's arguments);
- `policy`: what a team token may submit (its tags, its files, no `${env:...}`, no code on the cluster);
- `jobs`: runs as Ray jobs through the Jobs API (submit, copy, and the restart job's entry point);
- `tasks`: the operations, with the caller's tags, audited;
- `schemas`: the API's JSON records; `app`: the FastAPI app on Serve and its builder `build_app`;
- `deploy`: start and stop it on a cluster (`rayeval server start|stop`).
"""

from rayeval.server.audit import AuditLog, AuditRecord
from rayeval.server.config import APP_NAME, ROUTE_PREFIX, ServerConfig
from rayeval.server.store import ServerStore
from rayeval.server.tokens import ApiToken, Caller, IssuedToken, TokenStore

__all__ = [
    "APP_NAME",
    "ROUTE_PREFIX",
    "ApiToken",
    "AuditLog",
    "AuditRecord",
    "Caller",
    "IssuedToken",
    "ServerConfig",
    "ServerStore",
    "TokenStore",
]
