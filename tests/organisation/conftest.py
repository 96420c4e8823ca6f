"""The browser fixtures of tests/e2e, for the organisation's pages."""

from tests.e2e.conftest import browser, console, page, playwright

__all__ = ["browser", "console", "page", "playwright"]
