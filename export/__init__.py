"""export (run from the checkout)."""
