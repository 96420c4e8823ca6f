"""The gateway benchmark: a fixed-cost nginx upstream, wrk, and the gateway between them."""
