"""A stand-in for the Hugging Face Hub on 127.0.0.1: the endpoints huggingface_hub's upload and download
use (whoami, repo creation, preupload, LFS batch + basic PUT, commit, file resolve, repo info and tree listing
for snapshot_download), for model and dataset repos. Files are stored in memory; commits are counted so tests
can check idempotence. Loopback only. A dataset repo is kept under "datasets/<owner>/<name>" in ``repos`` and
``commits`` (a model repo under its plain id), as the Hub's URLs name them.

The real client runs against it with HF_HUB_DISABLE_XET=1 (Xet storage needs a CAS service this stand-in
does not emulate; the LFS path is the protocol's documented fallback).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def stored(kind: str | None, repo: str) -> str:
    """The key of a repo in HubState: "datasets/<id>" for a dataset repo, the plain id for a model repo."""
    return f"datasets/{repo}" if kind in ("dataset", "datasets") else repo


def is_lfs(path: str, size: int) -> bool:
    """What the Hub's default .gitattributes stores with LFS (the binary formats this project uploads)."""
    return path.endswith((".gguf", ".safetensors", ".parquet")) or size > 10_000_000


class HubState:
    def __init__(self, token: str, user: str = "tester", orgs: tuple[str, ...] = ("alphagate-org",)):
        self.token, self.user, self.orgs = token, user, orgs
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: dict[str, list[str]] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.cards: list[dict] = []  # validated model-card metadata
        self.dataset_cards: list[dict] = []  # validated dataset-card metadata
        self.lock = threading.Lock()


def make_handler(state: HubState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, code: int, payload=None, raw: bytes | None = None, headers: dict | None = None):
            data = raw if raw is not None else json.dumps(payload if payload is not None else {}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                self._send(401, {"error": "Invalid credentials in Authorization header"})
                return False
            return True

        def do_GET(self):  # noqa: N802
            state.requests.append(("GET", self.path))
            if self.path.startswith("/api/whoami"):
                if self._authorized():
                    self._send(200, {"name": state.user, "type": "user",
                                     "orgs": [{"name": o, "roleInOrg": "write"} for o in state.orgs],
                                     "auth": {"accessToken": {"displayName": "ci", "role": "write"}}})
                return
            m = re.match(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", self.path)
            if m:
                return self._resolve(stored(m.group(1) and "dataset", m.group(2)), m.group(3), m.group(4))
            m = re.match(r"^/api/(models|datasets)/([^/]+/[^/?]+)(?:/revision/[^/?]+)?(?:\?.*)?$", self.path)
            if m and stored(m.group(1), m.group(2)) in state.repos:
                repo, key = m.group(2), stored(m.group(1), m.group(2))
                return self._send(200, {"id": repo, "modelId": repo, "sha": state.commits[key][-1], "private": False,
                                        "siblings": [{"rfilename": p} for p in sorted(state.repos[key])]})
            m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/tree/[^/?]+(?:\?.*)?$", self.path)
            if m and stored(m.group(1), m.group(2)) in state.repos:
                return self._tree(stored(m.group(1), m.group(2)))
            self._send(404, {"error": f"not found: {self.path}"})

        do_HEAD = do_GET  # noqa: N815

        def _tree(self, key: str):
            """Every file of the repo (the recursive listing snapshot_download asks for; one page)."""
            entries = []
            for path, data in sorted(state.repos[key].items()):
                entry = {"type": "file", "path": path, "size": len(data), "oid": git_blob_oid(data)}
                if is_lfs(path, len(data)):
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                entries.append(entry)
            self._send(200, entries)

        def _resolve(self, repo: str, revision: str, path: str):
            files = state.repos.get(repo)
            if files is None or path not in files:
                return self._send(404, {"error": "Entry not found"}, headers={"X-Error-Code": "EntryNotFound"})
            data = files[path]
            commit = state.commits[repo][-1]
            self._send(200, raw=data, headers={"X-Repo-Commit": commit, "ETag": f'"{git_blob_oid(data)}"'})

        def do_PUT(self):  # noqa: N802
            state.requests.append(("PUT", self.path))
            m = re.match(r"^/lfs-upload/([0-9a-f]{64})$", self.path)
            data = self._body()
            if not m or hashlib.sha256(data).hexdigest() != m.group(1):
                return self._send(400, {"error": "sha256 mismatch"})
            state.lfs[m.group(1)] = data
            self._send(200, {})

        def do_POST(self):  # noqa: N802
            state.requests.append(("POST", self.path))
            body = self._body()
            if self.path.endswith(".git/info/lfs/objects/batch"):
                return self._lfs_batch(json.loads(body))
            if not self._authorized():
                return
            if self.path == "/api/repos/create":
                return self._create(json.loads(body))
            if self.path == "/api/validate-yaml":
                return self._validate_yaml(json.loads(body))
            m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/preupload/([^/]+)$", self.path)
            if m:
                return self._preupload(stored(m.group(1), m.group(2)), json.loads(body))
            m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/commit/([^/]+)$", self.path)
            if m:
                return self._commit(stored(m.group(1), m.group(2)), body)
            self._send(404, {"error": f"not found: {self.path}"})

        def _create(self, payload: dict):
            name = f"{payload.get('organization') or state.user}/{payload['name']}"
            repo, owner = stored(payload.get("type"), name), name.split("/")[0]
            if owner != state.user and owner not in state.orgs:
                return self._send(403, {"error": f"You don't have the rights to create a repo under {owner}"})
            with state.lock:
                if repo in state.repos:
                    return self._send(409, {"error": "You already created this model repo", "url": f"/{repo}"})
                state.repos[repo], state.commits[repo] = {}, [hashlib.sha1(repo.encode()).hexdigest()]
            self._send(200, {"url": f"http://{self.headers['Host']}/{repo}", "name": name})

        def _validate_yaml(self, payload: dict):
            import yaml

            match = re.match(r"^---\n(.*?)\n---\n", payload.get("content", ""), re.S)
            try:
                meta = yaml.safe_load(match.group(1)) if match else {}
            except yaml.YAMLError as exc:
                return self._send(400, {"error": f"invalid YAML metadata: {exc}"})
            if not isinstance(meta, dict):
                return self._send(400, {"error": "YAML metadata must be a mapping"})
            (state.dataset_cards if payload.get("repoType") == "dataset" else state.cards).append(meta)
            self._send(200, {"errors": [], "warnings": []})

        def _preupload(self, repo: str, payload: dict):
            files = state.repos.get(repo, {})
            out = []
            for f in payload["files"]:
                lfs = is_lfs(f["path"], f["size"])
                existing = files.get(f["path"])
                oid = None
                if existing is not None:
                    oid = hashlib.sha256(existing).hexdigest() if lfs else git_blob_oid(existing)
                out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                            "oid": oid})
            self._send(200, {"files": out})

        def _lfs_batch(self, payload: dict):
            objects = []
            for o in payload["objects"]:
                entry = {"oid": o["oid"], "size": o["size"]}
                if o["oid"] not in state.lfs:
                    entry["actions"] = {"upload": {"href": f"http://{self.headers['Host']}/lfs-upload/{o['oid']}"}}
                objects.append(entry)
            self._send(200, {"transfer": "basic", "objects": objects})

        def _commit(self, repo: str, body: bytes):
            if repo not in state.repos:
                return self._send(404, {"error": "Repository not found"})
            lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
            staged = {}
            for line in lines:
                value = line["value"]
                if line["key"] == "file":
                    staged[value["path"]] = base64.b64decode(value["content"])
                elif line["key"] == "lfsFile":
                    if value["oid"] not in state.lfs:
                        return self._send(400, {"error": f"LFS object {value['oid']} was never uploaded"})
                    staged[value["path"]] = state.lfs[value["oid"]]
            with state.lock:
                state.repos[repo].update(staged)
                oid = hashlib.sha1(json.dumps(sorted((p, git_blob_oid(d)) for p, d in
                                                     state.repos[repo].items())).encode()).hexdigest()
                state.commits[repo].append(oid)
            host = self.headers["Host"]
            self._send(200, {"commitUrl": f"http://{host}/{repo}/commit/{oid}", "commitOid": oid,
                             "pullRequestUrl": None})

    return Handler


class HubStandIn:
    def __init__(self, token: str):
        self.state = HubState(token)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
