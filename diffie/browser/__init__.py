"""The browser: drive flows in Chromium, stabilise the page, capture what happened.

The only package importing Playwright. Entry point: :class:`BrowserRunner`.
"""

from diffie.browser.runner import BrowserRunner

__all__ = ["BrowserRunner"]
