"""The fleet playbooks, run for real with ansible-playbook against several localhost hosts.

Each host is `ansible_connection=local` with its own root under tmp. One wheel of the committed
project is built per session; each release venv installs it with --no-deps and sees the project's
.venv packages through a .pth file (production installs the dependencies from a wheelhouse).

The service runs as a plain process (lpbf_edge_service_manager=process; there is no systemd here).
Everything is the real release except `lpbf-edge run`, which in the test wheel is a stand-in that
loads the release's config and keeps the real health file (edge.health) beating: the real service
needs a calibration, a camera, a DAQ and the SR model, none of which this test is about. The health
check is the real `lpbf-edge health`. The broken release's `run` crashes at start.
The tests run in file order: install, idempotent re-run, refused config/model, rolling update with
one broken host, a broken first batch that stops the rollout, manual rollback, ansible-lint.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
VENV_BIN = Path(sys.executable).parent
PLAYBOOK = VENV_BIN / "ansible-playbook"
HOSTS = ("box-a", "box-b", "box-c")
BROKEN_HOST = "box-c"
VAULT_SECRET = "s3cr3t-mqtt-pw-for-tests"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PLAYBOOK.exists(), reason="ansible-core is not installed in this venv (pip install "
                       "'.[fleet]')"),
]


def _service_available() -> str | None:
    """None when the committed code has the box service (`lpbf-edge run` and `health`), else why not."""
    proc = subprocess.run(["git", "show", "HEAD:edge/service_cli.py"], cwd=REPO, capture_output=True, text=True,
                          check=False)
    missing = [c for c in ("run", "health") if not re.search(rf"""command\(\s*["']{c}["']""", proc.stdout)]
    return f"`lpbf-edge {' / '.join(missing)}` is not committed yet (edge/service_cli.py)" if missing else None


def _build_wheel(dest: Path) -> Path:
    """Build one wheel of the committed project (HEAD: a release is a commit, not a dirty tree)."""
    src = dest / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=REPO, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dest / "dist"),
         str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (dest / "dist").glob("lpbf_edge-*.whl")
    return wheel


SHIM = '''"""Test-only service stand-in: every command is the real one except `run` (see the test module)."""
import json
import os
import signal
import sys
import time

from edge.cli import main as _main

BROKEN = {broken}


def _run(config):
    """Heartbeat like the box service: the real health file format, rewritten until SIGTERM."""
    from edge.config import load_config
    from edge.health import write_health

    cfg = load_config(config)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    doc = {{"pid": os.getpid(), "version": "stand-in", "mqtt_enabled": False, "last_layer": None, "spool_pending": 0}}
    while not stop:
        write_health(cfg.store.root, dict(doc, status="running", heartbeat_unix=time.time()))
        time.sleep(cfg.store.health_interval_s)
    write_health(cfg.store.root, dict(doc, status="stopped", heartbeat_unix=time.time()))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        if BROKEN:
            raise SystemExit("simulated broken release: the service crashes at start")
        sys.argv[1:2] = []
        return _run(sys.argv[sys.argv.index("--config") + 1])
    _main()
'''


def _test_wheel(good: Path, dest: Path, broken: bool) -> Path:
    """Copy of the wheel whose `run` is the heartbeat stand-in, or (broken) crashes at start."""
    dest.mkdir(parents=True)
    out = dest / good.name
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith(".dist-info/entry_points.txt"):
                data = data.replace(b"edge.cli:main", b"lpbf_edge_test_shim:main")
            elif item.filename.endswith(".dist-info/RECORD"):
                data += b"lpbf_edge_test_shim.py,,\n"
            zout.writestr(item, data)
        zout.writestr("lpbf_edge_test_shim.py", SHIM.format(broken=broken))
    return out


def _bundle(dest: Path, tamper: bool = False) -> Path:
    """A small model bundle: files plus manifest.json mapping each relpath to its sha256."""
    files = {"sub/decoder.onnx": b"\x08\x07onnx-decoder" * 40}
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    manifest = {"model_id": "test-bundle", "scale": 4,
                "files": {rel: hashlib.sha256(d).hexdigest() for rel, d in files.items()}}
    if tamper:
        manifest["files"]["sub/decoder.onnx"] = "0" * 64
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dest


class Fleet:
    """Inventory, wheels and helpers for running the playbooks against localhost hosts."""

    def __init__(self, tmp: Path, service: bool):
        self.tmp = tmp
        self.service = service
        built = _build_wheel(tmp / "build")
        self.wheel = _test_wheel(built, tmp / "good", broken=False)
        self.broken_wheel = _test_wheel(built, tmp / "broken", broken=True)
        self.bundle = _bundle(tmp / "bundle")
        self.inventory = tmp / "inventory"
        self.vault_pass = tmp / "vault-pass.txt"
        self.vault_pass.write_text("test-vault-password\n")
        self._write_inventory()

    def root(self, host: str) -> Path:
        """Installation root of one host."""
        return self.tmp / "hosts" / host / "opt"

    def data(self, host: str) -> Path:
        """Data directory (store.root) of one host."""
        return self.tmp / "hosts" / host / "data"

    def current(self, host: str) -> str:
        """Name of the release `current` points at."""
        return Path(os.readlink(self.root(host) / "current")).name

    def _write_inventory(self) -> None:
        """hosts.yml (one local host per box) and an ansible-vault encrypted vault.yml."""
        hosts = {}
        for h in HOSTS:
            hosts[h] = {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "lpbf_edge_root": str(self.root(h)),
                "lpbf_edge_data_dir": str(self.data(h)),
            }
        group = {
            "lpbf_edge_become": False,
            "lpbf_edge_install_system_packages": False,
            "lpbf_edge_manage_user": False,
            "lpbf_edge_user": pwd.getpwuid(os.getuid()).pw_name,
            "lpbf_edge_group": grp.getgrgid(os.getgid()).gr_name,
            "lpbf_edge_python": getattr(sys, "_base_executable", sys.executable),
            "lpbf_edge_pip_no_deps": True,
            "lpbf_edge_venv_with_pip": False,
            "lpbf_edge_pip_extras": [],
            "lpbf_edge_venv_extra_paths": [sysconfig.get_paths()["purelib"]],
            "lpbf_edge_wheel": str(self.wheel),
            "lpbf_edge_model_src": str(self.bundle),
            "lpbf_edge_version": "1.0.0",
            "lpbf_edge_service_manager": "process" if self.service else "none",
            "lpbf_edge_service_stop_timeout_s": 10,
            "lpbf_edge_health_retries": 5,
            "lpbf_edge_health_delay_s": 1,
            "lpbf_edge_mqtt_port": 1883,
            "lpbf_edge_mqtt_username": "box",
            "lpbf_edge_mqtt_password": "{{ vault_lpbf_edge_mqtt_password }}",
            "lpbf_edge_config": {"capture": {"webcam": "none"}, "sr": {"samples": 2}},
        }
        if self.service:  # a box that runs without hardware: simulated printer, quick heartbeat
            group["lpbf_edge_config"]["store"] = {"fsync": False, "health_interval_s": 0.5, "health_max_age_s": 5.0}
        inv = {"all": {"children": {"lpbf_edge": {"hosts": hosts, "vars": group}}}}
        gv = self.inventory / "group_vars" / "all"
        gv.mkdir(parents=True)
        (self.inventory / "hosts.yml").write_text(json.dumps(inv, indent=2))
        vault = gv / "vault.yml"
        vault.write_text(f'---\nvault_lpbf_edge_mqtt_password: "{VAULT_SECRET}"\n')
        subprocess.run(
            [str(VENV_BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(self.vault_pass), str(vault)],
            check=True,
            capture_output=True,
        )

    def play(self, playbook: str, *extra: str) -> tuple[int, str, dict[str, dict[str, int]]]:
        """Run a playbook; (exit status, output, recap per host)."""
        env = dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_LOCAL_TEMP=str(self.tmp / "ansible-tmp"), ANSIBLE_HOME=str(self.tmp / "ansible-home"),
                   PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
        if os.environ.get("LPBF_FLEET_PROFILE"):
            env.update(ANSIBLE_CALLBACK_PLUGINS=os.environ["LPBF_FLEET_PROFILE"], ANSIBLE_CALLBACKS_ENABLED="taskclock")
        cmd = [str(PLAYBOOK), "-i", str(self.inventory / "hosts.yml"), "--vault-password-file", str(self.vault_pass),
               str(ANSIBLE / playbook), *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ANSIBLE, check=False)
        out = proc.stdout + proc.stderr
        recap = {}
        for m in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", out, re.M):
            recap[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
        return proc.returncode, out, recap

    def stop_all(self) -> None:
        """Stop every service process the tests started."""
        for h in HOSTS:
            ctl = self.root(h) / "lpbf-edge-ctl"
            if ctl.exists():
                subprocess.run([str(ctl), "stop"], capture_output=True, check=False, timeout=30)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A fleet of three localhost boxes with the wheel built once; service processes stopped at the end."""
    reason = _service_available()
    f = Fleet(tmp_path_factory.mktemp("fleet"), service=reason is None)
    f.no_service_reason = reason
    yield f
    f.stop_all()


def _assert_ok(rc: int, out: str, recap: dict, hosts=HOSTS) -> None:
    """The run succeeded on every host."""
    assert rc == 0, out[-4000:]
    for h in hosts:
        assert recap[h]["failed"] == 0 and recap[h]["unreachable"] == 0, out[-4000:]


def test_install_renders_validated_config_and_verified_model(fleet):
    """site.yml installs release 1.0.0 on all hosts: venv, current link, config that validates, model, secret."""
    rc, out, recap = fleet.play("site.yml")
    _assert_ok(rc, out, recap)
    for h in HOSTS:
        root = fleet.root(h)
        assert fleet.current(h) == "1.0.0"
        rel = root / "releases" / "1.0.0"
        cli = rel / "venv" / "bin" / "lpbf-edge"
        cfg = rel / "config.yaml"
        check = subprocess.run([str(cli), "config", "validate", str(cfg)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        text = cfg.read_text()
        assert f"node_id: {h}" in text and str(fleet.data(h)) in text and str(rel / "model") in text
        assert VAULT_SECRET not in text  # the password is only in the 0600 file
        secret = root / "secrets" / "mqtt_password"
        assert secret.read_text().strip() == VAULT_SECRET
        assert secret.stat().st_mode & 0o777 == 0o600
        for rel_path in ("sub/decoder.onnx", "manifest.json"):
            assert (rel / "model" / rel_path).read_bytes() == (fleet.bundle / rel_path).read_bytes()
        assert not (rel / "model" / "engines").exists()  # no GPU here: the TensorRT build is skipped
    assert VAULT_SECRET not in (fleet.inventory / "group_vars" / "all" / "vault.yml").read_text()


def test_second_run_changes_nothing(fleet):
    """Running site.yml again reports changed=0 on every host and keeps the running service."""
    pids = {h: (fleet.root(h) / "run" / "lpbf-edge.pid").read_text() for h in HOSTS if fleet.service}
    rc, out, recap = fleet.play("site.yml")
    _assert_ok(rc, out, recap)
    assert all(recap[h]["changed"] == 0 for h in HOSTS), out[-4000:]
    for h, pid in pids.items():
        assert (fleet.root(h) / "run" / "lpbf-edge.pid").read_text() == pid


def test_bad_config_and_tampered_model_are_refused_before_use(fleet, tmp_path):
    """One run: box-a's config fails the release's validator, box-b's bundle fails its sha256; box-c is untouched."""
    before = (fleet.root("box-a") / "releases" / "1.0.0" / "config.yaml").read_text()
    bad = _bundle(tmp_path / "bad", tamper=True)
    hv = fleet.inventory / "host_vars"
    hv.mkdir(exist_ok=True)
    box_config = {"capture": {"webcam": "none"}, "sr": {"samples": 0}}
    (hv / "box-a.yml").write_text(json.dumps({"lpbf_edge_config": box_config}))
    (hv / "box-b.yml").write_text(json.dumps({"lpbf_edge_model_src": str(bad), "lpbf_edge_version": "9.9.9"}))
    try:
        rc, out, recap = fleet.play("site.yml")
    finally:
        for h in ("box-a", "box-b"):
            (hv / f"{h}.yml").unlink()
    assert rc != 0 and recap["box-a"]["failed"] == 1 and recap["box-b"]["failed"] == 1, out[-4000:]
    assert re.search(r"line \d+: sr\.samples: ", out)  # the validator's `FILE:line N: key: reason` reaches the operator
    assert (fleet.root("box-a") / "releases" / "1.0.0" / "config.yaml").read_text() == before
    assert "sub/decoder.onnx: FAILED" in out and "is refused" in out
    assert not (fleet.root("box-b") / "releases" / "9.9.9" / "venv").exists()  # refused before anything is installed
    assert fleet.current("box-a") == fleet.current("box-b") == "1.0.0"
    assert recap["box-c"]["failed"] == 0 and recap["box-c"]["changed"] == 0


def test_rolling_update_rolls_back_the_broken_host_only(fleet):
    """update.yml to 2.0.0 in batches of two; box-c (second batch) gets a release that crashes: rolled back, failed."""
    if not fleet.service:
        pytest.skip(fleet.no_service_reason)
    hv = fleet.inventory / "host_vars"
    hv.mkdir(exist_ok=True)
    (hv / f"{BROKEN_HOST}.yml").write_text(f"lpbf_edge_wheel: {fleet.broken_wheel}\n")
    try:
        t0 = time.monotonic()
        rc, out, recap = fleet.play("update.yml", "-e", "lpbf_edge_version=2.0.0", "-e", "lpbf_edge_serial=2",
                                    "-e", "lpbf_edge_max_fail_percentage=50")
    finally:
        (hv / f"{BROKEN_HOST}.yml").unlink()
    assert rc != 0, out[-4000:]
    assert out.count("PLAY [Update lpbf-edge (rolling)]") == 2  # serial: two batches
    assert recap[BROKEN_HOST]["failed"] == 1
    assert "Rolled back to 1.0.0" in out
    assert fleet.current(BROKEN_HOST) == "1.0.0"
    for h in HOSTS:
        if h != BROKEN_HOST:
            assert recap[h]["failed"] == 0
            assert fleet.current(h) == "2.0.0"
            assert Path(os.readlink(fleet.root(h) / "previous")).name == "1.0.0"
    # the rolled-back host runs its old release again and reports healthy
    for h in HOSTS:
        ctl = fleet.root(h) / "lpbf-edge-ctl"
        health = subprocess.run([str(ctl), "health"], capture_output=True, text=True, check=False)
        assert health.returncode == 0, (h, health.stdout, health.stderr)
    print(f"update.yml took {time.monotonic() - t0:.1f} s")


def test_first_broken_host_stops_the_rollout(fleet):
    """With the broken host in the first batch and max_fail_percentage 0, no other host is touched."""
    if not fleet.service:
        pytest.skip(fleet.no_service_reason)
    hv = fleet.inventory / "host_vars"
    (hv / "box-a.yml").write_text(f"lpbf_edge_wheel: {fleet.broken_wheel}\n")
    try:
        rc, out, recap = fleet.play("update.yml", "-e", "lpbf_edge_version=3.0.0", "-e", "lpbf_edge_serial=1")
    finally:
        (hv / "box-a.yml").unlink()
    assert rc != 0 and recap["box-a"]["failed"] == 1
    assert fleet.current("box-a") == "2.0.0"
    for h in ("box-b", "box-c"):
        assert not (fleet.root(h) / "releases" / "3.0.0").exists()
    assert fleet.current("box-b") == "2.0.0" and fleet.current("box-c") == "1.0.0"


def test_rollback_to_previous_and_named_release(fleet):
    """rollback.yml switches to the previous release, and to a named one; a missing name is refused."""
    if not fleet.service:
        pytest.skip(fleet.no_service_reason)
    rc, out, recap = fleet.play("rollback.yml", "--limit", "box-b")
    _assert_ok(rc, out, recap, hosts=("box-b",))
    assert fleet.current("box-b") == "1.0.0"
    assert Path(os.readlink(fleet.root("box-b") / "previous")).name == "2.0.0"
    rc, out, recap = fleet.play("rollback.yml", "--limit", "box-b", "-e", "lpbf_edge_rollback_to=2.0.0")
    _assert_ok(rc, out, recap, hosts=("box-b",))
    assert fleet.current("box-b") == "2.0.0"
    rc, out, recap = fleet.play("rollback.yml", "--limit", "box-b", "-e", "lpbf_edge_rollback_to=0.0.1")
    assert rc != 0 and "is not an installed release" in out
    assert fleet.current("box-b") == "2.0.0"


def test_install_baseline_is_learned_from_clean_frames(fleet, tmp_path):
    """lpbf_edge_baseline_frames: the frames go to the box, `calib baseline` learns baseline.json in the data dir, the
    config names it; a second run changes nothing; a missing frame is refused with its name."""
    import cv2

    from edge.analyze.baseline import load_baseline
    from edge.sim.build import plan_build, render_powder_frame
    from edge.sim.config import SimConfig

    plan = plan_build(2, 5, SimConfig(hr_size_px=512))
    frames = []
    for i in range(3):  # registered clean recoat frames, as the box archives them (recoat_lr.png)
        frames.append(tmp_path / f"clean_{i}.png")
        cv2.imwrite(str(frames[-1]), render_powder_frame(plan, i).lr)
    host, version = "box-a", fleet.current("box-a")
    hv = fleet.inventory / "host_vars"
    hv.mkdir(exist_ok=True)
    (hv / f"{host}.yml").write_text(json.dumps({"lpbf_edge_baseline_frames": [str(f) for f in frames]}))
    try:
        run = ("site.yml", "--limit", host, "-e", f"lpbf_edge_version={version}")
        rc, out, recap = fleet.play(*run)
        _assert_ok(rc, out, recap, hosts=(host,))
        base_file = fleet.data(host) / "baseline" / "baseline.json"
        base = load_baseline(base_file)
        assert base.n_frames == 3 and set(base.clean_scores) == {"line", "mark", "level"}
        assert f"baseline_path: {base_file}" in (fleet.root(host) / "releases" / version / "config.yaml").read_text()
        mtime = base_file.stat().st_mtime_ns
        rc, out, recap = fleet.play(*run)
        _assert_ok(rc, out, recap, hosts=(host,))
        assert recap[host]["changed"] == 0 and base_file.stat().st_mtime_ns == mtime, out[-3000:]
        (hv / f"{host}.yml").write_text(json.dumps({"lpbf_edge_baseline_frames": [str(tmp_path / "gone.png")]}))
        rc, out, recap = fleet.play(*run)
        assert rc != 0 and recap[host]["failed"] == 1 and "gone.png" in out and "do not exist" in out
    finally:
        (hv / f"{host}.yml").unlink()


def test_ansible_lint_production_profile():
    """The whole ansible/ tree is clean at ansible-lint's production profile."""
    lint = VENV_BIN / "ansible-lint"
    if not lint.exists():
        pytest.skip("ansible-lint is not installed in this venv")
    proc = subprocess.run([str(lint), "--offline", "--profile", "production", "ansible/"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
