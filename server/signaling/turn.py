"""TURN for pupils behind firewalls: short-lived credentials in the TURN REST API form that coturn
checks (``use-auth-secret``/``static-auth-secret``): the username is ``<expiry>:<participant>``, the
password base64(HMAC-SHA1(secret, username)); no per-user accounts, nothing to revoke by hand."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from pydantic import BaseModel


class IceServer(BaseModel):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


def turn_credentials(secret: str, participant_id: str, ttl_s: int, now: float | None = None) -> tuple[str, str]:
    username = f"{int((now or time.time()) + ttl_s)}:{participant_id}"
    password = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
    return username, password


def ice_servers(urls: list[str], secret: str | None, participant_id: str, ttl_s: int) -> list[IceServer]:
    """What ``joined`` hands a participant: the TURN servers (UDP, TCP, TLS on 443) with their own
    credentials; none when the server has no TURN (a direct path only)."""
    if not urls or not secret:
        return []
    username, password = turn_credentials(secret, participant_id, ttl_s)
    return [IceServer(urls=urls, username=username, credential=password)]
