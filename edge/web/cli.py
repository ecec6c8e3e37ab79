"""`lpbf-edge serve`: the read-only web view of a store root (the same page the service serves with `web.enabled`)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the `serve` command."""

    @app.command("serve")
    def serve(
        store: Path = typer.Option(
            ..., "--store", help="Store root of a box (store.root; the demo's is demo-out/box)."
        ),
        port: int = typer.Option(8088, "--port", min=0, max=65535, help="TCP port (0: any free port)."),
        bind: str = typer.Option(
            "127.0.0.1",
            "--bind",
            help="Address to listen on; anything but loopback needs "
            "$LPBF_WEB_PASSWORD (user 'lpbf') or --password-file.",
        ),
        password_file: Path | None = typer.Option(
            None, "--password-file", help="File whose first line is the password."
        ),
        title: str | None = typer.Option(None, "--title", help="Page title (default: lpbf-edge and the store folder)."),
    ) -> None:
        """Serve a read-only page over the archive: latest layer, timeline of states, health; JSON /api/layers."""
        from edge.web.config import WebConfig
        from edge.web.server import WebError, WebServer

        if not (store / "archive").is_dir() and not (store / "health.json").is_file():
            typer.echo(
                f"lpbf-edge serve: {store} is not a store root (no archive/ or health.json; the demo's is "
                "demo-out/box, a box's is store.root of its config)",
                err=True,
            )
            raise typer.Exit(2)
        try:
            cfg = WebConfig(
                enabled=True, bind=bind, port=port, password_file=str(password_file) if password_file else None
            )
            server = WebServer(store, cfg, title or f"lpbf-edge: {store.resolve().name}").start()
        except (WebError, ValueError) as exc:
            typer.echo(f"lpbf-edge serve: {exc}", err=True)
            raise typer.Exit(2) from exc
        typer.echo(f"serving {store} read-only at {server.url} (Ctrl-C to stop)", err=False)
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
