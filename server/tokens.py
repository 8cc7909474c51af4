"""Signed tokens (JWT, HS256) carrying room, role, name and, for admins, a scope (the city or one
school); each has a bounded lifetime and an id that can be revoked."""

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
    REVIEWER = "reviewer"  # a teaching researcher (教研员): reviews lessons before pupils see them


CITY = "city"  # an admin's scope: the whole city, or one school (its name, as in the timetable)
MIN_SECRET_BYTES = 32


# What each role may do; checked on every action.
PUBLISHERS = frozenset({Role.TEACHER})
# Teachers subscribe too: they see and hear the student they invite on stage.
SUBSCRIBERS = frozenset({Role.TEACHER, Role.STUDENT, Role.INSPECTOR, Role.ADMIN})
SEES_PRESENCE = frozenset({Role.TEACHER, Role.ADMIN})
MEMBERS = frozenset({Role.TEACHER, Role.STUDENT, Role.INSPECTOR, Role.ADMIN})  # who joins rooms
UNSEEN = frozenset({Role.INSPECTOR})  # in the room, but nothing they do is shown to the class


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
    token_id: str = ""
    issued_at: int = 0
    scope: str | None = None  # admins: CITY or a school's name

    @property
    def lifetime_s(self) -> int:
        return self.expires_at - self.issued_at

    def rank(self) -> int:
        """Who may mint whom: only tokens of a lower rank (a city admin over a school's)."""
        if self.role is Role.ADMIN:
            return 4 if self.scope == CITY else 3
        return 1 if self.role is Role.STUDENT else 2

    def covers_school(self, school: str) -> bool:
        """An admin of the city, or of ``school``."""
        return self.role is Role.ADMIN and self.scope in (CITY, school)


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """The longest a token may live: pupils', teachers', inspectors' and reviewers' join tokens,
    and admins' (shorter: they can do more)."""

    join_s: int = 12 * 3600
    admin_s: int = 2 * 3600

    def limit(self, role: Role) -> int:
        return self.admin_s if role is Role.ADMIN else self.join_s


def check_secret(secret: str) -> str:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"The signing secret has {len(secret.encode())} bytes; expected at least {MIN_SECRET_BYTES}")
    return secret


_DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """'90' -> 90, '15m' -> 900, '2h' -> 7200, '1d' -> 86400."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ValueError(f"Expected a duration like 90s, 15m, 2h or 1d, but got {text!r}")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def issue_token(
    secret: str,
    *,
    room: str,
    role: Role,
    name: str,
    ttl_s: int,
    scope: str | None = None,
    lifetimes: Lifetimes = Lifetimes(),
    now: float | None = None,
) -> str:
    """A signed token; refused (``ValueError``) beyond the role's longest lifetime."""
    if ttl_s > lifetimes.limit(role):
        raise ValueError(f"A {role.value} token may live at most {_hours(lifetimes.limit(role))}, not {_hours(ttl_s)}")
    if (role is Role.ADMIN) != (scope is not None):
        raise ValueError("An admin token needs a scope (the city or a school), and only an admin token has one")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "room": room,
        "role": role.value,
        "name": name,
        "sub": secrets.token_hex(8),
        "jti": secrets.token_hex(8),
        "iat": issued,
        "exp": issued + ttl_s,
    }
    if scope is not None:
        claims["scope"] = scope
    return jwt.encode(claims, check_secret(secret), algorithm="HS256")


def verify_token(secret: str, token: str, lifetimes: Lifetimes = Lifetimes()) -> Grant:
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["exp", "iat", "room", "role", "sub"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired("The token has expired; ask for a new one") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"The token is not valid: {exc}") from exc
    try:
        role = Role(claims["role"])
    except ValueError as exc:
        raise TokenError(f"The token's role {claims['role']!r} is unknown") from exc
    grant = Grant(
        room=str(claims["room"]),
        role=role,
        name=str(claims.get("name") or role.value),
        participant_id=str(claims["sub"]),
        expires_at=int(claims["exp"]),
        token_id=str(claims.get("jti") or claims["sub"]),
        issued_at=int(claims["iat"]),
        scope=str(claims["scope"]) if role is Role.ADMIN and claims.get("scope") else None,
    )
    if grant.lifetime_s > lifetimes.limit(role):
        raise TokenError(
            f"The token lives {_hours(grant.lifetime_s)}; a {role.value} token may live at most "
            f"{_hours(lifetimes.limit(role))}"
        )
    if role is Role.ADMIN and grant.scope is None:
        raise TokenError("The admin token has no scope (the city or a school)")
    return grant


def _hours(seconds: int) -> str:
    return f"{seconds / 3600:g} h"
