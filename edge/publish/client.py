"""MQTT 5 publisher: drains the disk spool in order, deletes an entry only after a successful PUBACK."""

from __future__ import annotations

import functools
import json
import logging
import queue
import ssl
import sys
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
_REPEAT_LOG_S = 60.0  # the same connection failure is logged again at most this often


def reply_topic_problem(topic: str, prefix: str) -> str | None:
    """Why a request's ResponseTopic may not be replied to (None: it may); replies only go under `prefix`."""
    if any(c in topic for c in "+#\x00"):
        return f"ResponseTopic {topic!r} contains a wildcard or NUL"
    if not topic.startswith(prefix) or len(topic) == len(prefix):
        return f"ResponseTopic {topic!r} is not under {prefix!r}"
    if len(topic.encode("utf-8", "surrogatepass")) > 65535:
        return "ResponseTopic is longer than MQTT allows"
    return None


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
        self.counters = {"published": 0, "rejected": 0, "connects": 0, "disconnects": 0, "connect_failures": 0,
                         "commands_ok": 0, "commands_rejected": 0, "commands_refused": 0, "callback_errors": 0}
        self.reply_prefix = cfg.reply_prefix or f"{self.topics.base}/reply/"
        self.last_error: str | None = None
        self.last_ack_s: float | None = None
        self.reason_code: str | None = None  # of the last CONNACK / DISCONNECT / failed connect
        self.disconnected_since: float | None = time.time()
        self.warnings: list[str] = []
        self._net_error: str | None = None  # last error paho logged (e.g. the TLS alert behind a failed connect)
        self._logged_failure: tuple[str, float] = ("", 0.0)
        self._started = False
        self._refused = False
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
            warning = self.cfg.password_file_warning()
            if warning:
                self.warnings.append(warning)
                log.warning(warning, extra={"event": "mqtt_password_file_exposed", "path": self.cfg.password_file})
            password = self.cfg.password()
            if password is None:
                log.warning("mqtt.username is set but no password was found (mqtt.password_file / $%s)",
                            self.cfg.password_env,
                            extra={"event": "mqtt_no_password"})
            c.username_pw_set(self.cfg.username, password)
        if self.cfg.tls:
            c.tls_set(ca_certs=self.cfg.ca_file, certfile=self.cfg.cert_file, keyfile=self.cfg.key_file,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            c.tls_insecure_set(self.cfg.tls_insecure)
        c.reconnect_delay_set(min_delay=max(1, int(self.cfg.reconnect_min_s)),
                              max_delay=max(1, int(self.cfg.reconnect_max_s)))
        c.max_queued_messages_set(0)
        c.on_connect = self._guard(self._on_connect)
        c.on_connect_fail = self._guard(self._on_connect_fail)
        c.on_disconnect = self._guard(self._on_disconnect)
        c.on_publish = self._guard(self._on_publish)
        c.on_message = self._guard(self._on_message)
        c.on_subscribe = self._guard(lambda client, userdata, mid, reason_codes, properties: self.subscribed.set())
        c.on_log = self._guard(self._on_log)
        return c

    def _guard(self, callback: Callable) -> Callable:
        """The one guard around every paho callback: an exception is logged (with the topic) and never reaches paho.

        An exception escaping a callback ends paho's network thread: no PUBACK is read again, the broker times
        the box out and it never reconnects.
        """
        @functools.wraps(callback)
        def guarded(client, userdata, *args):
            try:
                return callback(client, userdata, *args)
            except Exception as exc:  # noqa: BLE001
                topic = getattr(args[0], "topic", None) if args else None
                self.counters["callback_errors"] += 1
                where = f" on {topic}" if topic else ""
                self.last_error = f"{callback.__name__} failed{where}: {type(exc).__name__}: {exc}"
                log.exception(self.last_error, extra={"event": "mqtt_callback_failed", "callback": callback.__name__,
                                                      "topic": topic})
                return None
        return guarded

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start the drain and stats threads."""
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, clean_start=True)
        self.client.loop_start()
        self._started = True
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
            info = self.client.publish(self.topics.availability, b"offline", qos=1, retain=True,
                                       properties=_props("text/plain"))
            try:
                info.wait_for_publish(timeout=3)
            except (RuntimeError, ValueError):
                pass
            self.client.disconnect()
        self.client.loop_stop()
        return drained

    # ---- paho callbacks (network thread; never block, never raise: see _guard) --------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        """Announce online, retained state, discovery, subscribe to commands."""
        self.reason_code = str(reason_code)
        if reason_code.is_failure:
            self._refused = True  # the disconnect that follows says nothing new
            self._connect_failed(f"connect refused by {self.cfg.host}:{self.cfg.port}: {reason_code} "
                                 f"({reason_code.value})", "mqtt_connect_refused")
            return
        self.counters["connects"] += 1
        self.disconnected_since = None
        self._net_error = None
        client.publish(self.topics.availability, b"online", qos=1, retain=True, properties=_props("text/plain"))
        self._publish_state_now(client)
        if self.cfg.ha_discovery:
            for topic, payload in discovery_messages(self.topics, self.cfg.ha_prefix, self.version):
                client.publish(topic, payload, qos=1, retain=True, properties=_props("application/json"))
        client.subscribe(self.topics.cmd_filter, options=SubscribeOptions(qos=1, noLocal=True))
        self.connected.set()
        log.info("mqtt connected", extra={"event": "mqtt_connected", "broker": f"{self.cfg.host}:{self.cfg.port}"})

    def _on_connect_fail(self, client, userdata) -> None:
        """TCP/TLS connect raised (paho calls this inside its `except OSError`, so the exception is at hand)."""
        exc = sys.exc_info()[1]
        self.reason_code = "connect failed"
        self._connect_failed(f"cannot connect to {self.cfg.host}:{self.cfg.port}: {exc or 'connection failed'}",
                             "mqtt_connect_failed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        """Mark disconnected; paho resends unacknowledged QoS 1 messages after reconnecting."""
        self.reason_code = str(reason_code)
        was_connected = self.connected.is_set()
        self.connected.clear()
        self.subscribed.clear()
        if self.disconnected_since is None:
            self.disconnected_since = time.time()
        if was_connected:
            self.counters["disconnects"] += 1
            if self._stop.is_set():
                log.info("mqtt disconnected", extra={"event": "mqtt_disconnected", "reason": str(reason_code)})
            else:
                self.last_error = f"disconnected from {self.cfg.host}:{self.cfg.port}: {reason_code}" + (
                    f" ({self._net_error})" if self._net_error else "")
                log.warning(self.last_error, extra={"event": "mqtt_disconnected", "reason": str(reason_code)})
        elif self._refused:
            self._refused = False
        elif not self._stop.is_set():  # the connection closed before CONNACK: TLS refused, broker hung up...
            why = self._net_error or "the broker closed the connection before accepting it"
            self._connect_failed(f"connection to {self.cfg.host}:{self.cfg.port} failed: {reason_code}: {why}",
                                 "mqtt_connect_failed")
        if self._inflight:
            self._barrier_since = time.monotonic()

    def _on_log(self, client, userdata, level, buf) -> None:
        """Keep paho's last error line: it holds the reason behind a bare 'Unspecified error' disconnect."""
        if level == mqtt.MQTT_LOG_ERR:
            self._net_error = str(buf)

    def _connect_failed(self, reason: str, event: str) -> None:
        """Record a failed connection attempt in last_error; log it (the same reason again at most once a minute)."""
        self.counters["connect_failures"] += 1
        self.last_error = reason
        self._net_error = None
        last, when = self._logged_failure
        if reason != last or time.monotonic() - when > _REPEAT_LOG_S:
            self._logged_failure = (reason, time.monotonic())
            log.error(reason, extra={"event": event, "broker": f"{self.cfg.host}:{self.cfg.port}",
                                     "failures": self.counters["connect_failures"]})

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        """Hand the PUBACK (with its reason code) to the drain thread."""
        self._acks.put((mid, reason_code))

    def _on_message(self, client, userdata, msg) -> None:
        """Validate a command, act on it through the handler, reply on cmd/result or an allowed ResponseTopic."""
        name = self.topics.cmd_name(msg.topic)
        if name == "result":
            return
        props = getattr(msg, "properties", None)
        asked = getattr(props, "ResponseTopic", None)
        corr = getattr(props, "CorrelationData", None)
        refused = None if asked is None else reply_topic_problem(asked, self.reply_prefix)
        if refused is not None:  # never publish where a caller points: refuse the whole request
            self.counters["commands_refused"] += 1
            log.warning("command refused: %s", refused, extra={"event": "command_refused", "command": name,
                                                                 "topic": msg.topic, "response_topic": asked})
            error = f"refused: {refused}; replies go under {self.reply_prefix}"
            result = {"command": name, "ok": False, "error": error}
            client.publish(self.topics.cmd_result, json.dumps(result, sort_keys=True).encode(), qos=1,
                           properties=_props("application/json", corr))
            return
        try:
            cmd = parse_command(name, msg.payload)
            if self.command_handler is None:
                raise CommandError(f"{name}: this box does not take commands")
            result = {"command": name, "ok": True, **self.command_handler(name, cmd)}
            self.counters["commands_ok"] += 1
            log.info("command accepted", extra={"event": "command", "command": name})
        except Exception as exc:  # CommandError (invalid) or a failure while acting: reply, log, keep running
            result = {"command": name, "ok": False, "error": str(exc) if isinstance(exc, CommandError)
                      else f"{name} failed: {exc}"}
            self.counters["commands_rejected"] += 1
            log.warning("command rejected: %s", exc, extra={"event": "command_rejected", "command": name})
        client.publish(asked or self.topics.cmd_result, json.dumps(result, sort_keys=True).encode(), qos=1,
                       properties=_props("application/json", corr))
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

    def network_alive(self) -> bool:
        """True while paho's network thread runs (it reconnects by itself; if it is gone, nothing ever will)."""
        return self._started and not self._stop.is_set() and getattr(self.client, "_thread", None) is not None

    def workers_alive(self) -> bool:
        """True while the drain and stats threads run."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def connection(self) -> dict:
        """Broker connection as health reports it (from on_connect / on_disconnect / on_connect_fail)."""
        return {"connected": self.connected.is_set(), "disconnected_since_unix": self.disconnected_since,
                "reason_code": self.reason_code, "last_error": self.last_error,
                "network_loop_alive": self.network_alive(), "workers_alive": self.workers_alive(),
                "connects": self.counters["connects"],
                "connect_failures": self.counters["connect_failures"], "warnings": list(self.warnings)}

    def _stats_loop(self) -> None:
        """Publish `<base>/stats` every stats_interval_s: QoS 0, retained (offline subscribers queue none of it)."""
        while not self._stop.wait(self.cfg.stats_interval_s):
            if not self.connected.is_set():
                continue
            try:
                body = {"t": time.time(), "publisher": self.stats(), **self.stats_fn()}
                self.client.publish(self.topics.stats, json.dumps(body, sort_keys=True, default=str).encode(), qos=0,
                                    retain=True, properties=_props("application/json"))
            except Exception:  # noqa: BLE001 - a stats failure must not end the stats thread
                log.exception("stats failed", extra={"event": "stats_failed"})

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
        """Run _drain_once until stopped; an error (disk, spool) is logged and retried, never ends the thread."""
        while not self._stop.is_set():
            try:
                self._drain_once()
            except Exception as exc:  # noqa: BLE001
                self.last_error = f"spool drain failed: {type(exc).__name__}: {exc}"
                log.exception(self.last_error, extra={"event": "drain_failed"})
                self._stop.wait(1.0)

    def _drain_once(self) -> None:
        """Apply PUBACKs and send pending spool entries in sequence order, at most inflight_window unacknowledged."""
        if self._stop.is_set():
            return
        self._handle_acks()
        if not self.connected.is_set():
            self.connected.wait(0.2)
            return
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
                return
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
                log.error("cannot publish %s: %s (kept in spool/rejected)", m.topic, exc,
                          extra={"event": "publish_rejected"})
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
