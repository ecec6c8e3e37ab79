"""Integration fixtures: a real mosquitto on a free loopback port (optional TLS, passwords, ACL) and a subscriber."""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certs(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key, path: Path) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("lpbf-test-ca")).issuer_name(name("lpbf-test-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    out = {"ca": folder / "ca.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who, san in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(f"lpbf-test-{who}")).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                                             critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        out[f"{who}_cert"] = folder / f"{who}.pem"
        out[f"{who}_key"] = folder / f"{who}.key"
        out[f"{who}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(key, out[f"{who}_key"])
    return out


@dataclass
class Broker:
    """A mosquitto process on 127.0.0.1:port with a generated config; stop()/start() keep the port."""

    folder: Path
    port: int
    tls: dict[str, Path] | None = None
    users: dict[str, str] | None = None
    acl: str | None = None
    proc: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = self.folder / "mosquitto.log"
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {self.folder}/",
                 "log_dest stderr", "log_type all", f"user {getpass.getuser()}"]
        if self.users:
            pw = self.folder / "passwd"
            pw.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True, capture_output=True)
            lines += [f"password_file {pw}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            (self.folder / "acl").write_text(self.acl)
            lines.append(f"acl_file {self.folder / 'acl'}")
        if self.tls:
            lines += [f"cafile {self.tls['ca']}", f"certfile {self.tls['server_cert']}",
                      f"keyfile {self.tls['server_key']}",
                      "require_certificate true"]
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start mosquitto and wait until it accepts TCP connections."""
        fh = open(self.log, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=fh, stderr=fh)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        """Stop mosquitto (SIGTERM, then SIGKILL)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def received(self, client_prefix: str = "lpbf-edge") -> list[tuple[str, int]]:
        """(topic, payload bytes) of every PUBLISH the broker accepted from matching clients, in order.

        A client matches when its id starts with client_prefix."""
        import re

        pat = re.compile(rf"Received PUBLISH from {re.escape(client_prefix)}\S* \(d\d, q\d, r\d, m\d+, '([^']+)', "
                         r"\.\.\. \((\d+) bytes\)\)")
        return [(m.group(1), int(m.group(2))) for m in pat.finditer(self.log.read_text(errors="replace"))]

    def url(self) -> str:
        """mqtt://127.0.0.1:port"""
        return f"mqtt://127.0.0.1:{self.port}"


@pytest.fixture
def mosquitto(tmp_path):
    """Factory: mosquitto(tls=False, users=None, acl=None) -> started Broker; all stopped after the test."""
    if not Path(MOSQUITTO).exists() or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto mosquitto-clients)")
    brokers: list[Broker] = []

    def make(tls: bool = False, users: dict[str, str] | None = None, acl: str | None = None) -> Broker:
        folder = tmp_path / f"broker{len(brokers)}"
        b = Broker(folder, free_port(), make_certs(folder / "certs") if tls else None, users, acl)
        brokers.append(b)
        b.start()
        return b

    yield make
    for b in brokers:
        b.stop()


@dataclass
class Received:
    """One received message with the MQTT 5 properties tests look at."""

    topic: str
    payload: bytes
    retain: bool
    content_type: str | None
    correlation: bytes | None
    user: dict = field(default_factory=dict)


class Subscriber:
    """A paho MQTT 5 subscriber that records every message on `topic_filter`."""

    def __init__(self, port: int, topic_filter: str = "#", tls: dict[str, Path] | None = None,
                 username: str | None = None, password: str | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.subscribes = 0  # SUBACKs so far (the broker keeps no session across its restarts: count re-subscriptions)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}-{id(self)}", protocol=mqtt.MQTTv5)
        if username:
            c.username_pw_set(username, password)
        if tls:
            c.tls_set(ca_certs=str(tls["ca"]), certfile=str(tls["client_cert"]), keyfile=str(tls["client_key"]))
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic_filter, qos=1)
        c.on_subscribe = lambda cl, u, mid, rcs, p: (setattr(self, "subscribes", self.subscribes + 1), self.ready.set())
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 1)
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600  # the broker keeps our subscription and queue across its restarts
        c.connect_async("127.0.0.1", port, keepalive=10, clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY, properties=props)
        self.client = c
        c.loop_start()
        assert self.ready.wait(10), "test subscriber could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        props = getattr(msg, "properties", None)
        with self.lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain),
                                          getattr(props, "ContentType", None), getattr(props, "CorrelationData", None),
                                          dict(getattr(props, "UserProperty", None) or [])))

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        """Poll until predicate(messages) is true."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if predicate(list(self.messages)):
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribe():
    """Factory: subscribe(port, filter, ...) -> Subscriber; all closed after the test."""
    subs: list[Subscriber] = []

    def make(*args, **kwargs) -> Subscriber:
        s = Subscriber(*args, **kwargs)
        subs.append(s)
        return s

    yield make
    for s in subs:
        s.close()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A tiny but real ONNX model bundle (random weights), built once per session."""
    pytest.importorskip("torch")
    from tests.sr_fixtures import build_tiny_bundle

    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")
