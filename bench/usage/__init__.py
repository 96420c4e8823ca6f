"""`make bench-usage`: the usage books on PostgreSQL at scale (bench/usage/run.py)."""
