"""``skyclass``: serve, and issue tokens."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from .settings import Settings
from .tokens import Role, issue_token, parse_duration

app = typer.Typer(help="Sky Classroom: live lessons for a whole city.", no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    redis: Annotated[str | None, typer.Option(help="Redis URL for shared state (default: embedded)")] = None,
    ice_address: Annotated[
        list[str] | None, typer.Option(help="ICE host address to offer (repeat); default: all + 127.0.0.1")
    ] = None,
    media_workers: Annotated[int | None, typer.Option(help="Media worker processes (0: media in this process)")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Serve the web client, the signaling websocket and the SFU in one process."""
    import uvicorn

    from .app import create_app

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if redis is not None:
        overrides["redis_url"] = redis
    if ice_address:
        overrides["ice_addresses"] = ice_address
    if media_workers is not None:
        overrides["media_workers"] = media_workers
    settings = Settings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        ws_max_size=4 * settings.max_message_bytes,  # larger frames are cut off by the protocol layer
        ws_per_message_deflate=False,  # halves memory per idle session
        ws_ping_interval=None,  # clients ping us; the session closes after 60 s of silence
    )


@app.command()
def token(
    room: Annotated[str, typer.Option(help="Room the token admits to")],
    role: Annotated[Role, typer.Option(help="teacher, student, inspector or admin")],
    name: Annotated[str, typer.Option(help="Name shown to others")],
    ttl: Annotated[str, typer.Option(help="Lifetime: 90s, 45m, 2h, 1d")] = "2h",
) -> None:
    """Print a signed join token."""
    try:
        ttl_s = parse_duration(ttl)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ttl") from exc
    typer.echo(issue_token(Settings().signing_secret, room=room, role=role, name=name, ttl_s=ttl_s))


if __name__ == "__main__":
    app()
