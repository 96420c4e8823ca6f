"""What every request cost: usage events, their batched writer, and Prometheus metrics."""
