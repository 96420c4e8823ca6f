"""Limits on what a subject (a key; later its team) may use, checked and reserved atomically."""
