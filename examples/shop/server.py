"""``python3 server.py``: the same as ``python3 -m app``."""

from app.__main__ import main

if __name__ == "__main__":
    main()
