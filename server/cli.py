"""``skyclass``: serve, and issue tokens."""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Annotated, Any

import typer

from .settings import Settings
from .tokens import Role, issue_token, parse_duration

# How uvicorn serves us (and the join benchmark's floor, ``loadtest/joins.py``).
UVICORN_OPTIONS: dict[str, Any] = {
    "ws": "wsproto",  # ~2 KB less per idle session than websockets' sans-I/O protocol, as fast a join
    "ws_per_message_deflate": False,  # halves memory per idle session
    "ws_ping_interval": None,  # clients ping us; the session closes after 60 s of silence
    "proxy_headers": False,  # whose X-Forwarded-For counts is ours to say (SKYCLASS_TRUSTED_PROXIES)
}

app = typer.Typer(help="Sky Classroom: live lessons for a whole city.", no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    redis: Annotated[str | None, typer.Option(help="Redis URL for shared state (default: embedded)")] = None,
    workers: Annotated[int, typer.Option(help="Server processes sharing the port (needs --redis)")] = 1,
    ice_address: Annotated[
        list[str] | None, typer.Option(help="ICE host address to offer (repeat); default: all + 127.0.0.1")
    ] = None,
    media_workers: Annotated[int | None, typer.Option(help="Media worker processes (0: media in this process)")] = None,
    relay_address: Annotated[
        str | None, typer.Option(help="This node's address for media relayed from other nodes (default 127.0.0.1)")
    ] = None,
    turn_url: Annotated[
        list[str] | None, typer.Option(help="A TURN server for pupils behind firewalls (repeat: udp, tcp, turns:…:443)")
    ] = None,
    turn_secret: Annotated[str | None, typer.Option(help="coturn's static-auth-secret")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
    log_format: Annotated[str, typer.Option(help="text, or json (one object a line, for log collectors)")] = "text",
) -> None:
    """Serve the web client, the signaling websocket and the SFU; with --redis, as one node of many."""
    import uvicorn

    if workers > 1 and not (redis or os.environ.get("SKYCLASS_REDIS_URL")):
        raise typer.BadParameter(
            "several processes share rooms through Redis: give --redis too", param_hint="--workers"
        )
    overrides = {"host": host, "port": port, "redis_url": redis, "ice_addresses": ice_address or None}
    overrides |= {"media_workers": media_workers, "relay_address": relay_address}
    overrides |= {"turn_urls": turn_url or None, "turn_secret": turn_secret}
    for name, value in overrides.items():  # through the environment, so that every worker process reads them
        if value is not None:
            os.environ[f"SKYCLASS_{name.upper()}"] = json.dumps(value) if isinstance(value, list) else str(value)
    _raise_open_file_limit()
    settings = Settings()
    settings.signing_secret  # noqa: B018 (made once here, not raced by the worker processes)
    if workers > 1:  # likewise the demo lesson
        from .lessons.catalog import Catalog
        from .lessons.demo import ensure_demo_lesson

        ensure_demo_lesson(Catalog(settings.recordings_dir))
    uvicorn.run(
        "server.app:create_app",
        factory=True,
        workers=workers,
        host=settings.host,
        port=settings.port,
        log_config=_log_config(log_level, log_format),
        ws_max_size=settings.max_frame_bytes,
        **UVICORN_OPTIONS,
    )


def _raise_open_file_limit() -> None:
    """Every session is a socket: allow as many as the system lets this process have."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _log_config(level: str, style: str) -> dict[str, Any]:
    """Logging for every process; JSON lines carry the extras (room, participant) as fields. Lesson
    events (``skyclass.events``) are JSON objects as they are, whatever the style and the level."""
    if style == "json":
        formatter: dict[str, Any] = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
        }
    else:
        formatter = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "server.cli.RedactTokens"}},
        "formatters": {"default": formatter, "event": {"format": "%(message)s"}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "filters": ["redact"]},
            "events": {"class": "logging.StreamHandler", "formatter": "event"},
        },
        "loggers": {
            "skyclass.events": {"handlers": ["events"], "level": "INFO", "propagate": False},
            # uvicorn says a line at INFO for every websocket it accepts: 150,000 at 08:20. Its
            # warnings and errors stay; the app says where it serves (``node ..., serving on ...``).
            "uvicorn.error": {"level": "WARNING" if level.upper() == "INFO" else level.upper()},
        },
        "root": {"handlers": ["default"], "level": level.upper()},
    }


class RedactTokens(logging.Filter):
    """Tokens never reach a log: ``token=...`` in a logged URL (uvicorn's access log) and ``"token":
    "..."`` in a logged message (a join that failed) are cut."""

    PATTERN = re.compile(r"((?:^|[?&])token=|\"token\"\s*:\s*\")[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = self.PATTERN.sub(r"\1[redacted]", record.msg)
        return True


@app.command()
def token(
    room: Annotated[str, typer.Option(help="Room the token admits to")],
    role: Annotated[Role, typer.Option(help="teacher, student, inspector, reviewer or admin")],
    name: Annotated[str, typer.Option(help="Name shown to others")],
    ttl: Annotated[str, typer.Option(help="Lifetime: 90s, 45m, 2h (at most 12h; admins 2h)")] = "2h",
    scope: Annotated[str | None, typer.Option(help="Admins: 'city', or the school (as named in the timetable)")] = None,
) -> None:
    """Print a signed token."""
    settings = Settings()
    if role is Role.ADMIN and scope is None:
        raise typer.BadParameter("an admin token needs --scope city, or --scope <school>", param_hint="--scope")
    try:
        ttl_s = parse_duration(ttl)
        token = issue_token(
            settings.signing_secret,
            room=room,
            role=role,
            name=name,
            ttl_s=ttl_s,
            scope=scope,
            lifetimes=settings.lifetimes,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ttl / --scope") from exc
    typer.echo(token)


@app.command("media-secret")
def media_secret() -> None:
    """Print the secret that signs media URLs, for nginx's secure_link (README, private media)."""
    typer.echo(Settings().media_secret)


if __name__ == "__main__":
    app()
