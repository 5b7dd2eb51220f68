"""Test-only helpers (never shipped in the package): skips that name what is missing, test data."""
