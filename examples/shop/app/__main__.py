"""``python3 -m app``: serve the shop (SHOP_DATABASE_URL, SHOP_HOST, SHOP_PORT)."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from app.config import Config
from app.server import serve


def _stop(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    try:
        serve(Config.from_env())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
