"""Passwords (PBKDF2-SHA256, stdlib) and sessions (a random token in the ``shop_session`` cookie)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from http.cookies import CookieError, SimpleCookie

from app.db import Database, Row

SESSION_COOKIE = "shop_session"
ITERATIONS = 100_000


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt_hex, hash_hex = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt_hex),
                                     int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), hash_hex)


def read_cookie(header: str | None, name: str = SESSION_COOKIE) -> str | None:
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None


def session_cookie(token: str) -> str:
    return f"{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax"


def expired_session_cookie() -> str:
    return f"{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"


def authenticate(db: Database, email: str, password: str) -> Row | None:
    user = db.one("SELECT id, name, email, password_hash FROM users WHERE lower(email) = lower(%s)",
                  (email.strip(),))
    if user is None or not verify_password(password, user["password_hash"]):
        return None
    return user


def start_session(db: Database, user_id: int) -> str:
    token = secrets.token_urlsafe(24)
    db.run("INSERT INTO sessions (token, user_id) VALUES (%s, %s)", (token, user_id))
    return token


def end_session(db: Database, token: str) -> None:
    db.run("DELETE FROM sessions WHERE token = %s", (token,))


def current_user(db: Database, token: str | None) -> Row | None:
    if not token:
        return None
    return db.one(
        "SELECT u.id, u.name, u.email FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.token = %s", (token,))
