#!/usr/bin/env python3
"""test_larderctl.py - larderctl, the command-line client for the admin API, against a running larder.

Every subcommand makes a round trip: status (human and --json, checked
against /_larder/stats), health (ready, and not ready once upstream stopped
answering), metrics (the exposition, parsed), purge in each form (the counts
it prints, and the purged objects really gone: their next read is a MISS
while the others stay HITs). Every error path must give exactly one line on
stderr, "larderctl: ...", nothing on stdout, the documented exit code, and
never the token: no token (5), a bad token (4), a reader purging all (5),
an unreachable URL or a server that never answers (3), bad flags (2),
--all without --yes (2, and nothing purged), a missing token file (2), an
error answer with a GCS message (7).

batch: each of create, show, ls, extend and rm round-trips against
/_larder/v1/batches (what it prints checked against the API's own answer),
create without --id prints a generated id and nothing else, objects read and
written with X-Larder-Batch show up in show and in rm's totals, rm
--delete-outputs deletes the scratch outputs upstream, and an upstream that
refuses those deletions is one line naming how many (7, the batch kept).
Errors: no such batch for show, extend and rm (7), a taken id (7), a ttl or
quota the server refuses (7, its message), a missing ID (2), a bad token (4).

larderctl is found next to LARDER_BIN (ctest builds both), or at
LARDERCTL_BIN; the test SKIPs, saying so, when it is not there.
"""

import json
import os
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_batches  # noqa: E402  (rfc3339_ms only)
import test_cache as tc  # noqa: E402  (helpers only)
import test_metrics  # noqa: E402  (parse_metrics only)
import test_purge  # noqa: E402  (its fixture)

OWNER, READER, OTHER = tc.OWNER, tc.READER, tc.OTHER
BAD_TOKEN = "not-a-token-3f9c1e"

# The documented exit codes (larderctl --help, README "larderctl").
OK, USAGE, UNREACHABLE, UNAUTHENTICATED, FORBIDDEN, NOT_READY, SERVER_ERROR, NOT_FOUND, CONFLICT = \
    0, 2, 3, 4, 5, 6, 7, 8, 9


def larderctl_bin():
    return os.environ.get("LARDERCTL_BIN") or os.path.join(os.path.dirname(harness.larder_bin()), "larderctl")


def size_text(n):
    """larderctl's format_bytes: "512 B", "2.9 KiB", "10.0 GiB"."""
    if n < 1024:
        return "%d B" % n
    value, units = n / 1024, ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    while value >= 1023.95 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return "%.1f %s" % (value, units[0])


def closed_port():
    """A port nothing listens on (bound, then released)."""
    return harness.free_port()


class CtlCalls:
    """Runs larderctl with an environment of the test's choosing: none of the caller's LARDER_* or proxies."""

    def ctl(self, *args, token=None, url=None, env=None, expect=OK):
        e = {k: v for k, v in os.environ.items()
             if not k.startswith("LARDER_") and not k.lower().endswith("_proxy")}
        e["LARDER_URL"] = url if url is not None else self.larder.url
        if token is not None:
            e["LARDER_TOKEN"] = token
        e.update(env or {})
        e = {k: v for k, v in e.items() if v is not None}
        proc = subprocess.run([larderctl_bin()] + list(args), env=e, capture_output=True, timeout=60)
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        for marker in harness.SANITIZER_MARKERS:
            self.assertNotIn(marker, err, "sanitizer report from larderctl %s" % (args,))
        self.assertEqual(proc.returncode, expect, "larderctl %s\nstdout: %s\nstderr: %s" % (args, out, err))
        self.assertNotIn(BAD_TOKEN, out + err, "larderctl printed the token")
        return out, err

    def ok(self, *args, **kw):
        """A successful call: exit 0 and nothing on stderr; returns stdout."""
        out, err = self.ctl(*args, **kw)
        self.assertEqual(err, "", args)
        return out

    def fails(self, expect, *args, **kw):
        """A failing call: the exit code, nothing on stdout, exactly one line on stderr; returns that line."""
        out, err = self.ctl(*args, expect=expect, **kw)
        self.assertEqual(out, "", args)
        self.assertTrue(err.endswith("\n"), (args, err))
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, (args, err))
        self.assertTrue(lines[0].startswith("larderctl: "), (args, err))
        return lines[0]

    def server_message(self, method, path, headers, body=None):
        """error.message of larder's own answer to the request larderctl makes: what larderctl must print."""
        if body is not None:
            headers = dict(headers, **{"Content-Type": "application/json"})
        _, _, answer = self.larder.request(method, path, body=body, headers=headers)
        message = json.loads(answer)["error"]["message"]
        self.assertTrue(message)
        return message


class LarderctlTest(CtlCalls, test_purge.PurgeFixture):
    """The purge fixture's five objects in an otherwise empty cache (a HIT is a HIT: ttl policy)."""

    # -- status, health, metrics ----------------------------------------------------------------

    def test_status_human_and_json(self):
        stats = self.stats()
        out = self.ok("status", token="owner")                      # the token from LARDER_TOKEN
        self.assertEqual(self.ok("status", "--token", "owner"), out)  # and from --token
        lines = out.splitlines()
        labels = [line[:18].strip() for line in lines]
        self.assertEqual(labels, ["cache", "store", "objects", "evicted", "chunk faults", "fills", "upload sessions",
                                  "access decisions"], out)
        self.assertTrue(all(len(line) > 18 and line[17] == " " and line[18] != " " for line in lines),
                        "values start in one column:\n" + out)
        self.assertIn("enabled", lines[0])
        self.assertRegex(lines[1], r"^store +\d+\.\d KiB used of 10\.0 GiB \(0\.0%\)$")
        self.assertRegex(lines[2], r"^objects +5 \(%d chunks?\)$" % stats["chunks"])
        self.assertRegex(lines[5], r"^fills +%d started, " % stats["fills_started"])
        self.assertRegex(lines[7], r"owner \d+, grant \d+, public \d+, denied \d+, unauthenticated \d+$")

        out = self.ok("status", "--json", token="owner")
        self.assertTrue(out.startswith("{\n  \""), "pretty-printed:\n" + out)
        doc = json.loads(out)
        now = self.stats()
        self.assertEqual(list(doc), list(now), "the server's keys, in the server's order")
        for key in ("budget", "used_bytes", "objects", "chunks", "cache_enabled"):
            self.assertEqual(doc[key], now[key], key)

    def test_health_ready(self):
        self.assertEqual(self.ok("health"), "alive, ready\n")  # no token needed
        doc = json.loads(self.ok("--json", "health"))
        self.assertEqual(doc, {"healthz": {"status": "ok"}, "readyz": {"status": "ready"}})

    def test_metrics_prints_the_exposition(self):
        out = self.ok("metrics", "--token", "owner")
        self.assertIn("# TYPE larder_requests_total counter\n", out)
        self.assertTrue(out.endswith("\n"))
        samples = test_metrics.parse_metrics(out)
        self.assertEqual(test_metrics.sample(samples, "larder_store_objects"), 5)
        self.assertEqual(test_metrics.sample(samples, "larder_store_budget_bytes"), self.stats()["budget"])
        self.fails(USAGE, "metrics", "--json", token="owner")

    # -- purge -----------------------------------------------------------------------------------

    def test_usage(self):
        """Each user's line matches /_larder/v1/usage; a user reads their own, everyone's is for admins."""
        everyone = json.loads(self.ok("usage", "--json", token="owner"))["users"]
        lines = self.ok("usage", token="owner").splitlines()
        self.assertEqual(len(lines), len(everyone))
        mine = json.loads(self.ok("usage", "--user", tc.READER_EMAIL, "--json", token="reader"))
        status, _, body = self.larder.request("GET", "/_larder/v1/usage?user=" + tc.READER_EMAIL, headers=READER)
        self.assertEqual((status, mine), (200, json.loads(body)))
        self.assertEqual(mine["cached_bytes"], 5000)  # reader@ filled r/1
        line = self.ok("usage", "--user", tc.READER_EMAIL, token="reader")
        self.assertTrue(line.startswith(tc.READER_EMAIL) and "cached 4.9 KiB" in line, line)
        self.fails(FORBIDDEN, "usage", token="reader")
        self.fails(FORBIDDEN, "usage", "--user", tc.OWNER_EMAIL, token="reader")

    def test_purge_by_user_own_objects(self):
        out = self.ok("purge", "--user", tc.READER_EMAIL, token="reader")  # a user may purge their own
        self.assertEqual(out, "purged 1 object (4.9 KiB)\n")
        self.assertEqual(self.cached(), set(self.sizes) - {(self.bucket, "r/1")})

    def test_purge_by_bucket_and_prefix(self):
        out = self.ok("purge", "--bucket", self.bucket, "--prefix", "a/", token="owner")
        self.assertEqual(out, "purged 2 objects (2.9 KiB)\n")
        self.assertEqual(self.cached(), set(self.sizes) - {(self.bucket, "a/1"), (self.bucket, "a/2")})

    def test_purge_by_bucket(self):
        out = self.ok("purge", "--bucket=" + self.bucket, token="owner")
        self.assertEqual(out, "purged 4 objects (10.7 KiB)\n")  # 11000 bytes
        self.assertEqual(self.cached(), {(self.other_bucket, "x")})

    def test_purge_by_object_json(self):
        out = self.ok("purge", "--object", "gs://%s/x" % self.other_bucket, "--json", token="owner")
        self.assertEqual(json.loads(out), {"objects": 1, "bytes": 4000})
        self.assertEqual(self.cached(), set(self.sizes) - {(self.other_bucket, "x")})

    def test_purge_all(self):
        out = self.ok("purge", "--all", "--yes", "--token", "owner")
        self.assertEqual(out, "purged 5 objects (14.6 KiB)\n")  # 15000 bytes
        harness.wait_until(lambda: self.stats()["objects"] == 0, timeout=10)
        self.assertEqual(self.cached(), set())

    # -- errors: one line, the documented code ---------------------------------------------------

    def test_refusals_by_the_server(self):
        line = self.fails(FORBIDDEN, "status")  # no token at all
        self.assertIn("status: 403 Forbidden: " + self.server_message("GET", "/_larder/stats", {}), line)
        self.assertTrue(line.endswith("(no token given: use --token, --token-file or LARDER_TOKEN)"), line)
        self.fails(FORBIDDEN, "purge", "--all", "--yes")
        line = self.fails(UNAUTHENTICATED, "status", "--token", BAD_TOKEN)
        bad = {"Authorization": "Bearer " + BAD_TOKEN}
        self.assertIn("status: 401 Unauthorized: " + self.server_message("GET", "/_larder/stats", bad), line)
        self.fails(UNAUTHENTICATED, "metrics", token=BAD_TOKEN)
        self.fails(FORBIDDEN, "metrics", token="reader")
        line = self.fails(FORBIDDEN, "purge", "--all", "--yes", token="reader")
        refusal = self.server_message("POST", "/_larder/v1/purge", READER, b'{"all": true}')
        self.assertIn("purge: 403 Forbidden: " + refusal, line)
        self.assertNotIn("no token given", line)
        self.fails(FORBIDDEN, "purge", "--user", tc.OWNER_EMAIL, token="reader")  # not their own
        # Another error from larder: its GCS error message and the status (a URL with a path under /_larder/).
        line = self.fails(NOT_FOUND, "status", token="owner", url=self.larder.url + "/_larder/nowhere")
        nowhere = self.server_message("GET", "/_larder/nowhere/_larder/stats", OWNER)
        self.assertIn("status: 404 Not Found: " + nowhere, line)
        # Something that is not larder at all (the emulator: an XML 404): the status and the URL.
        line = self.fails(NOT_FOUND, "status", token="owner", url=self.emulator.base_url)
        self.assertIn("404 Not Found from %s/_larder/stats" % self.emulator.base_url, line)
        self.assertEqual(self.cached(), set(self.sizes), "a refused purge dropped something")

    def test_unreachable_server(self):
        url = "http://127.0.0.1:%d" % closed_port()
        for args in (("status",), ("health",), ("metrics",), ("purge", "--all", "--yes")):
            line = self.fails(UNREACHABLE, *args, token="owner", url=url)
            self.assertIn("could not reach larder at %s" % url, line)
        # --url wins over LARDER_URL.
        self.fails(UNREACHABLE, "health", "--url", url)
        line = self.fails(UNREACHABLE, "health", url="http://no-such-host.invalid:8080")
        self.assertIn("no-such-host.invalid", line)
        # A server that accepts the connection and never answers: --timeout gives up.
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(1)
            url = "http://127.0.0.1:%d" % silent.getsockname()[1]
            line = self.fails(UNREACHABLE, "health", "--timeout", "1", url=url)
            self.assertIn("could not reach larder at %s" % url, line)
            self.assertIn("timed out", line.lower())

    def test_default_url(self):
        """Without --url and LARDER_URL larderctl asks http://127.0.0.1:8080."""
        try:
            socket.create_connection(("127.0.0.1", 8080), timeout=1).close()
            return  # something listens there: nothing to learn from the error
        except OSError:
            pass
        line = self.fails(UNREACHABLE, "health", env={"LARDER_URL": None})
        self.assertIn("could not reach larder at http://127.0.0.1:8080", line)

    def test_bad_flags(self):
        for args in ((), ("bogus",), ("status", "extra"), ("status", "--bogus"), ("--all", "purge"), ("-x", "health"),
                     ("purge",), ("purge", "--user", "a", "--bucket", "b"), ("purge", "--prefix", "a/"),
                     ("purge", "--object", "b/o"), ("purge", "--object", "gs://b/"), ("purge", "--user", ""),
                     ("purge", "--user"), ("purge", "--user", "--all"), ("purge", "--all=yes", "--yes"),
                     ("purge", "--user", "a", "--user", "b"), ("status", "--timeout", "0"),
                     ("status", "--timeout", "soon"), ("status", "--url", "ftp://host"), ("status", "--url", "nohost"),
                     ("status", "--url", "http://user:pw@127.0.0.1:1"), ("status", "--url", "http://127.0.0.1:1/?q"),
                     ("status", "--token", "two words"), ("status", "--token", "t", "--token-file", "/dev/null")):
            self.fails(USAGE, *args, token="owner")
        # A mistyped option with a value is named without it: it may be the token.
        line = self.fails(USAGE, "status", "--tokne=" + BAD_TOKEN)  # ctl() checks BAD_TOKEN is not printed
        self.assertIn("unknown option --tokne ", line)
        self.assertEqual(self.cached(), set(self.sizes))

    def test_purge_all_needs_yes(self):
        line = self.fails(USAGE, "purge", "--all", token="owner")
        self.assertIn("--yes", line)
        self.assertEqual(self.cached(), set(self.sizes), "--all without --yes purged")

    # -- the token -------------------------------------------------------------------------------

    def token_file(self, name, text, mode=0o600):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def test_token_file(self):
        path = self.token_file("owner.tok", "  owner \nsecond line\n")
        self.assertIn("objects", self.ok("status", "--token-file", path))
        # A file others may read still works, with one warning line that names it and not the token.
        exposed = self.token_file("exposed.tok", "owner\n", 0o644)
        out, err = self.ctl("status", "--token-file", exposed)
        self.assertIn("objects", out)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("readable by others", err)
        self.assertIn(exposed, err)
        # Flags win over the environment: --token-file (and --token) over LARDER_TOKEN.
        self.assertIn("objects", self.ok("status", "--token-file", path, token="reader"))
        self.assertIn("objects", self.ok("status", "--token", "owner", token="reader"))
        self.fails(FORBIDDEN, "status", token="reader")
        line = self.fails(USAGE, "status", "--token-file", os.path.join(self.workdir, "missing.tok"))
        self.assertIn("missing.tok", line)
        # A name with a newline in it still makes one line (fails() checks that).
        self.fails(USAGE, "status", "--token-file", os.path.join(self.workdir, "two\nlines.tok"))
        self.fails(USAGE, "status", "--token-file", self.token_file("empty.tok", "\n"))
        self.fails(USAGE, "status", "--token-file", self.workdir)  # a directory
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    # -- help ------------------------------------------------------------------------------------

    def test_help(self):
        text = self.ok("--help")
        for command in ("status", "health", "metrics", "purge"):
            self.assertIn("\n  %s " % command, text)
            own = self.ok(command, "--help")
            self.assertTrue(own.startswith("usage: larderctl [GLOBAL OPTIONS] %s" % command), own)
            self.assertEqual(self.ok("help", command), own)
        for code in range(0, 8):
            self.assertRegex(text, r"\n  %d  \S" % code)
        self.assertEqual(self.ok("-h"), text)
        self.assertEqual(self.ok("help"), text)
        self.assertIn("--yes", self.ok("purge", "--help"))


class LarderctlReadinessTest(CtlCalls, tc.CacheTestCase):
    """health once upstream stopped answering (as test_metrics.ReadinessTest): alive, not ready, exit 6."""

    larder_config = {"upstream": {"connect_timeout_ms": 500, "response_timeout_ms": 2000}}

    def test_health_not_ready(self):
        self.put_object("r.bin", data=b"r" * 100)
        self.assertEqual(self.get(self.meta_path("r.bin"), OWNER).status, 200)  # the token is validated now
        self.assertEqual(self.ok("health"), "alive, ready\n")
        port = self.emulator.port
        self.emulator.stop()
        try:
            self.assertIn(self.get(self.media("r.bin"), OWNER).status, (502, 503, 504))
            out, err = self.ctl("health", expect=NOT_READY)
            self.assertEqual((out, err), ("alive, not ready: upstream did not answer the last request sent to it\n",
                                          ""))
            out, err = self.ctl("health", "--json", expect=NOT_READY)
            doc = json.loads(out)
            self.assertEqual(doc["readyz"]["status"], "unready")
            self.assertIn("upstream", doc["readyz"]["reason"])
            self.assertEqual(doc["healthz"], {"status": "ok"})
            self.assertIn("objects", self.ok("status", token="owner"), "status works while not ready")
        finally:
            type(self).emulator = harness.Emulator.again_on(self.workdir, port)  # where larder's upstream was
        self.emulator.create_bucket(self.bucket)
        self.put_object("r.bin", data=b"r" * 100)
        self.assertEqual(self.get(self.media("r.bin"), OWNER).status, 200)
        self.assertEqual(self.ok("health"), "alive, ready\n")


class LarderctlBatchTest(CtlCalls, tc.CacheTestCase):
    """larderctl batch against /_larder/v1/batches; each test starts with no batches at all."""

    larder_config = {"cache": {"default_policy": "ttl:300"}}

    def setUp(self):
        super().setUp()
        for b in self.api("GET", "", OWNER)["batches"]:  # owner@ is an admin: it lists everyone's
            self.larder.request("DELETE", "/_larder/v1/batches/" + b["id"], headers=OWNER)
        self.assertEqual(self.api("GET", "", OWNER), {"batches": []})

    def api(self, method, path, headers):
        """The API's own answer (200), to check what larderctl printed against."""
        status, _, answer = self.larder.request(method, "/_larder/v1/batches" + path, headers=headers)
        self.assertEqual(status, 200, answer[:300])
        return json.loads(answer)

    def shown(self, batch_id, token="reader"):
        """`batch show ID --json`, which must be the API's answer."""
        doc = json.loads(self.ok("batch", "show", batch_id, "--json", token=token))
        self.assertEqual(doc, self.api("GET", "/" + batch_id, {"Authorization": "Bearer " + token}))
        return doc

    @staticmethod
    def batch_fields(doc):
        """The fields of a batch that create, extend and ls answer (show adds its objects and written totals)."""
        return {k: v for k, v in doc.items()
                if k not in ("objects", "objects_truncated", "written_objects", "written_bytes")}

    def upload(self, batch_id, name, data):
        """Writes name through larder in the batch, as owner@ (the bucket's owner: reader@ may not write)."""
        r = self.get("/upload/storage/v1/b/%s/o?uploadType=media&name=%s" % (self.bucket, name),
                     dict(OWNER, **{"X-Larder-Batch": batch_id, "Content-Type": "application/octet-stream"}),
                     method="POST", body=data)
        self.assertEqual(r.status, 200, r)

    def assertExpiresIn(self, doc, seconds, before):
        expires = test_batches.rfc3339_ms(doc["expires_at"])
        self.assertGreaterEqual(expires, before + seconds * 1000 - 1000, doc)
        self.assertLessEqual(expires, time.time() * 1000 + seconds * 1000 + 1000, doc)

    def test_create_show_ls_extend_rm(self):
        scratch = ["gs://%s/tmp/n42/" % self.bucket, "gs://%s/tmp/n42-b/" % self.bucket]
        before = time.time() * 1000
        out = self.ok("batch", "create", "--id", "nightly-42", "--ttl", "10m", "--scratch", scratch[0],
                      "--scratch=" + scratch[1], "--quota", "10GiB", token="reader")
        self.assertEqual(out, "nightly-42\n")
        doc = self.shown("nightly-42")
        self.assertExpiresIn(doc, 600, before)
        self.assertEqual({k: v for k, v in doc.items() if k not in ("created_at", "expires_at")},
                         {"id": "nightly-42", "owner": tc.READER_EMAIL, "ttl": 600, "scratch_prefixes": scratch,
                          "quota_bytes": 10 << 30, "pinned_objects": 0, "pinned_bytes": 0, "objects": [],
                          "objects_truncated": False, "written_objects": 0, "written_bytes": 0})
        self.assertEqual(self.ok("batch", "show", "nightly-42", token="reader"),
                         "id:       nightly-42\n"
                         "owner:    reader@example.com\n"
                         "created:  %s\n"
                         "expires:  %s\n"
                         "ttl:      600 s\n"
                         "scratch:  %s\n"
                         "scratch:  %s\n"
                         "quota:    10.0 GiB\n"
                         "pinned:   0 objects (0 B)\n"
                         "written:  0 objects (0 B)\n"
                         "objects:  none\n" % (doc["created_at"], doc["expires_at"], scratch[0], scratch[1]))

        self.assertEqual(self.ok("batch", "ls", token="reader"),
                         "nightly-42               reader@example.com           expires %s, pinned 0 objects (0 B)\n"
                         % doc["expires_at"])
        self.assertEqual(json.loads(self.ok("batch", "ls", "--json", token="reader")),
                         {"batches": [self.batch_fields(doc)]})
        self.assertEqual(self.ok("batch", "ls", token="other"), "", "another user sees reader's batch")
        self.assertEqual([line.split()[0] for line in self.ok("batch", "ls", token="owner").splitlines()],
                         ["nightly-42"])  # an admin sees everyone's

        # extend prints the new expiry and nothing else: TTL from now, or the batch's own ttl from now.
        before = time.time() * 1000
        out = self.ok("batch", "extend", "nightly-42", "--ttl", "1h", token="reader")
        doc = self.shown("nightly-42")
        self.assertEqual(out, doc["expires_at"] + "\n")
        self.assertExpiresIn(doc, 3600, before)
        self.assertEqual(doc["ttl"], 600)
        before = time.time() * 1000
        out = self.ok("batch", "extend", "nightly-42", token="reader")
        doc = self.shown("nightly-42")
        self.assertEqual(out, doc["expires_at"] + "\n")
        self.assertExpiresIn(doc, 600, before)
        before = time.time() * 1000
        out = json.loads(self.ok("batch", "extend", "nightly-42", "--ttl", "7200", "--json", token="reader"))
        doc = self.shown("nightly-42")
        self.assertEqual(out, self.batch_fields(doc))
        self.assertExpiresIn(doc, 7200, before)

        out = self.ok("batch", "rm", "nightly-42", token="reader")
        self.assertEqual(out, "ended nightly-42: pinned 0 objects (0 B), wrote 0 objects (0 B)\n")
        self.assertEqual(self.api("GET", "", READER), {"batches": []})
        self.assertEqual(self.ok("batch", "ls", token="reader"), "")

    def test_create_with_a_generated_id(self):
        out = self.ok("batch", "create", token="reader")
        self.assertRegex(out, r"^b-[0-9a-f]{16}\n$")
        first = out[:-1]
        doc = self.shown(first)
        self.assertEqual((doc["owner"], doc["ttl"], doc["scratch_prefixes"], doc["quota_bytes"]),
                         (tc.READER_EMAIL, 3600, [], 0))  # batches.default_ttl, and no quota of its own
        self.assertEqual(self.ok("batch", "show", first, token="reader").splitlines()[4:],
                         ["ttl:      3600 s", "quota:    none", "pinned:   0 objects (0 B)",
                          "written:  0 objects (0 B)", "objects:  none"])
        created = json.loads(self.ok("batch", "create", "--json", token="reader"))
        self.assertRegex(created["id"], r"^b-[0-9a-f]{16}$")
        self.assertNotEqual(created["id"], first)
        self.assertEqual(created, self.batch_fields(self.shown(created["id"])))
        self.assertEqual(sorted(b["id"] for b in self.api("GET", "", READER)["batches"]),
                         sorted([first, created["id"]]))
        ended = json.loads(self.ok("batch", "rm", first, "--json", token="reader"))
        self.assertEqual(ended, dict(self.batch_fields(doc), written_objects=0, written_bytes=0, outputs_deleted=0))

    def test_objects_read_and_written_then_rm_delete_outputs(self):
        self.assertEqual(self.ok("batch", "create", "--id", "run-1", "--scratch", "gs://%s/tmp/run-1/" % self.bucket,
                                 token="owner"), "run-1\n")
        self.put_object("in/a", data=b"a" * 3000)
        r = self.get(self.media("in/a"), dict(OWNER, **{"X-Larder-Batch": "run-1"}))
        self.assertEqual((r.status, r.x_cache), (200, "MISS"), r)
        self.upload("run-1", "tmp/run-1/part-0", b"p" * 4000)  # a scratch output
        self.upload("run-1", "out/final", b"f" * 5000)         # written in the batch, not under its scratch prefix
        self.settle()
        doc = self.shown("run-1", token="owner")
        self.assertEqual(sorted((o["url"], o["bytes"], o["read"], o["written"]) for o in doc["objects"]),
                         [("gs://%s/in/a" % self.bucket, 3000, True, False),
                          ("gs://%s/out/final" % self.bucket, 5000, False, True),
                          ("gs://%s/tmp/run-1/part-0" % self.bucket, 4000, False, True)])
        # Pinned bytes are what the store holds of them: the data and its metadata.
        self.assertEqual((doc["pinned_objects"], doc["written_objects"], doc["written_bytes"]), (3, 2, 9000))
        self.assertGreaterEqual(doc["pinned_bytes"], 12000)
        pinned = size_text(doc["pinned_bytes"])
        sizes = {3000: "2.9 KiB", 4000: "3.9 KiB", 5000: "4.9 KiB"}
        marks = {(True, False): "read", (False, True): "written"}
        objects = ["  %-10s %-12s %s" % (sizes[o["bytes"]], marks[(o["read"], o["written"])], o["url"])
                   for o in doc["objects"]]  # in the server's order
        self.assertEqual(self.ok("batch", "show", "run-1", token="owner").splitlines()[5:],
                         ["scratch:  gs://%s/tmp/run-1/" % self.bucket, "quota:    none",
                          "pinned:   3 objects (%s)" % pinned, "written:  2 objects (8.8 KiB)", "objects:"] + objects)
        self.assertEqual(self.ok("batch", "ls", token="owner"),
                         "run-1                    owner@example.com            expires %s, pinned 3 objects (%s)\n"
                         % (doc["expires_at"], pinned))

        out = self.ok("batch", "rm", "run-1", "--delete-outputs", token="owner")
        self.assertEqual(out, "ended run-1: pinned 3 objects (%s), wrote 2 objects (8.8 KiB), deleted 1 output\n"
                         % pinned)
        self.assertEqual(self.direct(self.media("tmp/run-1/part-0"), OWNER).status, 404, "the output stayed")
        for name, data in (("out/final", b"f" * 5000), ("in/a", b"a" * 3000)):
            self.assertEqual(self.object_bytes(name), data, name)
        self.assertEqual(self.api("GET", "", OWNER), {"batches": []})

    def test_rm_delete_outputs_upstream_refuses(self):
        """Upstream refuses the deletions: one line with how many, exit 7, and the batch stays for a retry."""
        self.ok("batch", "create", "--id", "keep", "--scratch", "gs://%s/tmp/k/" % self.bucket, token="owner")
        self.upload("keep", "tmp/k/0", b"0" * 1000)
        self.upload("keep", "tmp/k/1", b"1" * 2000)
        self.settle()
        self.emulator.faults(method="DELETE", fail_nth={"n": 1, "status": 403, "count": 1000})
        try:
            line = self.fails(SERVER_ERROR, "batch", "rm", "keep", "--delete-outputs", token="owner")
        finally:
            self.emulator.clear_faults()
        doc = self.shown("keep", token="owner")
        first = doc["objects"][0]["url"]  # in the server's order
        self.assertEqual(line, "larderctl: batch rm: 502 Bad Gateway: upstream did not delete 2 outputs (first %s: "
                               "403); the batch stays, and rm --delete-outputs can be retried" % first)
        for name, data in (("tmp/k/0", b"0" * 1000), ("tmp/k/1", b"1" * 2000)):
            self.assertEqual(self.object_bytes(name), data, name)
        out = self.ok("batch", "rm", "keep", "--delete-outputs", token="owner")
        self.assertEqual((doc["pinned_objects"], doc["written_objects"], doc["written_bytes"]), (2, 2, 3000))
        self.assertEqual(out, "ended keep: pinned 2 objects (%s), wrote 2 objects (2.9 KiB), deleted 2 outputs\n"
                         % size_text(doc["pinned_bytes"]))
        for name in ("tmp/k/0", "tmp/k/1"):
            self.assertEqual(self.direct(self.media(name), OWNER).status, 404, name)

    def test_errors(self):
        for args in (("show", "nope"), ("extend", "nope"), ("extend", "nope", "--ttl", "5m"), ("rm", "nope"),
                     ("rm", "nope", "--delete-outputs")):
            line = self.fails(NOT_FOUND, "batch", *args, token="reader")
            self.assertEqual(line, "larderctl: batch %s: no such batch 'nope'" % args[0])
        self.assertEqual(self.ok("batch", "create", "--id", "mine", token="reader"), "mine\n")
        for command in ("show", "extend", "rm"):  # someone else's batch is as unknown as no batch
            line = self.fails(NOT_FOUND, "batch", command, "mine", token="other")
            self.assertEqual(line, "larderctl: batch %s: no such batch 'mine'" % command)
        for token in ("reader", "other"):  # a live batch's id is taken for everyone
            line = self.fails(CONFLICT, "batch", "create", "--id", "mine", "--ttl", "5m", token=token)
            self.assertEqual(line, "larderctl: batch create: batch 'mine' exists")
        # What the server refuses in a body: its message.
        for args, body in ((("--ttl", "soon"), {"ttl": "soon"}), (("--ttl", "400d"), {"ttl": "400d"}),
                           (("--quota", "lots"), {"quota_bytes": "lots"}),
                           (("--scratch", "b/p"), {"scratch_prefixes": ["b/p"]}),
                           (("--id", "has space"), {"id": "has space"})):
            line = self.fails(SERVER_ERROR, "batch", "create", *args, token="reader")
            message = self.server_message("POST", "/_larder/v1/batches", READER, json.dumps(body).encode())
            self.assertEqual(line, "larderctl: batch create: 400 Bad Request: " + message, args)
        line = self.fails(SERVER_ERROR, "batch", "extend", "mine", "--ttl", "0", token="reader")
        message = self.server_message("POST", "/_larder/v1/batches/mine:extend", READER, b'{"ttl": "0"}')
        self.assertEqual(line, "larderctl: batch extend: 400 Bad Request: " + message)
        # A missing ID, and other usage errors: nothing is sent.
        for command in ("show", "extend", "rm"):
            line = self.fails(USAGE, "batch", command, token="reader")
            self.assertEqual(line, "larderctl: batch %s: missing ID (see larderctl batch %s --help)"
                             % (command, command))
        self.assertEqual(self.fails(USAGE, "batch", token="reader"),
                         "larderctl: batch: no command given (see larderctl batch --help)")
        for args in (("bogus",), ("show", ""), ("show", "mine", "extra"), ("ls", "mine"), ("create", "mine"),
                     ("create", "--scratch"), ("create", "--id", "a", "--id", "b"),
                     ("rm", "mine", "--delete-outputs=yes"),
                     ("show", "mine", "--ttl", "5m"), ("create", "--delete-outputs"), ("--ttl", "5m", "create"),
                     ("create",) + ("--scratch", "gs://b/p/") * 17):
            self.fails(USAGE, "batch", *args, token="reader")
        # The token: a bad one is 401 (4) before any batch is looked at; none cannot own a batch.
        bad = {"Authorization": "Bearer " + BAD_TOKEN}
        for args, method, path in ((("ls",), "GET", ""), (("show", "mine"), "GET", "/mine"),
                                   (("create", "--id", "x"), "POST", ""), (("rm", "mine"), "DELETE", "/mine")):
            line = self.fails(UNAUTHENTICATED, "batch", *args, token=BAD_TOKEN)
            message = self.server_message(method, "/_larder/v1/batches" + path, bad)
            self.assertEqual(line, "larderctl: batch %s: 401 Unauthorized: %s" % (args[0], message))
        line = self.fails(UNAUTHENTICATED, "batch", "create")
        message = self.server_message("POST", "/_larder/v1/batches", {}, b"{}")
        self.assertEqual(line, "larderctl: batch create: 401 Unauthorized: %s (no token given: use --token, "
                               "--token-file or LARDER_TOKEN)" % message)
        url = "http://127.0.0.1:%d" % closed_port()
        line = self.fails(UNREACHABLE, "batch", "ls", token="reader", url=url)
        self.assertIn("could not reach larder at %s" % url, line)
        # None of it changed a batch.
        self.assertEqual([b["id"] for b in self.api("GET", "", OWNER)["batches"]], ["mine"])

    def test_help(self):
        text = self.ok("batch", "--help")
        self.assertTrue(text.startswith("usage: larderctl [GLOBAL OPTIONS] batch COMMAND"), text)
        self.assertEqual(self.ok("help", "batch"), text)
        self.assertEqual(self.ok("batch", "-h"), text)
        self.assertIn("\n  batch ", self.ok("--help"))
        for command in ("create", "extend", "show", "ls", "rm"):
            self.assertIn("\n  %s " % command, text)
            own = self.ok("batch", command, "--help")
            self.assertTrue(own.startswith("usage: larderctl [GLOBAL OPTIONS] batch %s" % command), own)
            self.assertEqual(self.ok("help", "batch", command), own)
            self.assertIn("\nExit codes:\n", own)
        create = self.ok("batch", "create", "--help")
        for option in ("--id ID", "--ttl TTL", "--scratch gs://B/PREFIX", "--quota SIZE", "--json"):
            self.assertIn(option, create)
        self.assertIn("--delete-outputs", self.ok("batch", "rm", "--help"))
        self.assertIn("--ttl TTL", self.ok("batch", "extend", "--help"))


class LarderctlPrefetchTest(CtlCalls, tc.CacheTestCase):
    """larderctl prefetch and larderctl dag against /_larder/v1/prefetch and /_larder/v1/dags.

    prefetch --wait prints the job's id, then a line per object checked against the API's answer, and the
    objects are HITs afterwards with no media GET upstream; without --wait only the id, with --json the
    answer; --batch reads in the batch. An object the token may not read fails: its line, one error line,
    exit 7. dag submit (a file, the standard input), show, ls, start, done and rm round-trip, what they
    print checked against the API. Errors: no such DAG (8, also someone else's), a taken id (9), no such
    stage (8), a stage done already (9), a DAG or list the server refuses (7, its message), a file missing,
    a directory or not JSON (2, naming it), missing operands (2)."""

    larder_config = {"cache": {"default_policy": "immutable"}}  # a prefetched object is a HIT at once

    def setUp(self):
        super().setUp()
        for d in self.api("GET", "/dags")["dags"]:  # owner@ is an admin: it lists everyone's
            self.api("DELETE", "/dags/" + d["id"])
        self.assertEqual(self.api("GET", "/dags"), {"dags": []})

    def api(self, method, path, headers=OWNER, status=200):
        """The API's own answer, to check what larderctl printed against."""
        got, _, answer = self.larder.request(method, "/_larder/v1" + path, headers=headers)
        self.assertEqual(got, status, answer[:300])
        return json.loads(answer)

    def url(self, name):
        return "gs://%s/%s" % (self.bucket, name)

    def dag_file(self, name, doc):
        """doc (JSON text as is when a str) in a file of the test's; returns its path."""
        path = os.path.join(self.workdir, "%s-%s" % (self.bucket, name))
        with open(path, "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        return path

    def dag(self, dag_id):
        return {"id": dag_id, "stages": [
            {"id": "scan", "inputs": [{"url": self.url("in/a")}, {"url": self.url("in/b"), "range": "bytes=0-99"}],
             "expected_runtime_ms": 500},
            {"id": "join", "inputs": [{"url": self.url("in/a")}], "after": ["scan"], "expected_runtime_ms": 500}]}

    def inputs_done(self, dag_id):
        """Waits until every input of the DAG is fetched, and the store is idle; returns the DAG."""
        self.assertTrue(harness.wait_until(
            lambda: all(i["state"] == "done" and i["cached_bytes"] > 0
                        for i in self.api("GET", "/dags/" + dag_id)["inputs"]), timeout=60))
        self.settle()
        return self.api("GET", "/dags/" + dag_id)

    @staticmethod
    def input_line(doc, key, retained):
        """ctl_print_job_input's line for one object or input of the API's answer."""
        figure = "%s/%s" % (size_text(doc[key]), size_text(doc["size"]))
        line = "  %-8s %-21s " % (doc["state"], figure)
        if retained:
            line += "%-8s " % ("retained" if doc["retained"] else "-")
        return line + doc["url"] + ("#" + doc["range"] if "range" in doc else "") + \
            (": " + doc["error"] if "error" in doc else "")

    def test_prefetch_wait_then_reads_are_hits(self):
        self.put_object("p/a", data=b"a" * 3000)
        self.put_object("p/b", data=b"b" * 5000)
        out = self.ok("prefetch", self.url("p/a"), self.url("p/b") + "#bytes=0-999", "--wait", token="owner")
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^p-[0-9a-f]{16}$")
        job = self.api("GET", "/prefetch/" + lines[0])
        self.assertEqual([(o["url"], o.get("range"), o["state"], o["size"], o["fetched_bytes"])
                          for o in job["objects"]],
                         [(self.url("p/a"), None, "done", 3000, 3000),
                          (self.url("p/b"), "bytes=0-999", "done", 5000, 1000)])
        self.assertEqual(lines[1:], ["  done     2.9 KiB/2.9 KiB       " + self.url("p/a"),
                                     "  done     1000 B/4.9 KiB        %s#bytes=0-999" % self.url("p/b")])
        self.assertEqual(lines[1:], [self.input_line(o, "fetched_bytes", False) for o in job["objects"]])
        self.settle()
        mark = self.mark()
        r = self.get(self.media("p/a"), OWNER)
        self.assertEqual((r.status, r.x_cache, r.body), (200, "HIT", b"a" * 3000))
        r = self.get(self.media("p/b"), dict(OWNER, Range="bytes=0-999"))
        self.assertEqual((r.status, r.x_cache, r.body), (206, "HIT", b"b" * 1000))
        self.assertEqual(self.upstream_since(mark, kinds=("media_get",)), [])

    def test_prefetch_without_wait_and_json(self):
        self.put_object("p/c", data=b"c" * 2000)
        out = self.ok("prefetch", self.url("p/c"), token="owner")
        self.assertRegex(out, r"^p-[0-9a-f]{16}\n$")
        submitted = json.loads(self.ok("prefetch", self.url("p/c"), "--json", token="owner"))
        self.assertRegex(submitted["id"], r"^p-[0-9a-f]{16}$")
        self.assertNotEqual(submitted["id"], out[:-1])
        self.assertEqual((submitted["owner"], [(o["url"], o.get("range")) for o in submitted["objects"]]),
                         (tc.OWNER_EMAIL, [(self.url("p/c"), None)]))
        self.put_object("p/e", data=b"e" * 2000)
        done = json.loads(self.ok("prefetch", self.url("p/e") + "#bytes=10-", "--wait", "--json", token="owner"))
        self.assertEqual([(o["url"], o["range"], o["state"], o["size"], o["fetched_bytes"]) for o in done["objects"]],
                         [(self.url("p/e"), "bytes=10-", "done", 2000, 1990)])

        def settled(job):  # what the store holds is counted a moment after an object is done
            return dict(job, objects=[{k: v for k, v in o.items() if k != "cached_bytes"} for o in job["objects"]])
        self.assertEqual(settled(done), settled(self.api("GET", "/prefetch/" + done["id"])))
        # --batch: the prefetch reads in the batch, which pins what it read.
        status, _, answer = self.larder.request("POST", "/_larder/v1/batches", body=b'{"id": "pf-batch"}',
                                                headers=dict(OWNER, **{"Content-Type": "application/json"}))
        self.assertIn(status, (200, 201), answer)
        self.put_object("p/d", data=b"d" * 1500)
        out = self.ok("prefetch", self.url("p/d"), "--batch", "pf-batch", "--wait", token="owner")
        self.assertEqual(out.splitlines()[1:], ["  done     1.5 KiB/1.5 KiB       " + self.url("p/d")])
        job = self.api("GET", "/prefetch/" + out.splitlines()[0])
        self.assertEqual(job["batch"], "pf-batch")
        self.settle()
        batch = self.api("GET", "/batches/pf-batch")
        self.assertEqual([(o["url"], o["read"]) for o in batch["objects"]], [(self.url("p/d"), True)])

    def test_prefetch_of_what_the_token_cannot_read_fails(self):
        self.put_object("p/secret", data=b"s" * 3000)
        out, err = self.ctl("prefetch", self.url("p/secret"), "--wait", token="reader", expect=SERVER_ERROR)
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^p-[0-9a-f]{16}$")
        job = self.api("GET", "/prefetch/" + lines[0], headers=READER)
        self.assertEqual([(o["state"], o.get("error")) for o in job["objects"]], [("failed", "larder answered 403")])
        # the bytes are those of larder's 403 answer: what the job's reads received
        fetched = size_text(job["objects"][0]["fetched_bytes"]) + "/0 B"
        self.assertEqual(lines[1:], ["  failed   %-21s %s: larder answered 403" % (fetched, self.url("p/secret"))])
        self.assertEqual(err, "larderctl: prefetch: 1 of 1 object failed\n")
        self.assertEqual(self.get(self.media("p/secret"), OWNER).x_cache, "MISS")

    def test_prefetch_errors(self):
        post = "/_larder/v1/prefetch"
        for args, body in (((self.url("x") + "#bytes=5-1",), {"objects": [{"url": self.url("x"),
                                                                          "range": "bytes=5-1"}]}),
                           (("b/o",), {"objects": [{"url": "b/o"}]}),
                           ((self.url("x"), "--batch", "no spaces"), {"objects": [{"url": self.url("x")}],
                                                                     "batch": "no spaces"})):
            line = self.fails(SERVER_ERROR, "prefetch", *args, token="owner")
            message = self.server_message("POST", post, OWNER, json.dumps(body).encode())
            self.assertEqual(line, "larderctl: prefetch: 400 Bad Request: " + message, args)
        line = self.fails(UNAUTHENTICATED, "prefetch", self.url("x"))
        message = self.server_message("POST", post, {}, json.dumps({"objects": [{"url": self.url("x")}]}).encode())
        self.assertEqual(line, "larderctl: prefetch: 401 Unauthorized: %s (no token given: use --token, "
                               "--token-file or LARDER_TOKEN)" % message)
        self.assertEqual(self.fails(USAGE, "prefetch", token="owner"),
                         "larderctl: prefetch: missing gs://B/O (see larderctl prefetch --help)")
        self.assertEqual(self.fails(USAGE, "prefetch", self.url("x"), "", token="owner"),
                         "larderctl: prefetch: empty gs://B/O (see larderctl prefetch --help)")
        for args in (("--wait=1", self.url("x")), (self.url("x"), "--batch"), ("--bogus", self.url("x")),
                     (self.url("x"), "--batch", "a", "--batch", "b")):
            self.fails(USAGE, "prefetch", *args, token="owner")
        self.assertEqual(self.fails(USAGE, "prefetch", *[self.url("x")] * 4097, token="owner"),
                         "larderctl: prefetch: more than 4096 gs://B/O given")

    def test_dag_submit_show_ls_start_done_rm(self):
        self.put_object("in/a", data=b"a" * 3000)
        self.put_object("in/b", data=b"b" * 5000)
        path = self.dag_file("q1.json", self.dag("q1"))
        self.assertEqual(self.ok("dag", "submit", path, token="owner"), "q1\n")
        doc = self.inputs_done("q1")
        self.assertEqual(json.loads(self.ok("dag", "show", "q1", "--json", token="owner"))["inputs"], doc["inputs"])
        self.assertEqual([(i["url"], i.get("range"), i["state"], i["cached_bytes"], i["size"], i["retained"])
                          for i in doc["inputs"]],
                         [(self.url("in/a"), None, "done", 3000, 3000, True),
                          (self.url("in/b"), "bytes=0-99", "done", 100, 5000, True)])
        shown = self.ok("dag", "show", "q1", token="owner").splitlines()
        self.assertEqual(shown[:7], ["id:       q1", "owner:    owner@example.com", "state:    done",
                                     "created:  " + doc["created_at"], "weight:   1", "fetched:  %s"
                                     % size_text(doc["bytes_fetched"]), "stages:"])
        self.assertRegex(shown[7], r"^  scan             waiting  predicted \S+Z to \S+Z, 100% cached$")
        self.assertRegex(shown[8], r"^  join             waiting  predicted \S+Z to \S+Z, 100% cached$")
        self.assertEqual(shown[9:], ["inputs:",
                                     "  done     2.9 KiB/2.9 KiB       retained " + self.url("in/a"),
                                     "  done     100 B/4.9 KiB         retained %s#bytes=0-99" % self.url("in/b")])
        self.assertEqual(shown[10:], [self.input_line(i, "cached_bytes", True) for i in doc["inputs"]])
        self.assertEqual(self.ok("dag", "ls", token="owner"),
                         "q1                       owner@example.com            done     0/2 stages done, "
                         "2/2 inputs cached\n")
        self.assertEqual(json.loads(self.ok("dag", "ls", "--json", token="owner"))["dags"][0]["id"], "q1")
        self.assertEqual(self.ok("dag", "ls", token="other"), "", "another user sees owner's DAG")

        started = json.loads(self.ok("dag", "start", "q1", "scan", "--json", token="owner"))
        scan = started["stages"][0]
        self.assertEqual((scan["id"], scan["state"]), ("scan", "running"))
        self.assertRegex(scan["started_at"], r"Z$")
        out = self.ok("dag", "done", "q1", "scan", token="owner")
        scan = self.api("GET", "/dags/q1")["stages"][0]
        self.assertEqual(out, "  scan             done     started %s, done %s\n"
                         % (started["stages"][0]["started_at"], scan["done_at"]))
        out = self.ok("dag", "start", "q1", "join", token="owner")
        self.assertRegex(out, r"^  join             running  (predicted \S+Z to \S+Z, \d+% cached|not planned yet)\n$")
        out = self.ok("dag", "done", "q1", "join", token="owner")
        join = self.api("GET", "/dags/q1")["stages"][1]
        self.assertEqual(out, "  join             done     started %s, done %s\n"
                         % (join["started_at"], join["done_at"]))
        self.assertEqual(self.ok("dag", "show", "q1", token="owner").splitlines()[7:9],
                         ["  scan             done     started %s, done %s" % (scan["started_at"], scan["done_at"]),
                          "  join             done     started %s, done %s" % (join["started_at"], join["done_at"])])
        self.assertEqual(self.ok("dag", "ls", token="owner"),
                         "q1                       owner@example.com            done     2/2 stages done, "
                         "2/2 inputs cached\n")

        self.assertEqual(self.ok("dag", "rm", "q1", token="owner"), "ended q1\n")
        self.assertEqual(self.ok("dag", "ls", token="owner"), "")
        self.assertTrue(harness.wait_until(
            lambda: self.larder.request("GET", "/_larder/v1/dags/q1", headers=OWNER)[0] == 404, timeout=10))
        self.assertEqual(self.fails(NOT_FOUND, "dag", "show", "q1", token="owner"),
                         "larderctl: dag show: no such DAG 'q1'")

    def test_dag_submit_from_stdin_and_json(self):
        doc = {"stages": [{"id": "only", "inputs": [{"url": self.url("in/none")}]}], "weight": 2.5}
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("LARDER_") and not k.lower().endswith("_proxy")}
        env.update(LARDER_URL=self.larder.url, LARDER_TOKEN="owner")
        proc = subprocess.run([larderctl_bin(), "dag", "submit", "-"], input=json.dumps(doc).encode(), env=env,
                              capture_output=True, timeout=60)
        self.assertEqual((proc.returncode, proc.stderr), (0, b""))
        self.assertRegex(proc.stdout.decode(), r"^d-[0-9a-f]{16}\n$")
        dag_id = proc.stdout.decode()[:-1]
        self.assertEqual((self.api("GET", "/dags/" + dag_id)["weight"]), 2.5)
        submitted = json.loads(self.ok("dag", "submit", self.dag_file("d.json", dict(doc, id="d2")), "--json",
                                       token="owner"))
        self.assertEqual((submitted["id"], submitted["owner"], [s["id"] for s in submitted["stages"]]),
                         ("d2", tc.OWNER_EMAIL, ["only"]))
        ended = json.loads(self.ok("dag", "rm", "d2", "--json", token="owner"))
        self.assertEqual(ended, {"id": "d2", "state": "ended"})

    def test_dag_errors(self):
        for args in (("show", "nope"), ("rm", "nope"), ("start", "nope", "scan"), ("done", "nope", "scan")):
            line = self.fails(NOT_FOUND, "dag", *args, token="owner")
            self.assertEqual(line, "larderctl: dag %s: no such DAG 'nope'" % args[0])
        path = self.dag_file("mine.json", self.dag("mine"))
        self.assertEqual(self.ok("dag", "submit", path, token="reader"), "mine\n")
        for args in (("show", "mine"), ("rm", "mine"), ("start", "mine", "scan")):  # someone else's: unknown
            line = self.fails(NOT_FOUND, "dag", *args, token="other")
            self.assertEqual(line, "larderctl: dag %s: no such DAG 'mine'" % args[0])
        for token in ("reader", "other"):  # a live DAG's id is taken for everyone
            self.assertEqual(self.fails(CONFLICT, "dag", "submit", path, token=token),
                             "larderctl: dag submit: DAG 'mine' exists")
        self.assertEqual(self.fails(NOT_FOUND, "dag", "start", "mine", "nope", token="reader"),
                         "larderctl: dag start: DAG 'mine' has no stage 'nope'")
        self.ok("dag", "done", "mine", "scan", token="reader")
        for command in ("start", "done"):
            self.assertEqual(self.fails(CONFLICT, "dag", command, "mine", "scan", token="reader"),
                             "larderctl: dag %s: stage 'scan' of DAG 'mine' is done already" % command)
        # What the server refuses in a DAG: its message.
        for name, doc in (("empty", {"id": "bad", "stages": []}),
                          ("cycle", {"stages": [{"id": "a", "inputs": [], "after": ["b"]},
                                                {"id": "b", "inputs": [], "after": ["a"]}]}),
                          ("url", {"stages": [{"id": "a", "inputs": [{"url": "b/o"}]}]}),
                          ("array", [1, 2])):
            line = self.fails(SERVER_ERROR, "dag", "submit", self.dag_file(name, doc), token="reader")
            message = self.server_message("POST", "/_larder/v1/dags", READER, json.dumps(doc).encode())
            self.assertEqual(line, "larderctl: dag submit: 400 Bad Request: " + message, name)
        # A file that is not there, not readable or not JSON: a usage error naming it, and nothing sent.
        missing = os.path.join(self.workdir, "no-such.json")
        self.assertEqual(self.fails(USAGE, "dag", "submit", missing, token="reader"),
                         "larderctl: dag submit: cannot read %s: No such file or directory" % missing)
        self.assertEqual(self.fails(USAGE, "dag", "submit", self.workdir, token="reader"),
                         "larderctl: dag submit: cannot read %s: Is a directory" % self.workdir)
        for name, text in (("truncated", '{"stages": ['), ("text", "stages"), ("two", "{} {}")):
            bad = self.dag_file(name, text)
            self.assertRegex(self.fails(USAGE, "dag", "submit", bad, token="reader"),
                             r"^larderctl: dag submit: %s is not JSON: .+ \(line \d+, column \d+\)$" % bad)
        # Missing operands, and other usage errors.
        for command, operand in (("submit", "FILE"), ("show", "ID"), ("rm", "ID"), ("start", "ID"), ("done", "ID")):
            self.assertEqual(self.fails(USAGE, "dag", command, token="reader"),
                             "larderctl: dag %s: missing %s (see larderctl dag %s --help)"
                             % (command, operand, command))
        for command in ("start", "done"):
            self.assertEqual(self.fails(USAGE, "dag", command, "mine", token="reader"),
                             "larderctl: dag %s: missing STAGE (see larderctl dag %s --help)" % (command, command))
            self.assertEqual(self.fails(USAGE, "dag", command, "mine", "", token="reader"),
                             "larderctl: dag %s: empty STAGE (see larderctl dag %s --help)" % (command, command))
        self.assertEqual(self.fails(USAGE, "dag", token="reader"),
                         "larderctl: dag: no command given (see larderctl dag --help)")
        for args in (("bogus",), ("show", "mine", "extra"), ("ls", "mine"), ("start", "mine", "scan", "x"),
                     ("submit", path, path), ("rm", "mine", "--wait")):
            self.fails(USAGE, "dag", *args, token="reader")
        bad = {"Authorization": "Bearer " + BAD_TOKEN}
        line = self.fails(UNAUTHENTICATED, "dag", "show", "mine", token=BAD_TOKEN)
        self.assertEqual(line, "larderctl: dag show: 401 Unauthorized: " +
                         self.server_message("GET", "/_larder/v1/dags/mine", bad))
        # None of it changed the DAG.
        self.assertEqual([d["id"] for d in self.api("GET", "/dags", READER)["dags"]], ["mine"])

    def test_help(self):
        text = self.ok("--help")
        for command in ("prefetch", "dag"):
            self.assertIn("\n  %s " % command, text)
            own = self.ok(command, "--help")
            self.assertTrue(own.startswith("usage: larderctl [GLOBAL OPTIONS] %s " % command), own)
            self.assertEqual(self.ok("help", command), own)
        for code in (8, 9):
            self.assertRegex(text, r"\n  %d  \S.*DAG" % code)
        prefetch = self.ok("prefetch", "--help")
        for option in ("gs://B/O[#bytes=A-B]...", "--batch ID", "--wait", "--json"):
            self.assertIn(option, prefetch)
        dag = self.ok("dag", "--help")
        for command in ("submit", "show", "ls", "rm", "start", "done"):
            self.assertIn("\n  %s " % command, dag)
            own = self.ok("dag", command, "--help")
            self.assertTrue(own.startswith("usage: larderctl [GLOBAL OPTIONS] dag %s" % command), own)
            self.assertEqual(self.ok("help", "dag", command), own)
            self.assertIn("\nExit codes:\n", own)
        self.assertIn("dag start ID STAGE", self.ok("dag", "start", "--help"))


if __name__ == "__main__":
    if not os.access(larderctl_bin(), os.X_OK):
        harness.skip("larderctl is not built at %s" % larderctl_bin())
    harness.main()
