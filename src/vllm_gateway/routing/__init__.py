"""Backends: the pool, their health and the choice of one for a request."""
