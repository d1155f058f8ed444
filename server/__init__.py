"""The Sealbox sync server: FastAPI routes over a ciphertext-only store."""
