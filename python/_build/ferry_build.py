"""A PEP 517 build backend for the ferry package, standard library only.

pip builds the wheel with it (pyproject.toml: backend-path), so
`pip install ./python` needs neither setuptools nor a network. The wheel
holds the ferry/ folder as it is (ferry_pb2.py included: it is committed,
generated from proto/ferry.proto; tests/test_codec.py checks it is current),
the package metadata and a RECORD.
"""
import base64
import hashlib
import os
import tarfile
import zipfile

NAME = "ferry"
VERSION = "0.1.0"
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "py3-none-any"


def _metadata():
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    return ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n"
            "Summary: Client and worker for Ferry: Lua scripts calling async functions "
            "through a broker\nRequires-Python: >=3.9\nRequires-Dist: pyzmq\n"
            "Requires-Dist: protobuf>=3.20\nDescription-Content-Type: text/markdown\n\n%s"
            % (NAME, VERSION, readme))


def _package_files():
    root = os.path.join(HERE, NAME)
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield path, os.path.relpath(path, HERE).replace(os.sep, "/")


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (arcname, digest, len(data))


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist_info = "%s-%s.dist-info" % (NAME, VERSION)
    filename = "%s-%s-%s.whl" % (NAME, VERSION, TAG)
    records = []
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w",
                         zipfile.ZIP_DEFLATED) as whl:
        def add(arcname, data):
            whl.writestr(arcname, data)
            records.append(_record_line(arcname, data))
        for path, arcname in _package_files():
            with open(path, "rb") as f:
                add(arcname, f.read())
        add(dist_info + "/METADATA", _metadata().encode("utf-8"))
        add(dist_info + "/WHEEL", ("Wheel-Version: 1.0\nGenerator: ferry_build\n"
                                   "Root-Is-Purelib: true\nTag: %s\n" % TAG).encode())
        add(dist_info + "/top_level.txt", (NAME + "\n").encode())
        records.append(dist_info + "/RECORD,,")
        whl.writestr(dist_info + "/RECORD", "\n".join(records) + "\n")
    return filename


def build_sdist(sdist_directory, config_settings=None):
    base = "%s-%s" % (NAME, VERSION)
    filename = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as tar:
        for rel in ("pyproject.toml", "README.md", "_build/ferry_build.py"):
            tar.add(os.path.join(HERE, rel), arcname=base + "/" + rel)
        for path, arcname in _package_files():
            tar.add(path, arcname=base + "/" + arcname)
        info = _metadata().encode("utf-8")
        ti = tarfile.TarInfo(base + "/PKG-INFO")
        ti.size = len(info)
        import io
        tar.addfile(ti, io.BytesIO(info))
    return filename
