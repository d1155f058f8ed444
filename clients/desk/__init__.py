"""Sealbox Desk: the coordinators' local web console (`sealbox desk`).

Pages and a loopback HTTP edge over `clients/local/` and `sync/client/`; no protocol
rules of its own. `edge` holds the security checks, `reading` every read of the
merged state, `actions` every write, `app` the routes.
"""
