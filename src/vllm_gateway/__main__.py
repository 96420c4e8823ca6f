"""`python -m vllm_gateway` runs the command line."""

from vllm_gateway.cli import main

main()
