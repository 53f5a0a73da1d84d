#!/usr/bin/env python3
"""A fake Hugging Face Hub on 127.0.0.1 for the engine's download tests (Python 3 standard library only).

It serves folders as Hub repos with the Hub's paths and headers, as huggingface_hub reads them:
  GET  /api/{models|datasets}/{org}/{name}/revision/{rev}  {"id", "sha", "siblings": [{"rfilename", "size"}]}
  HEAD/GET /[datasets/]{org}/{name}/resolve/{rev}/{file}     X-Repo-Commit; a regular file: 200 with
       ETag "<git blob sha1>"; an LFS file (*.safetensors, *.bin, or over 1 kB): 302 to /lfs/{sha256} with
       X-Linked-Etag "<sha256>" and X-Linked-Size (localhost, not 127.0.0.1: another host, as the LFS store is)
  GET  /api/{models|datasets}/{org}/{name}/tree/{rev}      the file list newer huggingface_hub releases read
  GET  /lfs/{sha256}                                          the bytes, with Range (206) support
Options:
  --repo model|dataset:org/name=DIR   a repo (repeatable); its commit is the sha1 of its id and files
  --gated org/name                    401 (X-Error-Code: GatedRepo) unless "Authorization: Bearer good-token"
  --cut-after N                       the first GET of each LFS blob sends N bytes and closes the connection
  --corrupt FILE                      LFS bytes of that file name are served with their first byte flipped
  --port-file PATH                    where the chosen port is written (the server picks a free one)
  --log PATH                          one line per request: METHOD PATH range=<Range or -> auth=<yes|no>
Used by tests/unit/hub/hub_download_test.cpp and scripts/fixtures/make_hub_cache_fixture.py.
"""
import argparse
import hashlib
import http.server
import json
import os
import threading

LFS_SUFFIXES = (".safetensors", ".bin", ".parquet")


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, kind, repo_id, folder):
        self.kind, self.id, self.files = kind, repo_id, {}
        for root, _, names in os.walk(folder):
            for n in sorted(names):
                full = os.path.join(root, n)
                rel = os.path.relpath(full, folder).replace(os.sep, "/")
                with open(full, "rb") as f:
                    self.files[rel] = f.read()
        h = hashlib.sha1(repo_id.encode())
        for rel in sorted(self.files):
            h.update(rel.encode() + hashlib.sha256(self.files[rel]).digest())
        self.sha = h.hexdigest()

    @staticmethod
    def is_lfs(name, data):
        return name.endswith(LFS_SUFFIXES) or len(data) > 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", action="append", default=[])
    ap.add_argument("--gated", action="append", default=[])
    ap.add_argument("--cut-after", type=int, default=0)
    ap.add_argument("--corrupt", action="append", default=[])
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log")
    a = ap.parse_args()
    repos, lfs = {}, {}
    for spec in a.repo:
        kind, rest = spec.split(":", 1)
        rid, folder = rest.split("=", 1)
        r = Repo(kind, rid, folder)
        repos[(kind, rid)] = r
        for name, data in r.files.items():
            if Repo.is_lfs(name, data):
                served = data
                if name in a.corrupt:
                    served = bytes([data[0] ^ 0xFF]) + data[1:]
                lfs[hashlib.sha256(data).hexdigest()] = served
    cut_done = set()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def record(self):
            if a.log:
                with lock, open(a.log, "a") as f:
                    f.write("%s %s range=%s auth=%s\n" % (self.command, self.path, self.headers.get("Range", "-"),
                                                          "yes" if self.headers.get("Authorization") else "no"))

        def reply(self, status, headers=(), body=b""):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def error(self, status, code, message):
            body = json.dumps({"error": message}).encode()
            self.reply(status, [("X-Error-Code", code), ("X-Error-Message", message),
                                ("Content-Type", "application/json")], body)

        def find(self, kind, rid):
            r = repos.get((kind, rid))
            if r is None:
                self.error(404, "RepoNotFound", "Repository Not Found for url: %s." % self.path)
                return None
            if rid in a.gated and self.headers.get("Authorization") != "Bearer good-token":
                status = 401 if not self.headers.get("Authorization") else 403
                self.error(status, "GatedRepo",
                           "Access to model %s is restricted. You must have access to it and be authenticated "
                           "to access it. Please log in." % rid)
                return None
            return r

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            self.record()
            parts = self.path.split("?")[0].split("/")[1:]
            if parts[:1] == ["api"] and len(parts) >= 6 and parts[4] == "tree":  # newer huggingface_hub
                kind = {"models": "model", "datasets": "dataset"}.get(parts[1])
                r = self.find(kind, parts[2] + "/" + parts[3])
                if r is None:
                    return
                entries = []
                for n, d in sorted(r.files.items()):
                    e = {"type": "file", "path": n, "size": len(d), "oid": git_blob_sha1(d)}
                    if Repo.is_lfs(n, d):
                        e["lfs"] = {"oid": hashlib.sha256(d).hexdigest(), "size": len(d), "pointerSize": 134}
                    entries.append(e)
                return self.reply(200, [("Content-Type", "application/json")], json.dumps(entries).encode())
            if parts[:1] == ["api"] and len(parts) >= 6 and parts[4] == "revision":
                kind = {"models": "model", "datasets": "dataset"}.get(parts[1])
                r = self.find(kind, parts[2] + "/" + parts[3])
                if r is None:
                    return
                rev = "/".join(parts[5:])
                if rev not in ("main", r.sha):
                    return self.error(404, "RevisionNotFound", "Invalid rev id: %s" % rev)
                body = json.dumps({"id": r.id, "sha": r.sha, "siblings": [
                    {"rfilename": n, "size": len(d)} for n, d in sorted(r.files.items())]}).encode()
                return self.reply(200, [("Content-Type", "application/json")], body)
            if parts[:1] == ["lfs"] and len(parts) == 2:
                data = lfs.get(parts[1])
                if data is None:
                    return self.reply(404)
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(data):
                        return self.reply(416, [("Content-Range", "bytes */%d" % len(data))])
                body = data[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                with lock:
                    cut = a.cut_after and parts[1] not in cut_done and len(body) > a.cut_after
                    if cut:
                        cut_done.add(parts[1])
                if cut:
                    self.wfile.write(body[:a.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)
                return
            kind = "model"
            if parts[:1] == ["datasets"]:
                kind, parts = "dataset", parts[1:]
            if len(parts) >= 5 and parts[2] == "resolve":
                r = self.find(kind, parts[0] + "/" + parts[1])
                if r is None:
                    return
                if parts[3] not in ("main", r.sha):
                    return self.error(404, "RevisionNotFound", "Invalid rev id: %s" % parts[3])
                name = "/".join(parts[4:])
                data = r.files.get(name)
                if data is None:
                    return self.error(404, "EntryNotFound", "%s does not exist on %s" % (name, parts[3]))
                common = [("X-Repo-Commit", r.sha)]
                if Repo.is_lfs(name, data):
                    sha = hashlib.sha256(data).hexdigest()
                    return self.reply(302, common + [("X-Linked-Etag", '"%s"' % sha),
                                                     ("X-Linked-Size", str(len(data))),
                                                     ("ETag", '"%s"' % git_blob_sha1(data)),
                                                     ("Location", "http://localhost:%d/lfs/%s" % (port, sha))])
                return self.reply(200, common + [("ETag", '"%s"' % git_blob_sha1(data))], data)
            self.error(404, "EntryNotFound", "no route for %s" % self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.rename(tmp, a.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
