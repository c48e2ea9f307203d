"""bench (run from the checkout)."""
