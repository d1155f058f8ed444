"""Services: each owns its transaction; routes call exactly one of them."""
