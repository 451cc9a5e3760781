"""Configuration from the environment (read when the server starts, never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = ROOT / "static"
DB_DIR = ROOT / "db"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/shop"


@dataclass(frozen=True)
class Config:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "0.0.0.0"
    port: int = 8000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        port_text = env.get("SHOP_PORT", "8000")
        try:
            port = int(port_text)
        except ValueError:
            raise SystemExit(f"SHOP_PORT must be a number, got {port_text!r}") from None
        return cls(
            database_url=env.get("SHOP_DATABASE_URL", DEFAULT_DATABASE_URL),
            host=env.get("SHOP_HOST", "0.0.0.0"),
            port=port,
        )
