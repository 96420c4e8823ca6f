"""Start the gateway (the historical entry point): `python gateway.py [serve options]`."""

import sys

from vllm_gateway.cli import cli

if __name__ == "__main__":
    cli(["serve", *sys.argv[1:]])
