"""HTTP routers: parse, call one service function, map the result (docs/PROTOCOL.md §8)."""
