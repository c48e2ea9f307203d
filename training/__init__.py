"""training (run from the checkout)."""
