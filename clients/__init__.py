"""Sealbox clients."""
