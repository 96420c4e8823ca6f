"""STUB: its owner replaces this file."""

from fastapi import APIRouter, FastAPI

router = APIRouter()


def mount_static(app: FastAPI) -> None:
    """Serve static/ at /static."""
