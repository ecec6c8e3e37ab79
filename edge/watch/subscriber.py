"""The reference subscriber: follows one box (or every box under the prefix) over MQTT 5 and checks what it gets."""

from __future__ import annotations

import json
import os
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from edge.watch.assemble import LayerAssembler, LayerMessage, StageDone
from edge.watch.gaps import GapTracker, replay_request
from edge.watch.output import alert_line, layer_line, write_stage

PASSWORD_ENV = "LPBF_MQTT_PASSWORD"


class WatchError(RuntimeError):
    """The subscriber cannot run; the message says what to do."""


@dataclass(frozen=True)
class Broker:
    """Where to connect: host, port, TLS, optional user name (the password comes from $LPBF_MQTT_PASSWORD)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None


def parse_broker_url(url: str) -> Broker:
    """mqtt://[USER@]HOST[:PORT] or mqtts://... -> Broker; WatchError for anything else."""
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise WatchError(
            f"--broker {url!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT (user: mqtt://USER@HOST:PORT, "
            f"password in ${PASSWORD_ENV})"
        )
    if u.password:
        raise WatchError(f"--broker {url!r}: put the password in ${PASSWORD_ENV}, not in the URL (it would show in ps)")
    tls = u.scheme == "mqtts"
    return Broker(u.hostname, u.port or (8883 if tls else 1883), tls, unquote(u.username) if u.username else None)


@dataclass
class WatchSummary:
    """What a watch run saw."""

    final_ok: int = 0
    final_incomplete: list[tuple[str, str, int]] = field(default_factory=list)
    alerts: int = 0
    replay_requests: int = 0
    missing: list[tuple[str, str, int]] = field(default_factory=list)


class Watcher:
    """paho MQTT 5 subscriber feeding a LayerAssembler: a line per layer stage, files, replay requests."""

    def __init__(
        self,
        broker: Broker,
        *,
        prefix: str = "lpbf/v1",
        node: str | None = None,
        out: Path | None = None,
        replay_missing: bool = False,
        echo: Callable[[str], None] = print,
        settle_s: float = 20.0,
        gap_settle_s: float = 5.0,
        retry_s: float = 30.0,
        ca_file: str | None = None,
        client_id: str | None = None,
    ):
        self.broker, self.prefix, self.node, self.out = broker, prefix.rstrip("/"), node, out
        self.replay_missing, self.echo = replay_missing, echo
        self.assembler = LayerAssembler(settle_s)
        self.gaps = GapTracker(gap_settle_s, retry_s)
        self.tag = f"watch-{uuid.uuid4().hex[:8]}"
        self.summary = WatchSummary()
        self.finals: dict[tuple[str, str, int], StageDone] = {}
        self.earlies: dict[tuple[str, str, int], StageDone] = {}
        self._availability: dict[str, str] = {}
        self._jobs: dict[str, tuple] = {}
        self._job_nodes: dict[str, str] = {}  # job -> the node whose files are under out/<job>/
        self._warned: set[tuple[str, str]] = set()
        self._pending_replays: dict[bytes, tuple[str, str, int, int]] = {}
        self._q: queue.Queue = queue.Queue()
        self._subscribed = threading.Event()
        self._client_id, self._ca_file = client_id, ca_file
        self.client = None

    @property
    def topic_filter(self) -> str:
        """What to subscribe to: one box or every box under the prefix."""
        return f"{self.prefix}/{self.node or '+'}/#"

    # ---- connection -------------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        """Connect and subscribe; WatchError when the broker cannot be reached within `timeout` s."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        cid = self._client_id or f"lpbf-watch-{uuid.uuid4().hex[:10]}"
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        if self.broker.username:
            c.username_pw_set(self.broker.username, os.environ.get(PASSWORD_ENV))
        if self.broker.tls:
            c.tls_set(ca_certs=self._ca_file, cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = lambda cl, u, msg: self._q.put((msg, time.time()))
        props = None
        if self._client_id:  # a named subscriber keeps its session: the broker queues QoS 1 messages while it is away
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 24 * 3600
        c.connect_async(
            self.broker.host, self.broker.port, keepalive=30, clean_start=self._client_id is None, properties=props
        )
        c.loop_start()
        self.client = c
        if not self._subscribed.wait(timeout):
            self.stop()
            raise WatchError(
                f"no connection to the broker {self.broker.host}:{self.broker.port} within {timeout:.0f} s "
                "(is it running and reachable? user name and $LPBF_MQTT_PASSWORD right?)"
            )
        self.echo(
            f"watching {self.topic_filter} on {self.broker.host}:{self.broker.port}"
            + (f", files under {self.out}" if self.out else "")
            + (", asking for missed layers" if self.replay_missing else "")
        )

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        """(Re)subscribe on every connect."""
        if reason_code.is_failure:
            self._q.put((f"broker refused the connection: {reason_code}", time.time()))
            return
        client.subscribe(self.topic_filter, qos=1)

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    # ---- main loop ----------------------------------------------------------------------------------
    def run(
        self, stop: threading.Event | None = None, max_layers: int | None = None, duration_s: float | None = None
    ) -> WatchSummary:
        """Process messages until `stop` is set, `max_layers` final layers arrived or `duration_s` passed."""
        end = None if duration_s is None else time.monotonic() + duration_s
        while not (stop is not None and stop.is_set()) and (end is None or time.monotonic() < end):
            self.step(0.2)
            if max_layers is not None and len(self.finals) >= max_layers:
                break
        self.summary.missing = self.gaps.missing()
        return self.summary

    def step(self, timeout: float) -> None:
        """Handle arrived messages (waiting up to `timeout` for one), expire stalled layers, ask for gaps."""
        try:
            item = self._q.get(timeout=timeout)
            while True:
                self._handle(*item)
                item = self._q.get_nowait()
        except queue.Empty:
            pass
        now = time.time()
        for d in self.assembler.expire(now):
            self._done(d)
        if self.replay_missing:
            self._ask_for_gaps(now)

    def _handle(self, msg, t: float) -> None:
        """Route one message by topic."""
        if isinstance(msg, str):
            self.echo(msg)
            return
        rest = msg.topic[len(self.prefix) + 1 :].split("/") if msg.topic.startswith(self.prefix + "/") else []
        if len(rest) < 2:
            return
        node, kind = rest[0], rest[1:]
        if kind == ["availability"]:
            self._on_availability(node, msg.payload)
        elif kind == ["state"]:
            self._on_state(node, msg.payload)
        elif len(kind) == 5 and kind[0] == "job" and kind[2] == "layer" and kind[3].isdigit():
            self._on_layer(node, kind[1], int(kind[3]), kind[4], msg, t)
        elif len(kind) >= 2 and kind[0] == "reply" and kind[1] == self.tag:
            self._on_reply(msg)

    def _on_availability(self, node: str, payload: bytes) -> None:
        """Print a box going online/offline."""
        text = payload.decode("utf-8", "replace")
        if self._availability.get(node) != text:
            self._availability[node] = text
            self.echo(f"box {node}: {text}")

    def _on_state(self, node: str, payload: bytes) -> None:
        """Print a box's job and model when they change."""
        try:
            s = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.echo(f"box {node}: state is not JSON")
            return
        key = (s.get("job"), s.get("job_active"), s.get("model_id"))
        if self._jobs.get(node) != key:
            self._jobs[node] = key
            self.echo(
                f"box {node}: job {s.get('job')} ({'running' if s.get('job_active', True) else 'stopped'}), "
                f"last layer {s.get('last_layer')}, model {s.get('model_id')}, software {s.get('software_version')}"
            )

    def _on_layer(self, node: str, job: str, layer: int, kind: str, msg, t: float) -> None:
        """A per-layer message: into the assembler."""
        props = getattr(msg, "properties", None)
        corr = getattr(props, "CorrelationData", None)
        stage = dict(getattr(props, "UserProperty", None) or []).get("stage")
        self.gaps.seen(node, job, layer)
        for d in self.assembler.add(LayerMessage(node, job, layer, kind, bytes(msg.payload), corr, stage, t)):
            self._done(d)

    def _done(self, d: StageDone) -> None:
        """A stage is complete (or given up on): print, alert, write, track gaps."""
        key = (d.node, d.job, d.layer)
        early = self.earlies.get(key)
        if d.stage == "lr":
            self.earlies[key] = d
        self.echo(layer_line(d, early))
        alert = alert_line(d)
        if alert:
            self.summary.alerts += 1
            self.echo(alert)
        if self.out is not None:
            self._write(d, early if d.stage == "final" else None)
        if d.stage == "final":
            self.finals[key] = d
            self.gaps.finished(d.node, d.job, d.layer, d.ok, d.t_received)
            if d.ok:
                self.summary.final_ok += 1
                if key in self.summary.final_incomplete:
                    self.summary.final_incomplete.remove(key)
            elif key not in self.summary.final_incomplete:
                self.summary.final_incomplete.append(key)

    def _write(self, d: StageDone, early: StageDone | None) -> None:
        """Files under out/<job>/<layer>/; a second box with the same job id is told once and not written."""
        owner = self._job_nodes.setdefault(d.job, d.node)
        if owner == d.node:
            write_stage(self.out, d, early)
        elif (d.node, d.job) not in self._warned:
            self._warned.add((d.node, d.job))
            self.echo(
                f"box {d.node} also publishes job {d.job}: its layers are not written under {self.out} "
                f"(those are {owner}'s); run one watcher per box with --node"
            )

    # ---- replay of missed layers ------------------------------------------------------------------
    def _ask_for_gaps(self, now: float) -> None:
        """Publish `<p>/cmd/replay` for every due gap range."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        for node, job, lo, hi in self.gaps.due(now):
            req = replay_request(f"{self.prefix}/{node}", job, lo, hi, self.tag)
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = req.response_topic
            props.CorrelationData = req.correlation
            props.ContentType = "application/json"
            self.client.publish(req.topic, req.payload, qos=1, properties=props)
            self._pending_replays[req.correlation] = (node, job, lo, hi)
            self.summary.replay_requests += 1
            self.echo(f"asking box {node} to send layers {lo}-{hi} of job {job} again (missed here)")

    def _on_reply(self, msg) -> None:
        """Print the box's answer to a replay request."""
        corr = getattr(getattr(msg, "properties", None), "CorrelationData", None)
        what = self._pending_replays.pop(corr, None)
        try:
            body = json.loads(msg.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = {"ok": False, "error": "reply is not JSON"}
        asked = f"layers {what[2]}-{what[3]} of job {what[1]}" if what else "an unknown request"
        if body.get("ok"):
            self.echo(f"box accepted the replay of {asked}: {json.dumps({k: v for k, v in body.items() if k != 'ok'})}")
        else:
            self.echo(f"box refused the replay of {asked}: {body.get('error', body)}")
