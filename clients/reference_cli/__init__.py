"""The `sealbox` reference command-line client."""
