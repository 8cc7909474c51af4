"""Signed join tokens (JWT, HS256) carrying room, role and name."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

import jwt


class Role(StrEnum):
    TEACHER = "teacher"
    STUDENT = "student"
    INSPECTOR = "inspector"
    ADMIN = "admin"


# What each role may do; checked on every action.
PUBLISHERS = frozenset({Role.TEACHER})
# Teachers subscribe too: they see and hear the student they invite on stage.
SUBSCRIBERS = frozenset({Role.TEACHER, Role.STUDENT, Role.INSPECTOR, Role.ADMIN})
SEES_PRESENCE = frozenset({Role.TEACHER, Role.ADMIN})


class TokenError(Exception):
    """The token is not one we issued, or is malformed."""


class TokenExpired(TokenError):
    """The token was ours but its time is up."""


@dataclass(frozen=True, slots=True)
class Grant:
    room: str
    role: Role
    name: str
    participant_id: str
    expires_at: int


_DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """'90' -> 90, '15m' -> 900, '2h' -> 7200, '1d' -> 86400."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ValueError(f"Expected a duration like 90s, 15m, 2h or 1d, but got {text!r}")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def issue_token(secret: str, *, room: str, role: Role, name: str, ttl_s: int, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims = {
        "room": room,
        "role": role.value,
        "name": name,
        "sub": secrets.token_hex(8),
        "iat": issued,
        "exp": issued + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str) -> Grant:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "room", "role", "sub"]})
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired("The token has expired; ask for a new one") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"The token is not valid: {exc}") from exc
    try:
        role = Role(claims["role"])
    except ValueError as exc:
        raise TokenError(f"The token's role {claims['role']!r} is unknown") from exc
    return Grant(
        room=str(claims["room"]),
        role=role,
        name=str(claims.get("name") or role.value),
        participant_id=str(claims["sub"]),
        expires_at=int(claims["exp"]),
    )
