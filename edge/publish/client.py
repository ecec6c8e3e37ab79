"""MQTT 5 publisher: drains the disk spool in order, deletes an entry only after a successful PUBACK."""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.publish.commands import CommandError, parse_command
from edge.publish.config import MqttConfig
from edge.publish.discovery import discovery_messages
from edge.publish.topics import Topics
from edge.store.spool import PublishSpool, SpoolEntry

log = logging.getLogger("edge.publish")

CommandHandler = Callable[[str, object], dict]


def _props(content_type: str, correlation: bytes | None = None, stage: str | None = None) -> Properties:
    """PUBLISH properties: ContentType, optional CorrelationData and the layer stage as a user property."""
    p = Properties(PacketTypes.PUBLISH)
    p.ContentType = content_type
    if correlation is not None:
        p.CorrelationData = correlation
    if stage is not None:
        p.UserProperty = [("stage", stage)]
    return p


class MqttPublisher:
    """One paho client per box: availability + last will, retained state, spool drain, stats, commands."""

    def __init__(self, cfg: MqttConfig, node_id: str, spool: PublishSpool, *, version: str = "0",
                 state_fn: Callable[[], dict] = dict, stats_fn: Callable[[], dict] = dict,
                 command_handler: CommandHandler | None = None, on_ack: Callable[[SpoolEntry], None] | None = None):
        self.cfg, self.spool, self.version, self.on_ack = cfg, spool, version, on_ack
        self.topics = Topics(cfg.prefix, node_id)
        self.state_fn, self.stats_fn, self.command_handler = state_fn, stats_fn, command_handler
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.counters = {"published": 0, "rejected": 0, "connects": 0, "disconnects": 0, "commands_ok": 0, "commands_rejected": 0}
        self.last_error: str | None = None
        self.last_ack_s: float | None = None
        self._acks: queue.Queue = queue.Queue()
        self._inflight: dict[int, SpoolEntry] = {}
        self._inflight_names: set[str] = set()
        self._barrier_since: float | None = None  # after a reconnect: old in-flight entries first (paho resends them)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.client = self._make_client(node_id)

    def _make_client(self, node_id: str) -> mqtt.Client:
        """paho client with will, credentials, TLS and backoff configured."""
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.cfg.client_id or f"lpbf-edge-{node_id}",
                        protocol=mqtt.MQTTv5)
        c.will_set(self.topics.availability, b"offline", qos=1, retain=True, properties=_props("text/plain"))
        if self.cfg.username:
            password = self.cfg.password()
            if password is None:
                log.warning("mqtt.username is set but no password was found (mqtt.password_file / $%s)", self.cfg.password_env,
                            extra={"event": "mqtt_no_password"})
            c.username_pw_set(self.cfg.username, password)
        if self.cfg.tls:
            c.tls_set(ca_certs=self.cfg.ca_file, certfile=self.cfg.cert_file, keyfile=self.cfg.key_file,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            c.tls_insecure_set(self.cfg.tls_insecure)
        c.reconnect_delay_set(min_delay=max(1, int(self.cfg.reconnect_min_s)), max_delay=max(1, int(self.cfg.reconnect_max_s)))
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_subscribe = lambda client, userdata, mid, reason_codes, properties: self.subscribed.set()
        return c

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start the drain and stats threads."""
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, clean_start=True)
        self.client.loop_start()
        for target, name in ((self._drain_loop, "mqtt-drain"), (self._stats_loop, "mqtt-stats")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def wait_drained(self, timeout: float) -> bool:
        """True once the spool has no pending entries and nothing is in flight (within `timeout` s)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.spool.pending_names() and not self._inflight:
                return True
            time.sleep(0.05)
        return False

    def stop(self, drain_timeout: float = 10.0) -> bool:
        """Drain (up to drain_timeout), publish `offline`, disconnect cleanly; True when everything was sent."""
        drained = self.wait_drained(drain_timeout) if self.connected.is_set() else False
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        if self.connected.is_set():
            info = self.client.publish(self.topics.availability, b"offline", qos=1, retain=True, properties=_props("text/plain"))
            try:
                info.wait_for_publish(timeout=3)
            except (RuntimeError, ValueError):
                pass
            self.client.disconnect()
        self.client.loop_stop()
        return drained

    # ---- paho callbacks (network thread; never block) ----------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        """Announce online, retained state, discovery, subscribe to commands."""
        if reason_code.is_failure:
            self.last_error = f"connect refused by {self.cfg.host}:{self.cfg.port}: {reason_code}"
            log.error(self.last_error, extra={"event": "mqtt_connect_refused"})
            return
        self.counters["connects"] += 1
        client.publish(self.topics.availability, b"online", qos=1, retain=True, properties=_props("text/plain"))
        self._publish_state_now(client)
        if self.cfg.ha_discovery:
            for topic, payload in discovery_messages(self.topics, self.cfg.ha_prefix, self.version):
                client.publish(topic, payload, qos=1, retain=True, properties=_props("application/json"))
        client.subscribe(self.topics.cmd_filter, options=SubscribeOptions(qos=1, noLocal=True))
        self.connected.set()
        log.info("mqtt connected", extra={"event": "mqtt_connected", "broker": f"{self.cfg.host}:{self.cfg.port}"})

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        """Mark disconnected; paho resends unacknowledged QoS 1 messages after reconnecting."""
        if self.connected.is_set():
            self.counters["disconnects"] += 1
            level = logging.INFO if self._stop.is_set() else logging.WARNING
            log.log(level, "mqtt disconnected", extra={"event": "mqtt_disconnected", "reason": str(reason_code)})
        self.connected.clear()
        self.subscribed.clear()
        if self._inflight:
            self._barrier_since = time.monotonic()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        """Hand the PUBACK (with its reason code) to the drain thread."""
        self._acks.put((mid, reason_code))

    def _on_message(self, client, userdata, msg) -> None:
        """Validate a command, act on it through the handler, reply on cmd/result (or the ResponseTopic)."""
        name = self.topics.cmd_name(msg.topic)
        if name == "result":
            return
        props = getattr(msg, "properties", None)
        reply_to = getattr(props, "ResponseTopic", None) or self.topics.cmd_result
        corr = getattr(props, "CorrelationData", None)
        try:
            cmd = parse_command(name, msg.payload)
            if self.command_handler is None:
                raise CommandError(f"{name}: this box does not take commands")
            result = {"command": name, "ok": True, **self.command_handler(name, cmd)}
            self.counters["commands_ok"] += 1
            log.info("command accepted", extra={"event": "command", "command": name})
        except Exception as exc:  # CommandError (invalid) or a failure while acting: reply, log, keep running
            result = {"command": name, "ok": False, "error": str(exc) if isinstance(exc, CommandError) else f"{name} failed: {exc}"}
            self.counters["commands_rejected"] += 1
            log.warning("command rejected: %s", exc, extra={"event": "command_rejected", "command": name})
        client.publish(reply_to, json.dumps(result, sort_keys=True).encode(), qos=1, properties=_props("application/json", corr))
        if result["ok"]:
            self._publish_state_now(client)

    # ---- state, stats --------------------------------------------------------------------------
    def _publish_state_now(self, client: mqtt.Client) -> None:
        """Publish the retained state JSON."""
        state = {"version": self.version, **self.state_fn()}
        client.publish(self.topics.state, json.dumps(state, sort_keys=True).encode(), qos=1, retain=True,
                       properties=_props("application/json"))

    def publish_state(self) -> None:
        """Publish the retained state now (when connected; it is published on every connect anyway)."""
        if self.connected.is_set():
            self._publish_state_now(self.client)

    def stats(self) -> dict:
        """Publisher counters and spool depth."""
        return {**self.counters, **{f"spool_{k}": v for k, v in self.spool.counts().items()},
                "inflight": len(self._inflight), "connected": self.connected.is_set(), "last_error": self.last_error}

    def _stats_loop(self) -> None:
        """Publish `<base>/stats` every stats_interval_s."""
        while not self._stop.wait(self.cfg.stats_interval_s):
            if self.connected.is_set():
                body = {"t": time.time(), "publisher": self.stats(), **self.stats_fn()}
                self.client.publish(self.topics.stats, json.dumps(body, sort_keys=True, default=str).encode(), qos=1,
                                    properties=_props("application/json"))

    # ---- spool drain ------------------------------------------------------------------------------
    def _handle_acks(self) -> None:
        """Apply received PUBACKs: success deletes the spool entry, failure moves it to spool/rejected."""
        while True:
            try:
                mid, rc = self._acks.get_nowait()
            except queue.Empty:
                return
            entry = self._inflight.pop(mid, None)
            if entry is None:
                continue  # availability/state/stats/replies are not spooled
            self._inflight_names.discard(entry.path.name)
            if rc.is_failure:
                reason = f"broker refused {entry.message.topic}: reason code {rc.value} {rc}"
                self.spool.reject(entry, reason)
                self.counters["rejected"] += 1
                self.last_error = reason
                log.error(reason + " (kept in spool/rejected)", extra={
                    "event": "publish_rejected", "topic": entry.message.topic, "reason_code": rc.value,
                    "job": entry.message.job, "layer": entry.message.layer})
            else:
                self.spool.ack(entry)
                self.counters["published"] += 1
                self.last_ack_s = time.time()
                if self.on_ack is not None:
                    self.on_ack(entry)

    def _drain_loop(self) -> None:
        """Send pending spool entries in sequence order, at most inflight_window unacknowledged."""
        while not self._stop.is_set():
            self._handle_acks()
            if not self.connected.is_set():
                self.connected.wait(0.2)
                continue
            sent = 0
            if self._barrier_since is not None:
                if not self._inflight:
                    self._barrier_since = None
                elif time.monotonic() - self._barrier_since > 30.0:  # never resent: send them again from the spool
                    log.warning("in-flight messages not acknowledged after reconnect; resending from the spool",
                                extra={"event": "mqtt_resend"})
                    self._inflight.clear()
                    self._inflight_names.clear()
                    self._barrier_since = None
                else:
                    self._acks_wait()
                    continue
            for name in self.spool.pending_names():
                if len(self._inflight) >= self.cfg.inflight_window or not self.connected.is_set():
                    break
                if name in self._inflight_names:
                    continue
                try:
                    entry = self.spool.load(name)
                except ValueError as exc:
                    log.error(str(exc), extra={"event": "spool_damaged"})
                    continue
                if entry is None:
                    continue
                m = entry.message
                try:
                    info = self.client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain,
                                               properties=_props(m.content_type, m.correlation, m.stage))
                except (ValueError, TypeError) as exc:  # e.g. payload over the MQTT size limit: cannot ever be sent
                    self.spool.reject(entry, f"cannot publish {m.topic}: {exc}")
                    self.counters["rejected"] += 1
                    self.last_error = str(exc)
                    log.error("cannot publish %s: %s (kept in spool/rejected)", m.topic, exc, extra={"event": "publish_rejected"})
                    continue
                self._inflight[info.mid] = entry
                self._inflight_names.add(name)
                sent += 1
            if not sent:
                self._acks_wait()

    def _acks_wait(self) -> None:
        """Sleep until a PUBACK arrives (left in the queue) or a short timeout."""
        try:
            self._acks.put(self._acks.get(timeout=0.1))
        except queue.Empty:
            self.spool.wait(0.05)
