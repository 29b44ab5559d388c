#!/usr/bin/env python3
"""test_prefetch.py - prefetch lists and DAGs (issue 10): /_larder/v1/prefetch and /_larder/v1/dags.

The witnesses: the emulator's log (which reads reached upstream, when, with which Range, and how
many bytes it sent), X-Cache of the reads afterwards, and the jobs' own state (GET). The planner's
decisions are unit-tested without timing (tests/unit/test_planner.c); here the whole path runs:
submit, plan, fetch through larder's own listener with the submitter's credentials, retain, release.

Every test here fails on the code before prefetch (59bfbd8): /_larder/v1/prefetch and
/_larder/v1/dags answered 404 "No such larder endpoint.".
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_cache as tc  # noqa: E402  (helpers only)

OWNER, READER, OTHER = tc.OWNER, tc.READER, tc.OTHER
MiB = 1024 * 1024
CHUNK = 1024 * 1024 - 24  # the store's chunk payload


class PrefetchCase(tc.CacheTestCase):
    # A read held upstream stays in flight (a fill a client waits on) for as long as a test holds it.
    larder_config = {"cache": {"default_policy": "immutable"}, "upstream": {"response_timeout_ms": 60000}}

    def api(self, method, path, body=None, headers=OWNER, status=None):
        data = json.dumps(body).encode() if body is not None else None
        hdrs = dict(headers, **({"Content-Type": "application/json"} if data is not None else {}))
        got, _, answer = self.larder.request(method, "/_larder/v1" + path, body=data, headers=hdrs)
        if status is not None:
            self.assertEqual(got, status, answer[:600])
        try:
            return got, json.loads(answer)
        except ValueError:
            return got, answer

    def url(self, name):
        return "gs://%s/%s" % (self.bucket, name)

    def wait_job(self, path, state="done", headers=OWNER, timeout=60):
        seen = {}

        def reached():
            got, doc = self.api("GET", path, headers=headers)
            seen["doc"] = doc
            return got == 200 and doc["state"] == state

        self.assertTrue(harness.wait_until(reached, timeout), "never %s: %r" % (state, seen.get("doc")))
        return seen["doc"]

    def media_gets(self, mark, name):
        return [e for e in self.upstream_since(mark) if e["kind"] == "media_get" and e["path"].split("?")[0]
                .endswith("/o/" + harness.quote_object(name))]


class PrefetchListTest(PrefetchCase):

    def test_a_list_is_fetched_and_read_back_as_hits(self):
        self.put_object("t/big", size=5 * MiB, seed=1)
        self.put_object("t/small", size=1000, seed=2)
        got, job = self.api("POST", "/prefetch", {"objects": [{"url": self.url("t/big")},
                                                              {"url": self.url("t/small")}]}, status=202)
        self.assertRegex(job["id"], r"^p-[0-9a-f]{16}$")
        done = self.wait_job("/prefetch/" + job["id"])
        self.assertEqual({(o["url"], o["state"], o["size"]) for o in done["objects"]},
                         {(self.url("t/big"), "done", 5 * MiB), (self.url("t/small"), "done", 1000)})
        self.settle()
        mark = self.mark()
        for name in ("t/big", "t/small"):
            r = self.get(self.media(name), OWNER)
            self.assertEqual((r.status, r.x_cache), (200, "HIT"), name)
        self.assertEqual(self.upstream_since(mark, kinds=("media_get",)), [])
        # The prefetch's reads went through larder as the submitter's own: its identity, its access.
        lines = [line for line in self.larder.access_log() if "t%2Fbig" in line.get("path", "")
                 and line.get("cache") == "MISS"]
        self.assertTrue(lines, "no access line for the prefetch's reads")
        self.assertEqual({(line.get("identity"), line.get("access")) for line in lines}, {(tc.OWNER_EMAIL, "owner")})

    def test_a_range_fetches_only_its_chunks(self):
        self.put_object("t/ranged", size=6 * MiB, seed=3)
        mark = self.mark()
        _, job = self.api("POST", "/prefetch", {"objects": [{"url": self.url("t/ranged"),
                                                             "range": "bytes=0-%d" % (2 * CHUNK - 1)}]},
                          status=202)
        self.wait_job("/prefetch/" + job["id"])
        fetched = sum(e["bytes"] for e in self.media_gets(mark, "t/ranged"))
        self.assertEqual(fetched, 2 * CHUNK, "the prefetch moved more than its range's chunks")
        self.settle()
        mark = self.mark()
        r = self.get(self.media("t/ranged"), dict(OWNER, Range="bytes=0-%d" % (2 * CHUNK - 1)))
        self.assertEqual((r.status, r.x_cache), (206, "HIT"))
        self.assertEqual(self.media_gets(mark, "t/ranged"), [])

    def test_what_the_submitter_may_not_read_is_not_fetched(self):
        """reader@ may not read the object: its prefetch fails with larder's 403, nothing is cached, and the
        owner's own first read is a MISS."""
        self.put_object("t/secret", size=3000, seed=4)
        objects_before = self.stats()["objects"]
        _, job = self.api("POST", "/prefetch", {"objects": [{"url": self.url("t/secret")}]}, headers=READER,
                          status=202)
        doc = self.wait_job("/prefetch/" + job["id"], headers=READER)
        self.assertEqual([(o["state"], o.get("error")) for o in doc["objects"]], [("failed", "larder answered 403")])
        self.settle()
        self.assertEqual(self.stats()["objects"], objects_before)
        self.assertEqual(self.get(self.media("t/secret"), OWNER).x_cache, "MISS")

    def test_a_prefetched_object_is_served_to_others_only_with_the_usual_checks(self):
        self.emulator.control("POST", "acl", {"bucket": self.bucket, "readers": [tc.READER_EMAIL]})
        self.put_object("t/shared", size=4000, seed=5)
        _, job = self.api("POST", "/prefetch", {"objects": [{"url": self.url("t/shared")}]}, status=202)
        self.wait_job("/prefetch/" + job["id"])
        self.settle()
        r = self.get(self.media("t/shared"), OTHER)
        self.assertEqual(r.status, 403, "a stranger read the prefetched object")
        r = self.get(self.media("t/shared"), READER)
        self.assertEqual(r.status, 200)
        self.assertIn(r.x_cache, ("HIT", "REVALIDATED"))

    def test_a_read_joining_a_prefetch_in_flight_is_a_hit(self):
        """The prefetch's upstream answer is held; a client's read of the same object meanwhile follows the
        prefetch's fill: one media GET upstream in all, and the client's read is a HIT."""
        self.put_object("t/held", size=2 * MiB, seed=6)
        self.emulator.faults(match="/t%2Fheld", hold_response_ms=20000)
        mark = self.mark()
        _, job = self.api("POST", "/prefetch", {"objects": [{"url": self.url("t/held")}]}, status=202)
        harness.wait_until(lambda: self.emulator.control("GET", "faults")["waiting"] >= 1, timeout=10)
        got = {}
        reader = threading.Thread(target=lambda: got.update(r=self.get(self.media("t/held"), OWNER)))
        reader.start()
        # The reader is following the fill once larder counts it (it never reaches upstream on its own).
        time.sleep(0.2)
        self.emulator.control("POST", "release")
        reader.join(30)
        self.emulator.clear_faults()
        self.assertEqual((got["r"].status, got["r"].x_cache), (200, "HIT"))
        self.wait_job("/prefetch/" + job["id"])
        starts = [e for e in self.media_gets(mark, "t/held") if (e.get("headers") or {}).get("Range", "bytes=0-")
                  .startswith("bytes=0-")]
        self.assertEqual(len(starts), 1, "the client's read went upstream on its own: %r" % starts)

    def test_a_client_read_waiting_on_upstream_slows_prefetch_but_does_not_stop_it(self):
        """A client's read is held upstream for the whole test (a fill a client waits on); a prefetch list
        submitted meanwhile still completes, on the connections that read leaves free, and the held read is
        then answered whole.

        Fails on the code before 93fda0c: prefetch started nothing while any fill not its own was registered,
        so with one client read waiting it never ran ("never done")."""
        self.put_object("t/waiting", size=100000, seed=7)
        self.put_object("t/meanwhile", size=1 * MiB, seed=8)
        # Held for less than larder's upstream response timeout (60 s here), so it stays a fill in flight.
        self.emulator.faults(match="/t%2Fwaiting", hold_response_ms=45000)
        got = {}
        reader = threading.Thread(target=lambda: got.update(r=self.get(self.media("t/waiting"), OWNER)))
        reader.start()
        try:
            self.assertTrue(harness.wait_until(lambda: self.emulator.control("GET", "faults")["waiting"] == 1, 10))
            _, job = self.api("POST", "/prefetch", {"objects": [{"url": self.url("t/meanwhile")}]}, status=202)
            self.wait_job("/prefetch/" + job["id"], timeout=30)
            self.assertEqual(self.emulator.control("GET", "faults")["waiting"], 1, "the client's read was let go")
        finally:
            self.emulator.control("POST", "release")
            reader.join(30)
            self.emulator.clear_faults()
        self.assertEqual((got["r"].status, len(got["r"].body)), (200, 100000))

    def test_bad_lists(self):
        for body in ({}, {"objects": []}, {"objects": [{"url": "b/o"}]}, {"objects": [{"url": "gs://b"}]},
                     {"objects": [{"url": self.url("x"), "range": "0-5"}]}, {"objects": "x"},
                     {"objects": [{"url": self.url("x")}], "batch": "no spaces"}):
            got, answer = self.api("POST", "/prefetch", body)
            self.assertEqual(got, 400, (body, answer))
        self.api("POST", "/prefetch", {"objects": [{"url": self.url("x")}]}, headers={}, status=401)
        self.api("GET", "/prefetch/p-nope", status=404)


class DagTest(PrefetchCase):

    def dag(self, dag_id, **extra):
        return dict({"id": dag_id, "stages": [
            {"id": "scan", "inputs": [{"url": self.url("in/lineitem")}, {"url": self.url("in/orders")}],
             "outputs": [self.url("tmp/%s/scan" % dag_id)], "expected_runtime_ms": 500},
            {"id": "join", "inputs": [{"url": self.url("tmp/%s/scan" % dag_id)}, {"url": self.url("in/orders")},
                                      {"url": self.url("in/nation")}],
             "after": ["scan"], "expected_runtime_ms": 500},
        ]}, **extra)

    def setUp(self):
        super().setUp()
        self.put_object("in/lineitem", size=3 * MiB, seed=11)
        self.put_object("in/orders", size=2 * MiB, seed=12)
        self.put_object("in/nation", size=1 * MiB, seed=13)

    def test_every_stage_reads_hits_and_outputs_are_not_fetched_before_they_exist(self):
        mark = self.mark()
        _, doc = self.api("POST", "/dags", self.dag("q5"), status=201)
        self.assertEqual([s["id"] for s in doc["stages"]], ["scan", "join"])
        # Planning starts at once: the inputs that exist are fetched before any stage starts.
        harness.wait_until(lambda: all(i["state"] == "done" for i in self.api("GET", "/dags/q5")[1]["inputs"]
                                       if "tmp/" not in i["url"]), timeout=60)
        shown = self.api("GET", "/dags/q5", status=200)[1]
        states = {i["url"]: (i["state"], i["retained"]) for i in shown["inputs"]}
        self.assertEqual(states[self.url("in/lineitem")], ("done", True))
        self.assertEqual(states[self.url("in/nation")], ("done", True))
        self.assertEqual(states[self.url("tmp/q5/scan")][0], "pending", "an output was fetched before it existed")
        self.assertEqual([e for e in self.upstream_since(mark) if "tmp%2Fq5" in e["path"]], [])
        self.settle()
        # scan: both inputs are hits; it writes its output through larder.
        self.api("POST", "/dags/q5/stages/scan:start", status=200)
        read_mark = self.mark()
        for name in ("in/lineitem", "in/orders"):
            self.assertEqual(self.get(self.media(name), OWNER).x_cache, "HIT", name)
        self.assertEqual(self.upstream_since(read_mark, kinds=("media_get",)), [])
        r = self.get("/upload/storage/v1/b/%s/o?uploadType=media&name=tmp/q5/scan" % self.bucket,
                     dict(OWNER, **{"Content-Type": "application/octet-stream"}), method="POST", body=b"s" * 5000)
        self.assertEqual(r.status, 200)
        self.api("POST", "/dags/q5/stages/scan:done", status=200)
        # join: what scan wrote is hot, and lineitem, read by no stage still to run, is released.
        self.api("POST", "/dags/q5/stages/join:start", status=200)
        read_mark = self.mark()
        for name in ("tmp/q5/scan", "in/orders", "in/nation"):
            self.assertEqual(self.get(self.media(name), OWNER).x_cache, "HIT", name)
        self.assertEqual(self.upstream_since(read_mark, kinds=("media_get",)), [])
        shown = self.api("GET", "/dags/q5", status=200)[1]
        retained = {i["url"]: i["retained"] for i in shown["inputs"]}
        self.assertTrue(harness.wait_until(
            lambda: not {i["url"]: i["retained"] for i in self.api("GET", "/dags/q5")[1]["inputs"]}
            [self.url("in/lineitem")], timeout=10), retained)
        self.api("POST", "/dags/q5/stages/join:done", status=200)
        self.api("DELETE", "/dags/q5", status=200)
        self.api("GET", "/dags/q5", status=404)

    def test_stage_notifications_and_errors(self):
        self.api("POST", "/dags", self.dag("q6"), status=201)
        self.api("POST", "/dags", self.dag("q6"), status=409)
        self.api("POST", "/dags/q6/stages/nope:start", status=404)
        self.api("POST", "/dags/q6/stages/scan:start", headers=READER, status=404)  # not reader's DAG
        self.api("GET", "/dags/q6", headers=READER, status=404)
        self.api("POST", "/dags/q6/stages/scan:start", status=200)
        self.api("POST", "/dags/q6/stages/scan:done", status=200)
        self.api("POST", "/dags/q6/stages/scan:done", status=409)
        shown = self.api("GET", "/dags/q6", status=200)[1]
        self.assertEqual([(s["id"], s["state"]) for s in shown["stages"]], [("scan", "done"), ("join", "waiting")])
        self.assertIn("q6", [d["id"] for d in self.api("GET", "/dags", status=200)[1]["dags"]])
        self.assertEqual(self.api("GET", "/dags", headers=READER, status=200)[1]["dags"], [])
        cyclic = {"stages": [{"id": "a", "inputs": [], "after": ["b"]}, {"id": "b", "inputs": [], "after": ["a"]}]}
        for body in ({}, {"stages": []}, cyclic, {"stages": [{"id": "a", "after": ["zz"]}]},
                     {"stages": [{"id": "a"}, {"id": "a"}]}, {"stages": [{"id": "a"}], "weight": 0},
                     {"stages": [{"id": "a", "inputs": [{"url": "nope"}]}]}):
            got, answer = self.api("POST", "/dags", body)
            self.assertEqual(got, 400, (body, answer))
        self.api("DELETE", "/dags/q6", status=200)


class DagBudgetTest(PrefetchCase):
    """A small store, a bandwidth budget, and demand reads beside prefetch."""
    BUDGET = 2 * MiB  # bytes a second prefetch may move
    larder_config = {"cache": {"default_policy": "immutable"}, "store": {"budget": "16MiB"},
                     "prefetch": {"max_bandwidth": "2MiB", "max_connections": 2}}

    def test_prefetch_stays_within_its_bandwidth_and_demand_reads_go_first(self):
        """8 MiB prefetched at 2 MiB/s takes at least (8 MiB - one piece) / 2 MiB/s = 3 s at any speed; a demand
        read of another object meanwhile is answered while the prefetch still runs, its one upstream GET
        not waiting for the prefetch."""
        self.put_object("bw/big", size=8 * MiB, seed=21)
        self.put_object("bw/demand", size=1 * MiB, seed=22)
        mark = self.mark()
        started = time.monotonic()
        _, job = self.api("POST", "/prefetch", {"objects": [{"url": self.url("bw/big")}]}, status=202)
        harness.wait_until(lambda: self.media_gets(mark, "bw/big"), timeout=10)
        r = self.get(self.media("bw/demand"), OWNER)
        self.assertEqual((r.status, r.x_cache), (200, "MISS"))
        running = self.api("GET", "/prefetch/" + job["id"])[1]["state"]
        self.wait_job("/prefetch/" + job["id"], timeout=60)
        elapsed = time.monotonic() - started
        self.assertEqual(running, "running", "the prefetch ended before the demand read was answered")
        moved = sum(e["bytes"] for e in self.media_gets(mark, "bw/big"))
        self.assertEqual(moved, 8 * MiB)
        piece = 1 * CHUNK  # half a second of budget, in whole chunks
        self.assertGreaterEqual(elapsed, (moved - piece) / self.BUDGET,
                                "8 MiB moved in %.2f s: faster than the 2 MiB/s budget" % elapsed)

    def test_retention_keeps_inputs_of_stages_to_run_through_a_workload(self):
        self.put_object("keep/a", size=3 * MiB, seed=31)
        dag = {"id": "keep", "stages": [{"id": "s1", "inputs": [{"url": self.url("keep/a")}], "after": ["s0"]},
                                        {"id": "s0", "inputs": []}]}
        self.api("POST", "/dags", dag, status=201)
        harness.wait_until(lambda: self.api("GET", "/dags/keep")[1]["inputs"][0]["retained"] and
                           self.api("GET", "/dags/keep")[1]["inputs"][0]["state"] == "done", timeout=60)
        self.settle()
        for i in range(48):
            self.put_object("churn/%d" % i, size=MiB, seed=100 + i)
            self.assertEqual(self.get(self.media("churn/%d" % i), OWNER).status, 200)
        self.settle()
        self.assertGreater(self.stats()["evicted_objects"], 0)
        mark = self.mark()
        self.assertEqual(self.get(self.media("keep/a"), OWNER, method="HEAD").x_cache, "HIT",
                         "a retained input was evicted")
        self.api("DELETE", "/dags/keep", status=200)
        self.assertEqual(self.media_gets(mark, "keep/a"), [])


if __name__ == "__main__":
    harness.main()
