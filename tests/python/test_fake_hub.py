"""Checks crates/moat-testkit/fixtures/fake_hf_hub.py against the real
``huggingface_hub`` client, and replays the requests of the ``hf-hub`` Rust
crate (0.4.3, sync/ureq API) with http.client.

Run:
    python3 -m venv tests/python/.venv
    tests/python/.venv/bin/pip install -r tests/python/requirements.txt
    tests/python/.venv/bin/python -m pytest tests/python -q

huggingface_hub reads HF_ENDPOINT / HF_HOME / HF_TOKEN / HF_HUB_OFFLINE at
import time, so every client scenario runs in its own subprocess with its own
environment.
"""

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER = REPO_ROOT / "crates" / "moat-testkit" / "fixtures" / "fake_hf_hub.py"
REPO_ID = "org/repo"
MIB = 1 << 20
FILES = ["model.gguf", "config.json", "tokenizer.json", "sub/dir/extra.txt"]


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, root: Path, contents: dict, commit: str):
        self.root = root
        self.contents = contents
        self.commit = commit

    def etag(self, name: str) -> str:
        data = self.contents[name]
        return hashlib.sha256(data).hexdigest() if len(data) > MIB else git_blob_sha1(data)


@pytest.fixture
def repo(tmp_path) -> Repo:
    """A repo built with the server's own --make-repo CLI."""
    src = tmp_path / "src"
    src.mkdir()
    contents = {
        "model.gguf": b"GGUF" + os.urandom(3 * MIB - 4),  # 3 MiB => LFS-like
        "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "n": 1}).encode(),
        "tokenizer.json": json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}}}).encode(),
        "sub/dir/extra.txt": b"hello from a subfolder\n",
    }
    specs = []
    for name, data in contents.items():
        p = src / name.replace("/", "_")
        p.write_bytes(data)
        specs.append(f"{p}={name}")
    root = tmp_path / "hub"
    out = subprocess.run(
        [sys.executable, str(SERVER), "--make-repo", str(root), REPO_ID, *specs],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    assert out[0] == f"REPO {root / 'org' / 'repo'}"
    assert out[1].startswith("COMMIT ") and len(out[1].split()[1]) == 40
    return Repo(root, contents, out[1].split()[1])


@contextmanager
def hub_server(root: Path, *args: str):
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--root", str(root), "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), (line, proc.stderr.read() if proc.poll() is not None else "")
        yield int(line.split()[1])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("server did not exit on SIGTERM")
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        assert rc == 0, err


PRELUDE = textwrap.dedent(
    """
    import json, os, sys, traceback
    def _emit(obj):
        sys.stdout.write("\\nRESULT " + json.dumps(obj) + "\\n")
    def _exc(e):
        return {"exc": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__],
                "msg": str(e)[:800],
                "status": getattr(getattr(e, "response", None), "status_code", None)}
    """
)


def run_client(code: str, hf_home: Path, port=None, **env_extra) -> dict:
    """Run `code` (which must call _emit(...)) in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="*", no_proxy="*",
    )
    if port is not None:
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{port}"
    env.update({k: v for k, v in env_extra.items() if v is not None})
    p = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
                       env=env, capture_output=True, text=True, timeout=180)
    lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, f"client produced no result (rc={p.returncode})\n{p.stdout}\n{p.stderr}"
    res = json.loads(lines[-1][len("RESULT "):])
    res["_stderr"] = p.stderr
    return res


def read_log(path: Path) -> list:
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def cache_dir(hf_home: Path) -> Path:
    return hf_home / "hub" / "models--org--repo"


DOWNLOAD_EACH = """
from huggingface_hub import hf_hub_download
res = {}
for name in %r:
    try:
        res[name] = {"path": hf_hub_download(%r, name)}
    except Exception as e:
        res[name] = _exc(e)
_emit(res)
""" % (FILES, REPO_ID)


def assert_cached(repo: Repo, hf_home: Path, paths: dict):
    cdir = cache_dir(hf_home)
    assert (cdir / "refs" / "main").read_text() == repo.commit
    for name, data in repo.contents.items():
        p = Path(paths[name])
        assert p == cdir / "snapshots" / repo.commit / name
        assert p.read_bytes() == data, name
        assert p.is_symlink()
        blob = (p.parent / os.readlink(p)).resolve()
        assert blob == (cdir / "blobs" / repo.etag(name)).resolve(), name
        assert blob.read_bytes() == data
    # no leftovers
    assert not list((cdir / "blobs").glob("*.incomplete"))


# ----------------------------------------------------------------------------
# huggingface_hub scenarios
# ----------------------------------------------------------------------------


def test_hf_hub_download_each_file_lands_in_standard_cache(repo, tmp_path):
    hf_home = tmp_path / "hf_home"
    log = tmp_path / "log.jsonl"
    with hub_server(repo.root, "--log", str(log)) as port:
        res = run_client(DOWNLOAD_EACH, hf_home, port)
    paths = {}
    for name in FILES:
        assert "path" in res[name], res[name]
        paths[name] = res[name]["path"]
    assert_cached(repo, hf_home, paths)
    entries = read_log(log)
    # huggingface_hub: a HEAD on /resolve/main then a plain GET (no Range), all answered directly
    heads = [e for e in entries if e["method"] == "HEAD"]
    gets = [e for e in entries if e["method"] == "GET"]
    assert len(heads) == len(FILES) and all(e["status"] == 200 for e in heads)
    assert len(gets) == len(FILES) and all(e["status"] == 200 and e["range"] is None for e in gets)
    assert sum(e["bytes"] for e in gets) == sum(len(d) for d in repo.contents.values())
    assert all(set(e) >= {"method", "path", "range", "auth", "status", "bytes"} for e in entries)


def test_snapshot_download_and_api(repo, tmp_path):
    hf_home = tmp_path / "hf_home"
    log = tmp_path / "log.jsonl"
    code = """
    from huggingface_hub import snapshot_download, HfApi
    api = HfApi()
    info = api.model_info(%(r)r, files_metadata=True)
    res = {
        "snapshot": snapshot_download(%(r)r),
        "sha": info.sha,
        "id": info.id,
        "siblings": sorted(s.rfilename for s in info.siblings),
        "lfs": {s.rfilename: (s.lfs.sha256 if s.lfs else None) for s in info.siblings},
        "sizes": {s.rfilename: s.size for s in info.siblings},
        "files": sorted(api.list_repo_files(%(r)r)),
        "tree_top": sorted([t.path, type(t).__name__] for t in api.list_repo_tree(%(r)r)),
        "exists": [api.file_exists(%(r)r, "config.json"), api.file_exists(%(r)r, "nope.bin")],
    }
    _emit(res)
    """ % {"r": REPO_ID}
    with hub_server(repo.root, "--log", str(log)) as port:
        res = run_client(code, hf_home, port)
    assert "snapshot" in res, res
    snap = Path(res["snapshot"])
    assert snap == cache_dir(hf_home) / "snapshots" / repo.commit
    got = sorted(str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_file())
    assert got == sorted(FILES)
    for name, data in repo.contents.items():
        assert (snap / name).read_bytes() == data
    assert_cached(repo, hf_home, {n: str(snap / n) for n in FILES})
    assert res["sha"] == repo.commit and res["id"] == REPO_ID
    assert res["siblings"] == sorted(FILES) == res["files"]
    assert res["lfs"]["model.gguf"] == hashlib.sha256(repo.contents["model.gguf"]).hexdigest()
    assert res["lfs"]["config.json"] is None
    assert res["sizes"] == {n: len(d) for n, d in repo.contents.items()}
    assert res["tree_top"] == [["config.json", "RepoFile"], ["model.gguf", "RepoFile"],
                               ["sub", "RepoFolder"], ["tokenizer.json", "RepoFile"]]
    assert res["exists"] == [True, False]
    paths = [e["path"].split("?")[0] for e in read_log(log)]
    assert f"/api/models/{REPO_ID}/revision/main" in paths
    assert f"/api/models/{REPO_ID}/tree/{repo.commit}" in paths
    assert f"/{REPO_ID}/resolve/{repo.commit}/model.gguf" in paths  # snapshot downloads pin the commit


def test_offline_cache_after_server_stopped(repo, tmp_path):
    hf_home = tmp_path / "hf_home"
    snap_code = """
    from huggingface_hub import snapshot_download
    _emit({"snapshot": snapshot_download(%r)})
    """ % REPO_ID
    with hub_server(repo.root) as port:
        first = run_client(snap_code, hf_home, port)
    assert "snapshot" in first, first
    # server is gone now; the endpoint still points at its (dead) port
    offline = run_client(DOWNLOAD_EACH, hf_home, port, HF_HUB_OFFLINE="1")
    for name in FILES:
        assert offline[name].get("path") == str(Path(first["snapshot"]) / name), offline[name]
        assert Path(offline[name]["path"]).read_bytes() == repo.contents[name]
    snap_off = run_client(snap_code, hf_home, port, HF_HUB_OFFLINE="1")
    assert snap_off.get("snapshot") == first["snapshot"], snap_off
    # Without HF_HUB_OFFLINE the client also falls back to the cache on a connection error.
    online_dead = run_client(DOWNLOAD_EACH, hf_home, port)
    assert all(online_dead[n].get("path") == offline[n]["path"] for n in FILES), online_dead
    # ...but a file never downloaded is a LocalEntryNotFoundError offline
    missing = run_client("""
    from huggingface_hub import hf_hub_download
    try:
        hf_hub_download(%r, "never.bin"); _emit({"ok": True})
    except Exception as e:
        _emit(_exc(e))
    """ % REPO_ID, hf_home, port, HF_HUB_OFFLINE="1")
    assert missing.get("exc") == "LocalEntryNotFoundError", missing


def test_token_mode(repo, tmp_path):
    log = tmp_path / "log.jsonl"
    code = """
    from huggingface_hub import hf_hub_download, snapshot_download
    res = {}
    try:
        res["file"] = {"path": hf_hub_download(%(r)r, "model.gguf")}
    except Exception as e:
        res["file"] = _exc(e)
    try:
        res["snap"] = {"path": snapshot_download(%(r)r)}
    except Exception as e:
        res["snap"] = _exc(e)
    _emit(res)
    """ % {"r": REPO_ID}
    with hub_server(repo.root, "--token", "s3cret", "--log", str(log)) as port:
        no_tok = run_client(code, tmp_path / "h1", port)
        wrong = run_client(code, tmp_path / "h2", port, HF_TOKEN="nope")
        n_before_ok = len(read_log(log))
        ok = run_client(code, tmp_path / "h3", port, HF_TOKEN="s3cret")
    for key in ("file", "snap"):
        # no token => 401 + X-Error-Code: GatedRepo => GatedRepoError (a RepositoryNotFoundError)
        assert no_tok[key].get("exc") == "GatedRepoError", no_tok[key]
        assert "RepositoryNotFoundError" in no_tok[key]["mro"] and no_tok[key]["status"] == 401
        # wrong token => 401 "Invalid credentials in Authorization header" => plain HfHubHTTPError
        assert wrong[key].get("exc") == "HfHubHTTPError" and wrong[key]["status"] == 401, wrong[key]
        assert "path" in ok[key], ok[key]
    assert Path(ok["file"]["path"]).read_bytes() == repo.contents["model.gguf"]
    entries = read_log(log)
    assert all(e["status"] == 401 for e in entries[:n_before_ok])
    assert all(e["auth"] and e["status"] in (200, 206) for e in entries[n_before_ok:])
    assert not (tmp_path / "h1" / "hub" / "models--org--repo" / "snapshots").exists()


def test_missing_file_repo_and_revision(repo, tmp_path):
    code = """
    from huggingface_hub import hf_hub_download, snapshot_download
    res = {}
    for key, fn in [
        ("file", lambda: hf_hub_download(%(r)r, "does/not/exist.bin")),
        ("repo", lambda: hf_hub_download("org/nope", "config.json")),
        ("repo_snap", lambda: snapshot_download("org/nope")),
        ("revision", lambda: hf_hub_download(%(r)r, "config.json", revision="v9")),
    ]:
        try:
            res[key] = {"path": fn()}
        except Exception as e:
            res[key] = _exc(e)
    _emit(res)
    """ % {"r": REPO_ID}
    hf_home = tmp_path / "hf_home"
    with hub_server(repo.root) as port:
        res = run_client(code, hf_home, port)
    assert res["file"]["exc"] == "RemoteEntryNotFoundError", res["file"]
    assert "EntryNotFoundError" in res["file"]["mro"] and res["file"]["status"] == 404
    for key in ("repo", "repo_snap"):
        assert res[key]["exc"] == "RepositoryNotFoundError" and res[key]["status"] == 404, res[key]
    assert res["revision"]["exc"] == "RevisionNotFoundError", res["revision"]
    # the X-Repo-Commit on the 404 lets the client cache the absence
    assert (cache_dir(hf_home) / ".no_exist" / repo.commit / "does" / "not" / "exist.bin").exists()


def test_fail_after_bytes_retry(repo, tmp_path):
    """The first full GET of each file is cut after N bytes (premature EOF).

    huggingface_hub's http_get catches the httpx RemoteProtocolError, logs
    "Trying to resume download...", sleeps 1 s and retries inside the same
    hf_hub_download call (up to 5 times). It only resumes from the bytes it has
    flushed to disk, and it reads the body in 10 MiB chunks (DOWNLOAD_CHUNK_SIZE),
    so for this 3 MiB file nothing was flushed and the retry is a plain full GET
    without Range. Nothing survives across calls (the temp file is unique per
    call and deleted on failure)."""
    n = MIB
    hf_home = tmp_path / "hf_home"
    log = tmp_path / "log.jsonl"
    code = """
    from huggingface_hub import hf_hub_download
    res = {}
    for i in range(2):
        try:
            res[str(i)] = {"path": hf_hub_download(%r, "model.gguf", force_download=True)}
        except Exception as e:
            res[str(i)] = _exc(e)
    _emit(res)
    """ % REPO_ID
    with hub_server(repo.root, "--fail-after-bytes", str(n), "--log", str(log)) as port:
        res = run_client(code, hf_home, port)
        others = run_client(DOWNLOAD_EACH, tmp_path / "hf_home2", port)
    data = repo.contents["model.gguf"]
    for i in ("0", "1"):
        assert "path" in res[i], res[i]
        assert Path(res[i]["path"]).read_bytes() == data
    gets = [e for e in read_log(log) if e["method"] == "GET" and e["path"].endswith("model.gguf")]
    # call 1: the cut GET, then the client's own retry (full, no Range); call 2: a plain full GET;
    # then the fresh cache of `others`.
    assert gets[0]["range"] is None and gets[0]["truncated"] and gets[0]["bytes"] == n
    assert [(g["range"], g["status"], g["bytes"], g["truncated"]) for g in gets[1:]] == \
        [(None, 200, len(data), False)] * 3
    assert "Trying to resume download" in res["_stderr"]
    for name in FILES:
        assert Path(others[name]["path"]).read_bytes() == repo.contents[name]
    small_gets = [e for e in read_log(log) if e["method"] == "GET" and not e["path"].endswith("model.gguf")]
    assert small_gets and not any(e["truncated"] for e in small_gets)  # files <= N are never cut


def test_fail_after_bytes_range_resume_big_file(tmp_path):
    """With more than 10 MiB received before the cut, huggingface_hub resumes
    with `Range: bytes=10485760-` (what it had flushed) and gets a 206."""
    data = os.urandom(12 * MIB)
    src = tmp_path / "big.gguf"
    src.write_bytes(data)
    root = tmp_path / "hub"
    subprocess.run([sys.executable, str(SERVER), "--make-repo", str(root), "org/big", str(src)],
                   check=True, capture_output=True)
    log = tmp_path / "log.jsonl"
    code = """
    from huggingface_hub import hf_hub_download
    try:
        _emit({"path": hf_hub_download("org/big", "big.gguf")})
    except Exception as e:
        _emit(_exc(e))
    """
    with hub_server(root, "--fail-after-bytes", str(11 * MIB), "--log", str(log)) as port:
        res = run_client(code, tmp_path / "hf_home", port)
    assert Path(res["path"]).read_bytes() == data, res
    gets = [(e["range"], e["status"], e["bytes"], e["truncated"]) for e in read_log(log) if e["method"] == "GET"]
    assert gets == [(None, 200, 11 * MIB, True),
                    (f"bytes={10 * MIB}-", 206, 2 * MIB, False)]


def test_lfs_redirect_mode(repo, tmp_path):
    hf_home = tmp_path / "hf_home"
    log = tmp_path / "log.jsonl"
    with hub_server(repo.root, "--lfs-redirect", "--token", "tok", "--log", str(log)) as port:
        res = run_client(DOWNLOAD_EACH, hf_home, port, HF_TOKEN="tok")
    assert_cached(repo, hf_home, {n: res[n]["path"] for n in FILES})
    entries = read_log(log)
    cdn = [e for e in entries if e["path"].startswith("/_cdn/")]
    # HEAD stops at the cross-host 302; the GET goes to the CDN URL without the token
    assert [e["method"] for e in cdn] == ["GET"] and not cdn[0]["auth"] and cdn[0]["status"] == 200
    assert any(e["status"] == 302 and e["method"] == "HEAD" for e in entries)


def test_make_repo_commit_is_deterministic(repo, tmp_path):
    root2 = tmp_path / "hub2"
    srcs = []
    for name, data in repo.contents.items():
        p = tmp_path / ("copy_" + name.replace("/", "_"))
        p.write_bytes(data)
        srcs.append(f"{p}={name}")
    out = subprocess.run([sys.executable, str(SERVER), "--make-repo", str(root2), "other/name", *srcs],
                         check=True, capture_output=True, text=True).stdout
    assert f"COMMIT {repo.commit}" in out.splitlines()
    with hub_server(root2) as port:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/api/models/other/name")
        assert json.loads(c.getresponse().read())["sha"] == repo.commit


# ----------------------------------------------------------------------------
# The hf-hub Rust crate's flow (0.4.3 sync API), replayed with http.client
# ----------------------------------------------------------------------------


def _get(port, path, headers=None, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    try:
        body = r.read()
    except http.client.IncompleteRead as e:
        body = e.partial
        r.incomplete = True
    c.close()
    return r, body


def test_hf_hub_crate_flow(repo, tmp_path):
    data = repo.contents["model.gguf"]
    n = 1000
    with hub_server(repo.root, "--fail-after-bytes", str(n)) as port:
        url = f"/{REPO_ID}/resolve/main/model.gguf"
        # metadata(): GET with Range: bytes=0-0, no redirects followed
        r, body = _get(port, url, {"Range": "bytes=0-0"})
        assert r.status == 206 and body == data[:1]
        assert r.getheader("x-repo-commit") == repo.commit
        etag = (r.getheader("x-linked-etag") or r.getheader("etag")).replace('"', "")
        assert etag == hashlib.sha256(data).hexdigest()
        assert r.getheader("content-range") == f"bytes 0-0/{len(data)}"
        # download_from(): GET Range: bytes=0- ; the first one is cut after n bytes
        r, part = _get(port, url, {"Range": "bytes=0-"})
        assert r.status == 206 and getattr(r, "incomplete", False) and len(part) == n
        # resume from the .part length
        r, rest = _get(port, url, {"Range": f"bytes={len(part)}-"})
        assert r.status == 206 and r.getheader("content-range") == f"bytes {n}-{len(data) - 1}/{len(data)}"
        assert part + rest == data
        # a finished .part asks for bytes=size- => 416 (as S3 would)
        r, _ = _get(port, url, {"Range": f"bytes={len(data)}-"})
        assert r.status == 416 and r.getheader("content-range") == f"bytes */{len(data)}"
        # small (non-LFS) file: etag is the git blob sha1, no x-linked-*
        r, body = _get(port, f"/{REPO_ID}/resolve/{repo.commit}/config.json", {"Range": "bytes=0-0"})
        assert r.status == 206 and r.getheader("x-linked-etag") is None
        assert r.getheader("etag") == '"%s"' % git_blob_sha1(repo.contents["config.json"])
        # info(): GET /api/models/{repo}/revision/main
        r, body = _get(port, f"/api/models/{REPO_ID}/revision/main")
        info = json.loads(body)
        assert info["sha"] == repo.commit
        assert sorted(s["rfilename"] for s in info["siblings"]) == sorted(FILES)
        # errors
        r, body = _get(port, f"/{REPO_ID}/resolve/main/nope.bin", {"Range": "bytes=0-0"})
        assert r.status == 404 and r.getheader("x-error-code") == "EntryNotFound" and "error" in json.loads(body)
        r, _ = _get(port, "/org/nope/resolve/main/x", {"Range": "bytes=0-0"})
        assert r.status == 404 and r.getheader("x-error-code") == "RepoNotFound"

    with hub_server(repo.root, "--lfs-redirect") as port:
        # metadata() with a CDN redirect: headers come from the 302, size from the Location's Content-Range
        r, _ = _get(port, f"/{REPO_ID}/resolve/main/model.gguf", {"Range": "bytes=0-0"})
        assert r.status == 302 and r.getheader("x-repo-commit") == repo.commit
        assert r.getheader("x-linked-etag").strip('"') == hashlib.sha256(data).hexdigest()
        loc = r.getheader("location")
        assert loc.startswith(f"http://localhost:{port}/_cdn/")
        r, body = _get(port, loc.split(str(port), 1)[1], {"Range": "bytes=0-0"})
        assert r.status == 206 and r.getheader("content-range") == f"bytes 0-0/{len(data)}"
