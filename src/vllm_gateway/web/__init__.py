"""HTTP routes other than the /v1 hot path: pages, admin API, operations."""
