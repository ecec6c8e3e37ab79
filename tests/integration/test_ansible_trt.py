"""Ansible and the TensorRT runtime agree: the role builds the engines where, and as, the runtime reads them.

One localhost "Jetson": a fake GPU device node, the shipped model bundle, and the strict TensorRT/CUDA
stand-ins (tests/standins) on the release venv's path through lpbf_edge_venv_extra_paths, so the role's real
`lpbf-edge trt build` step runs. Then the release's own `lpbf-edge sr --backend tensorrt`, given only the
model path, must open every engine (it never builds) and super-resolve through the CUDA-graph loop.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from tests.integration.test_ansible import ANSIBLE, PLAYBOOK, VENV_BIN, _build_wheel

REPO = Path(__file__).resolve().parents[2]
STANDINS = REPO / "tests" / "standins"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PLAYBOOK.exists(), reason="ansible-core is not in this venv (pip install '.[fleet]')"),
]


def _inventory(tmp: Path, wheel: Path, gpu_node: Path) -> Path:
    root = tmp / "host" / "opt"
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "lpbf_edge_root": str(root), "lpbf_edge_data_dir": str(tmp / "host" / "data")}
    group = {
        "lpbf_edge_become": False, "lpbf_edge_install_system_packages": False, "lpbf_edge_manage_user": False,
        "lpbf_edge_user": pwd.getpwuid(os.getuid()).pw_name, "lpbf_edge_group": grp.getgrgid(os.getgid()).gr_name,
        "lpbf_edge_python": getattr(sys, "_base_executable", sys.executable),
        "lpbf_edge_pip_no_deps": True, "lpbf_edge_venv_with_pip": False, "lpbf_edge_pip_extras": [],
        "lpbf_edge_pip_extras_gpu": [],
        # the project's packages, then the stand-ins in place of JetPack's TensorRT and cuda-python
        "lpbf_edge_venv_extra_paths": [sysconfig.get_paths()["purelib"], str(STANDINS)],
        "lpbf_edge_gpu_device_paths": [str(gpu_node)],
        "lpbf_edge_wheel": str(wheel), "lpbf_edge_model_src": str(REPO / "models" / "default"),
        "lpbf_edge_version": "1.0.0", "lpbf_edge_service_manager": "none",
        "lpbf_edge_config": {"capture": {"webcam": "none"}, "sr": {"backend": "tensorrt"}},
    }
    inv = tmp / "hosts.yml"
    inv.write_text(json.dumps({"all": {"children": {"lpbf_edge": {"hosts": {"jetson-a": host}, "vars": group}}}}))
    return inv


def _play(tmp: Path, inventory: Path) -> tuple[int, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"), ANSIBLE_HOME=str(tmp / "ansible-home"),
               PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(PLAYBOOK), "-i", str(inventory), str(ANSIBLE / "site.yml")], capture_output=True,
                          text=True, env=env, cwd=ANSIBLE, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_role_builds_engines_where_the_runtime_reads_them(tmp_path):
    from edge.sr.bundle import load_bundle
    from edge.sr.trt_engines import engine_specs
    from trt_build.recipe import DEFAULT_BUCKETS, engine_dir

    gpu_node = tmp_path / "nvhost-ctrl-gpu"
    gpu_node.touch()
    wheel = _build_wheel(tmp_path / "build")
    inventory = _inventory(tmp_path, wheel, gpu_node)
    rc, out = _play(tmp_path, inventory)
    assert rc == 0, out[-4000:]
    assert "Build FP16 TensorRT engines for this GPU" in out
    rel = tmp_path / "host" / "opt" / "releases" / "1.0.0"
    model = rel / "model"
    manifest = json.loads((engine_dir(model) / "manifest.json").read_text())
    names = {s.name for s in engine_specs(load_bundle(model))}
    assert set(manifest["engines"]) == names
    assert all(tuple(e["buckets"]) == DEFAULT_BUCKETS for e in manifest["engines"].values())
    assert all(e["key"]["precision"] == "fp16" for e in manifest["engines"].values())
    assert (rel / "venv" / "pyvenv.cfg").read_text().count("include-system-site-packages = true") == 1

    # the release's own CLI, told only the model, finds and accepts every engine it needs and samples through them
    lr = np.random.default_rng(0).integers(0, 256, (24, 24), dtype=np.uint8)
    from PIL import Image

    Image.fromarray(lr).save(tmp_path / "layer.png")
    before = sorted(p.name for p in engine_dir(model).iterdir())
    cli = rel / "venv" / "bin" / "lpbf-edge"
    proc = subprocess.run([str(cli), "sr", str(tmp_path / "layer.png"), "--out", str(tmp_path / "sr"), "--model",
                           str(model), "--backend", "tensorrt"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert Image.open(tmp_path / "sr" / "layer.png").size == (96, 96)
    assert sorted(p.name for p in engine_dir(model).iterdir()) == before  # the runtime wrote nothing

    rc, out = _play(tmp_path, inventory)  # converge again: every key matches, nothing is rebuilt
    assert rc == 0, out[-4000:]
    assert "building:" not in out
