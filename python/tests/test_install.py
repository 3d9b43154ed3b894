"""`pip install ./python` works offline (the build backend is in the tree): into a
folder with --target, and into a venv that sees Debian's python3-zmq and
python3-protobuf. The installed copy then runs a script against a real broker."""
import os
import subprocess
import sys

import pytest

from conftest import PACKAGE_ROOT

needs_pip = pytest.mark.skipif(subprocess.run([sys.executable, "-m", "pip", "--version"],
                                               capture_output=True).returncode != 0,
                                reason="needs pip (Debian: python3-pip)")

PROBE = """
import sys, ferry
assert ferry.__file__.startswith(sys.argv[1]), ferry.__file__
c = ferry.Client(sys.argv[2])
print(c.run("return 6 * 7", timeout=5).value)
"""


def pip(*args, python=sys.executable):
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run([python, "-m", "pip", "install", "-q", *args], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def run_probe(python, where, stack, env=None):
    r = subprocess.run([python, "-c", PROBE, where, stack.clients], capture_output=True,
                       text=True, timeout=30, cwd="/", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "42"


@needs_pip
def test_pip_install_target(stack, tmp_path):
    stack.broker()
    stack.engine()
    target = str(tmp_path / "site")
    pip("--no-deps", "--target", target, PACKAGE_ROOT)
    assert os.path.exists(os.path.join(target, "ferry", "ferry_pb2.py"))
    run_probe(sys.executable, target, stack, env=dict(os.environ, PYTHONPATH=target))


@needs_pip
def test_pip_install_venv(stack, tmp_path):
    venv = str(tmp_path / "venv")
    r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("no venv module (Debian: python3-venv): " + r.stderr[-200:])
    stack.broker()
    stack.engine()
    python = os.path.join(venv, "bin", "python")
    pip(PACKAGE_ROOT, python=python)  # its dependencies are Debian's, seen by the venv
    run_probe(python, venv, stack, env={k: v for k, v in os.environ.items()
                                        if k != "PYTHONPATH"})


def test_backend_metadata_is_pyproject():
    """The in-tree backend writes the metadata itself: it must say what pyproject.toml says."""
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(PACKAGE_ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    sys.path.insert(0, os.path.join(PACKAGE_ROOT, "_build"))
    try:
        import ferry_build
    finally:
        sys.path.pop(0)
    import ferry
    assert (ferry_build.NAME, ferry_build.VERSION) == (project["name"], project["version"])
    assert ferry.__version__ == project["version"]
    meta = ferry_build._metadata()
    for dep in project["dependencies"]:
        assert "Requires-Dist: %s\n" % dep in meta
    assert "Requires-Python: %s\n" % project["requires-python"] in meta
