"""`lpbf-edge watch`: follow a box over MQTT, verify every layer, save it, alert on critical layers."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the `watch` command."""

    @app.command("watch")
    def watch(
        broker: str = typer.Option(
            ..., "--broker", help="mqtt://[USER@]HOST[:PORT] or mqtts://...; password in $LPBF_MQTT_PASSWORD."
        ),
        node: str | None = typer.Option(
            None, "--node", help="Node id of the box to follow (default: every box under the prefix)."
        ),
        out: Path | None = typer.Option(
            None, "--out", help="Write DIR/<job>/<layer>/{lr.png, sr.png, anomaly.json, meta.json}."
        ),
        replay_missing: bool = typer.Option(
            False, "--replay-missing", help="Ask the box (<p>/cmd/replay) to send missed layers again."
        ),
        prefix: str = typer.Option("lpbf/v1", "--prefix", help="Topic prefix the boxes publish under."),
        ca_file: str | None = typer.Option(
            None, "--ca-file", help="With mqtts://: PEM of the CA that signed the broker's certificate."
        ),
        client_id: str | None = typer.Option(
            None,
            "--client-id",
            help="Fixed client id: the broker keeps the session (and queues "
            "layers) while this watcher is away; default a fresh id and a clean session.",
        ),
        layers: int | None = typer.Option(
            None, "--layers", min=1, help="Exit after this many final layers (default: run until Ctrl-C)."
        ),
        duration: float | None = typer.Option(None, "--duration", min=0.1, help="Exit after this many seconds."),
        settle: float = typer.Option(
            20.0,
            "--settle",
            min=0.5,
            help="Seconds to wait for a layer's missing messages before " "reporting it incomplete.",
        ),
    ) -> None:
        """The reference subscriber: one line per layer (state, flags, latency), an ALERT line for critical layers.

        Exit status 0 when every final layer seen arrived complete with matching sha256, 1 otherwise,
        2 on bad arguments.
        """
        from edge.watch.subscriber import Watcher, WatchError, parse_broker_url

        def echo(line: str) -> None:
            """Print a line (alerts in bold red) and flush, so a pipe sees it at once."""
            typer.secho(line, fg="red", bold=True) if line.startswith("!!!") else typer.echo(line)
            sys.stdout.flush()

        try:
            w = Watcher(
                parse_broker_url(broker),
                prefix=prefix,
                node=node,
                out=out,
                replay_missing=replay_missing,
                echo=echo,
                settle_s=settle,
                ca_file=ca_file,
                client_id=client_id,
            )
            w.start()
        except WatchError as exc:
            typer.echo(f"lpbf-edge watch: {exc}", err=True)
            raise typer.Exit(2) from exc
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            summary = w.run(stop, max_layers=layers, duration_s=duration)
        except KeyboardInterrupt:
            summary = w.summary
            summary.missing = w.gaps.missing()
        finally:
            w.stop()
        bad = [f"{k[1]} {k[2]}" for k in summary.final_incomplete]
        missing = [f"{k[1]} {k[2]}" for k in summary.missing if k not in summary.final_incomplete]
        typer.echo(
            f"watched {summary.final_ok + len(bad)} final layers: {summary.final_ok} complete, {len(bad)} incomplete"
            + (f" ({', '.join(bad)})" if bad else "")
            + (f"; never arrived: {', '.join(missing)}" if missing else "")
            + f"; {summary.alerts} alerts"
            + (f"; {summary.replay_requests} replay requests" if replay_missing else "")
        )
        raise typer.Exit(0 if not bad and not missing else 1)
