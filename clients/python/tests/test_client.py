"""The events client against a real switchyard server (SWITCHYARD_BIN, default the debug build),
through a loopback proxy that can answer 503, drop the connection after the server answered, or
stall, for one request at a time. Standard library only: ``python3 -m unittest``."""

import asyncio
import datetime as dt
import http.client
import http.server
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request
from pathlib import Path

from switchyard_events import AsyncSwitchyard, Switchyard, SwitchyardError

ROOT = Path(__file__).resolve().parents[3]
ADMIN = "sk_python_client_test_admin_key_01234567"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        binary = os.environ.get("SWITCHYARD_BIN", str(ROOT / "target" / "debug" / "switchyard"))
        env = {**os.environ, "SWITCHYARD_ADMIN_KEY": ADMIN, "SWITCHYARD_LOG": "warn"}
        self.process = subprocess.Popen(
            [binary, "serve", "--database-url", f"sqlite://{self.dir.name}/db.sqlite", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(400):
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def admin(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + "/api/v1" + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()
        self.dir.cleanup()


class Proxy:
    """``plan`` lists what to do with the next requests: "503", "drop" (forward, then close
    without answering) or "stall"; anything else forwards."""

    def __init__(self, target: str) -> None:
        self.seen = []
        self.plan = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.seen.append({"path": self.path, "key": self.headers.get("Idempotency-Key"), "body": body})
                step = proxy.plan.pop(0) if proxy.plan else None
                if step == "503":
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(b'{"error":{"code":"unavailable","message":"injected"}}')
                    return
                if step == "stall":
                    time.sleep(2)
                    self.close_connection = True
                    return
                host = target.split("://", 1)[1]
                conn = http.client.HTTPConnection(host, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request("POST", self.path, body=body, headers=headers)
                answer = conn.getresponse()
                payload = answer.read()
                conn.close()
                if step == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def expect(self, steps):
        self.plan = list(steps)
        self.seen.clear()

    def stop(self):
        self.httpd.shutdown()


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        ws = cls.server.admin("POST", "/workspaces", {"name": "python-client"})
        cls.ws, cls.pk = ws["id"], ws["publishable_key"]["key"]
        cls.proxy = Proxy(cls.server.base)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.server.stop()

    def stored(self) -> int:
        n, cursor = 0, ""
        while True:
            page = self.server.admin("GET", f"/workspaces/{self.ws}/events?limit=200" + (f"&cursor={cursor}" if cursor else ""))
            n += len(page["data"])
            if not page["next_cursor"]:
                return n
            cursor = page["next_cursor"]

    def test_one_event_with_a_given_or_generated_key(self):
        client = Switchyard(self.pk, base_url=self.server.base)
        a = client.emit({"event": "user.created", "payload": {"email": "ada@example.com"}, "resource": "account",
                         "resource_id": "a1", "occurred_at": dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.timezone.utc)})
        self.assertTrue(a.id.startswith("evt_"))
        self.assertFalse(a.duplicate)
        first = client.emit({"event": "user.created"}, idempotency_key="signup-1")
        again = client.emit({"event": "user.created"}, idempotency_key="signup-1")
        self.assertEqual(again.id, first.id)
        self.assertTrue(again.duplicate)
        shown = self.server.admin("GET", f"/events/{a.id}")
        self.assertEqual(shown["occurred_at"], "2026-12-01T09:00:00.000Z")

    def test_a_503_is_retried_with_the_same_key_and_one_event_is_stored(self):
        before = self.stored()
        self.proxy.expect(["503", "503"])
        client = Switchyard(self.pk, base_url=self.proxy.url, retries=3, backoff=0.01)
        client.emit({"event": "order.paid", "payload": {"n": 1}})
        self.assertEqual(len(self.proxy.seen), 3)
        self.assertEqual(len({r["key"] for r in self.proxy.seen}), 1)
        self.assertEqual(self.stored(), before + 1)

    def test_a_dropped_connection_after_the_server_stored_the_event_stores_nothing_twice(self):
        before = self.stored()
        self.proxy.expect(["drop"])
        a = Switchyard(self.pk, base_url=self.proxy.url, retries=2, backoff=0.01).emit({"event": "order.shipped"})
        self.assertEqual(len(self.proxy.seen), 2)
        self.assertEqual(self.proxy.seen[0]["key"], self.proxy.seen[1]["key"])
        self.assertTrue(a.duplicate)
        self.assertEqual(self.stored(), before + 1)

    def test_a_stalled_attempt_times_out_and_is_retried(self):
        self.proxy.expect(["stall"])
        a = Switchyard(self.pk, base_url=self.proxy.url, timeout=0.3, retries=1, backoff=0.01).emit({"event": "order.late"})
        self.assertTrue(a.id.startswith("evt_"))
        self.proxy.expect(["stall"])
        with self.assertRaises(SwitchyardError) as raised:
            Switchyard(self.pk, base_url=self.proxy.url, timeout=0.2, retries=0).emit({"event": "order.late"})
        self.assertEqual((raised.exception.code, raised.exception.status, raised.exception.attempts), ("timeout", 0, 1))

    def test_refusals_are_typed_and_not_retried(self):
        self.proxy.expect([])
        with self.assertRaises(SwitchyardError) as raised:
            Switchyard(self.pk, base_url=self.proxy.url, backoff=0.01).emit({"event": "no spaces allowed"})
        e = raised.exception
        self.assertEqual((e.status, e.code, e.details[0]["field"]), (422, "validation_failed", "event"))
        self.assertEqual(len(self.proxy.seen), 1)
        with self.assertRaises(SwitchyardError) as raised:
            Switchyard("pk_wrong_000000000000000000000000", base_url=self.server.base).emit({"event": "x.y"})
        self.assertEqual((raised.exception.status, raised.exception.code), (401, "unauthorized"))
        with self.assertRaises(SwitchyardError) as raised:
            Switchyard(self.pk, base_url="http://127.0.0.1:9", retries=1, backoff=0.01).emit({"event": "x.y"})
        self.assertEqual((raised.exception.code, raised.exception.attempts), ("network", 2))
        with self.assertRaises(ValueError):
            Switchyard("sk_not_publishable")

    def test_a_batch_of_2500_goes_in_three_requests_in_order(self):
        before = self.stored()
        self.proxy.expect([])
        events = [{"event": "bulk.item", "payload": {"i": i}} for i in range(2500)]
        events[1234] = {"event": "not valid!"}
        result = Switchyard(self.pk, base_url=self.proxy.url).emit_batch(events)
        self.assertEqual([len(json.loads(r["body"])) for r in self.proxy.seen], [1000, 1000, 500])
        self.assertEqual((result.accepted, result.rejected), (2499, 1))
        self.assertEqual([r["index"] for r in result.results], list(range(2500)))
        self.assertEqual(result.results[1234]["error"]["code"], "validation_failed")
        self.assertEqual(self.stored(), before + 2499)

    def test_asyncio_emits_without_blocking_the_loop(self):
        before = self.stored()
        self.proxy.expect(["503"])
        client = AsyncSwitchyard(self.pk, base_url=self.proxy.url, backoff=0.01)

        async def main():
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.001)

            async def timed(call):
                before = ticks
                result = await call
                return result, ticks - before  # how often the loop ran while this call was out

            t = asyncio.ensure_future(ticker())
            results = await asyncio.gather(timed(client.emit({"event": "async.one"})),
                                           timed(client.emit_batch([{"event": "async.two"}, {"event": "async.three"}])))
            t.cancel()
            return [r for r, _ in results], min(n for _, n in results)

        (single, batch), ticks = asyncio.run(main())
        self.assertTrue(single.id.startswith("evt_"))
        self.assertEqual(batch.accepted, 2)
        self.assertGreater(ticks, 0, "the loop ran while the calls were out (a blocking call would have let it run only after)")
        self.assertEqual(self.stored(), before + 3)


if __name__ == "__main__":
    unittest.main()
