"""Sans-I/O protocol rules shared by the server and the clients (docs/ARCHITECTURE.md)."""
