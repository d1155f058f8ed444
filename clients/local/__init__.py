"""The local side that the reference CLI and Sealbox Desk share, over `sync.client`.

What a profile keeps on disk (`store`, encrypted at rest), the profile itself (`profile`),
the HTTP transport (`transport`) and the roster-freshness settings (`freshness`).  The
protocol rules are `sync.client`'s; the two clients add only their own edge (commands,
pages).
"""
