"""Local stand-ins for the Hugging Face and ModelScope hub APIs: real HTTP servers on 127.0.0.1 that record
every request, keep the repositories and files pushed to them, and answer like the hubs do for the few
endpoints repository creation and a folder upload use.

Hugging Face (what huggingface_hub 2.x calls for ``create_repo`` and ``upload_folder``):

* ``POST /api/repos/create`` -> ``{"url"}``; 409 when the repository exists;
* ``GET /api/models/{repo}`` -> repository info (huggingface_hub asks after a refused create);
* ``POST /api/validate-yaml`` -> 400 when README.md's front matter is not a YAML mapping (the client asks before
  it uploads a README.md);
* ``POST /api/models/{repo}/preupload/{revision}`` -> every file ``uploadMode: regular``, so the client sends the
  contents inline in the commit (no LFS or xet storage is involved);
* ``POST /api/models/{repo}/commit/{revision}`` (NDJSON: a header line, then one ``file`` line per file with
  base64 contents) -> ``{"commitUrl", "commitOid"}``.

ModelScope (what modelscope 1.40's ``HubApi.create_repo`` and ``upload_folder`` call):

* ``POST /api/v1/models`` (``{"Path": owner, "Name": name, "Visibility": 1|5, ...}``);
* ``POST /api/v1/repos/models/{repo}/info/lfs/objects/batch`` -> an upload URL on this server per object;
* ``PUT /lfs/{oid}`` stores the blob;
* ``POST /api/v1/repos/models/{repo}/commit/{revision}`` (``{"commit_message", "actions": [...]}``: ``normal``
  files inline in base64, ``lfs`` files by sha256 of a stored blob).

Both check the bearer token against ``token`` (401 otherwise), answer 404 for unknown routes and repositories,
and ``fail[route] = (status, body)`` makes a route answer with that error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict  # lower-case names
    body: bytes

    def json(self):
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data, **headers) -> Reply:
        return cls(status, json.dumps(data).encode("utf-8"), {"Content-Type": "application/json", **headers})


class FakeHub:
    """Base: the HTTP server, the request log and the auth check; subclasses answer the routes."""

    def __init__(self, token: str = "good-token"):
        self.token = token
        self.requests: list[Request] = []
        self.repos: dict[str, dict] = {}  # repo id -> {"private": bool, ...}
        self.files: dict[str, dict[str, bytes]] = {}  # repo id -> path -> contents
        self.commits: list[dict] = []
        self.fail: dict[str, tuple[int, object]] = {}  # route name -> (status, body)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- server ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                parts = urlsplit(self.path)
                body = self._body()
                request = Request(self.command, unquote(parts.path), parse_qs(parts.query),
                                  {k.lower(): v for k, v in self.headers.items()}, body)
                with hub._lock:
                    hub.requests.append(request)
                    try:
                        reply = hub.answer(request)
                    except Exception as exc:  # a bug in the fake shows up as a 500 naming it
                        reply = Reply.json(500, {"error": f"fake hub: {type(exc).__name__}: {exc}"})
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- helpers for subclasses --------------------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        return auth == f"Bearer {self.token}"

    def failure(self, route: str) -> Reply | None:
        """The error ``fail[route]`` asks for, in the hub's own error shape; None to answer normally."""
        raise NotImplementedError

    def answer(self, request: Request) -> Reply:
        raise NotImplementedError

    def routes(self) -> list[str]:
        """``METHOD path`` of every request received, in order."""
        return [f"{r.method} {r.path}" for r in self.requests]


class FakeHfHub(FakeHub):
    """The Hugging Face hub API endpoints huggingface_hub uses to create a repository and upload a folder."""

    _REPO = r"/api/models/(?P<repo>[^/]+/[^/]+)"

    def __init__(self, token: str = "good-token"):
        super().__init__(token)
        self.validated: list[str] = []  # README.md texts the client asked the hub to validate

    def answer(self, request: Request) -> Reply:
        if not self.authorized(request):
            return Reply.json(401, {"error": "Invalid credentials in Authorization header"})
        path = request.path
        if request.method == "POST" and path == "/api/repos/create":
            return self.failure("create") or self._create(request)
        if request.method == "POST" and path == "/api/validate-yaml":
            return self.failure("validate") or self._validate(request)
        if (m := re.fullmatch(self._REPO + r"/preupload/(?P<rev>[^/]+)", path)) and request.method == "POST":
            return self.failure("preupload") or self._preupload(m["repo"], request)
        if (m := re.fullmatch(self._REPO + r"/commit/(?P<rev>[^/]+)", path)) and request.method == "POST":
            return self.failure("commit") or self._commit(m["repo"], m["rev"], request)
        if (m := re.fullmatch(self._REPO, path)) and request.method == "GET":
            return self.failure("info") or self._info(m["repo"])
        return Reply.json(404, {"error": f"fake hub: no route {request.method} {path}"})

    def failure(self, route: str) -> Reply | None:
        if route not in self.fail:
            return None
        status, message = self.fail[route]
        return Reply.json(status, {"error": str(message)}, **{"X-Error-Message": str(message)})

    def _missing(self, repo: str) -> Reply:
        return Reply.json(404, {"error": "Repository not found"}, **{"X-Error-Code": "RepoNotFound",
                                                                      "X-Error-Message": "Repository not found"})

    def _create(self, request: Request) -> Reply:
        data = request.json()
        repo = f"{data['organization']}/{data['name']}"
        if repo in self.repos:
            return Reply.json(409, {"error": "You already created this model repo", "url": f"{self.url}/{repo}"})
        self.repos[repo] = {"private": data.get("visibility") == "private", "type": data.get("type", "model")}
        self.files[repo] = {}
        return Reply.json(200, {"url": f"{self.url}/{repo}", "name": repo, "id": repo})

    def _validate(self, request: Request) -> Reply:
        """Parse the README's YAML front matter as the hub does before a commit: 400 when it is not YAML."""
        content = request.json()["content"]
        m = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        if m is not None:
            try:
                meta = yaml.safe_load(m.group(1))
            except yaml.YAMLError as exc:
                return Reply.json(400, {"errors": [{"message": f"invalid YAML: {exc}"}]})
            if not isinstance(meta, dict):
                return Reply.json(400, {"errors": [{"message": "metadata must be a mapping"}]})
        self.validated.append(content)
        return Reply.json(200, {"warnings": []})

    def _info(self, repo: str) -> Reply:
        if repo not in self.repos:
            return self._missing(repo)
        return Reply.json(200, {"id": repo, "private": self.repos[repo]["private"], "sha": "0" * 40,
                                "siblings": [{"rfilename": p} for p in self.files[repo]]})

    def _preupload(self, repo: str, request: Request) -> Reply:
        if repo not in self.repos:
            return self._missing(repo)
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                 for f in request.json()["files"]]
        return Reply.json(200, {"files": files, "commitOid": "0" * 40})

    def _commit(self, repo: str, revision: str, request: Request) -> Reply:
        if repo not in self.repos:
            return self._missing(repo)
        lines = [json.loads(line) for line in request.body.decode("utf-8").splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        added = {}
        for item in lines:
            if item["key"] == "file":
                value = item["value"]
                assert value["encoding"] == "base64"
                added[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] != "header":
                return Reply.json(400, {"error": f"fake hub: unsupported commit line {item['key']!r}"})
        self.files[repo].update(added)
        oid = hashlib.sha1(request.body).hexdigest()
        self.commits.append({"repo": repo, "revision": revision, "summary": header["summary"], "files": sorted(added)})
        return Reply.json(200, {"commitUrl": f"{self.url}/{repo}/commit/{oid}", "commitOid": oid,
                                "pullRequestUrl": None, "success": True})


class FakeModelScopeHub(FakeHub):
    """The ModelScope API endpoints modelscope's HubApi uses to create a model repository and upload a folder."""

    _REPO = r"/api/v1/repos/models/(?P<repo>[^/]+/[^/]+)"

    def __init__(self, token: str = "good-token"):
        super().__init__(token)
        self.blobs: dict[str, bytes] = {}

    def authorized(self, request: Request) -> bool:
        cookie = request.headers.get("cookie", "")
        return super().authorized(request) or f"m_session_id={self.token}" in cookie

    @staticmethod
    def envelope(data, status: int = 200, message: str = "") -> Reply:
        return Reply.json(status, {"Code": status, "Data": data, "Message": message, "Success": status == 200,
                                   "RequestId": "fake-request"})

    def failure(self, route: str) -> Reply | None:
        if route not in self.fail:
            return None
        status, message = self.fail[route]
        return self.envelope(None, status, str(message))

    def answer(self, request: Request) -> Reply:
        if not self.authorized(request):
            return self.envelope(None, 401, "user not logged in")
        path = request.path
        if request.method == "POST" and path == "/api/v1/models":
            return self.failure("create") or self._create(request)
        if (m := re.fullmatch(self._REPO + r"/info/lfs/objects/batch", path)) and request.method == "POST":
            return self.failure("lfs_batch") or self._lfs_batch(m["repo"], request)
        if (m := re.fullmatch(r"/lfs/(?P<oid>[0-9a-f]{64})", path)) and request.method == "PUT":
            return self.failure("lfs_put") or self._lfs_put(m["oid"], request)
        if (m := re.fullmatch(self._REPO + r"/commit/(?P<rev>[^/]+)", path)) and request.method == "POST":
            return self.failure("commit") or self._commit(m["repo"], m["rev"], request)
        return self.envelope(None, 404, f"fake hub: no route {request.method} {path}")

    def _create(self, request: Request) -> Reply:
        data = request.json()
        repo = f"{data['Path']}/{data['Name']}"
        if repo in self.repos:
            return self.envelope(None, 400, "Repository name already exists")
        self.repos[repo] = {"private": data.get("Visibility") == 1, "visibility": data.get("Visibility")}
        self.files[repo] = {}
        return self.envelope({"Path": data["Path"], "Name": data["Name"], "Visibility": data.get("Visibility")})

    def _lfs_batch(self, repo: str, request: Request) -> Reply:
        if repo not in self.repos:
            return self.envelope(None, 404, "Model does not exist")
        objects = [{"oid": o["oid"], "size": o["size"], "actions": {"upload": {"href": f"{self.url}/lfs/{o['oid']}"}}}
                   for o in request.json()["objects"] if o["oid"] not in self.blobs]
        return self.envelope({"objects": objects})

    def _lfs_put(self, oid: str, request: Request) -> Reply:
        if hashlib.sha256(request.body).hexdigest() != oid:
            return self.envelope(None, 400, "blob does not match its sha256")
        self.blobs[oid] = request.body
        return Reply.json(200, {})

    def _commit(self, repo: str, revision: str, request: Request) -> Reply:
        if repo not in self.repos:
            return self.envelope(None, 404, "Model does not exist")
        data = request.json()
        added = {}
        for action in data["actions"]:
            if action["type"] == "lfs":
                if action["sha256"] not in self.blobs:
                    return self.envelope(None, 400, f"lfs object of {action['path']} was never uploaded")
                added[action["path"]] = self.blobs[action["sha256"]]
            else:
                added[action["path"]] = base64.b64decode(action["content"])
        self.files[repo].update(added)
        self.commits.append({"repo": repo, "revision": revision, "summary": data["commit_message"],
                             "files": sorted(added)})
        return self.envelope({"CommitId": hashlib.sha1(request.body).hexdigest()})
