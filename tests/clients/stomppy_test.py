"""stomp.py (PyPI stomp-py) against a running romp on $ROMP_PORT. Run by tests/clients/run.sh."""
import os
import threading
import time
import unittest

import stomp

PORT = int(os.environ.get("ROMP_PORT", "61613"))
WEB_PORT = int(os.environ.get("ROMP_WEB_PORT", "8080"))
TLS_PORT = int(os.environ.get("ROMP_TLS_PORT", "61614"))
CA = os.environ.get("ROMP_CA", "")
WAIT = 10.0


class Collector(stomp.ConnectionListener):
    def __init__(self):
        self.messages = []
        self.receipts = []
        self.errors = []
        self.cond = threading.Condition()

    def on_message(self, frame):
        with self.cond:
            self.messages.append(frame)
            self.cond.notify_all()

    def on_receipt(self, frame):
        with self.cond:
            self.receipts.append(frame.headers["receipt-id"])
            self.cond.notify_all()

    def on_error(self, frame):
        with self.cond:
            self.errors.append(frame)
            self.cond.notify_all()

    def wait(self, pred, what):
        with self.cond:
            ok = self.cond.wait_for(pred, timeout=WAIT)
        if not ok:
            raise AssertionError(f"timed out waiting for {what}")

    def wait_messages(self, n):
        self.wait(lambda: len(self.messages) >= n, f"{n} messages (have {len(self.messages)})")
        return self.messages[:n]


def connect(version="1.2", ws=False, headers=None, tls=False):
    if tls:
        # stomp.py's own TLS (set_ssl), verifying the server against the run's test CA.
        conn = stomp.Connection12([("127.0.0.1", TLS_PORT)], heartbeats=(0, 0))
        conn.set_ssl(for_hosts=[("127.0.0.1", TLS_PORT)], ca_certs=CA)
    elif ws:
        # stomp.py's WebSocket transport offers no subprotocol; romp accepts that (O1).
        from stomp.adapter.ws import WSStompConnection

        conn = WSStompConnection([("127.0.0.1", WEB_PORT)], ws_path="/stomp", heartbeats=(0, 0))
    else:
        cls = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}[version]
        kw = {} if version == "1.0" else {"heartbeats": (0, 0)}
        conn = cls([("127.0.0.1", PORT)], **kw)
    listener = Collector()
    conn.set_listener("c", listener)
    conn.connect("guest", "guest", wait=True, headers=headers or {})
    return conn, listener


class StompPy(unittest.TestCase):
    def test_versions(self):
        for v in ("1.0", "1.1", "1.2"):
            conn, l = connect(v)
            dest = f"/queue/py-ver-{v}"
            sub = {"id": "1"} if v != "1.0" else {}
            conn.subscribe(dest, ack="auto", **sub)
            conn.send(dest, f"hello {v}", headers={"x": "a:b"})
            [m] = l.wait_messages(1)
            self.assertEqual(m.body, f"hello {v}")
            self.assertEqual(m.headers["x"], "a:b")
            conn.disconnect()

    def test_receipts_in_order(self):
        conn, l = connect()
        for i in range(50):
            conn.send(f"/queue/py-r{i % 5}", "x", receipt=str(i))
        l.wait(lambda: len(l.receipts) >= 50, "50 receipts")
        self.assertEqual(l.receipts, [str(i) for i in range(50)])
        conn.disconnect()
        for i in range(5):
            c, cl = connect()
            c.subscribe(f"/queue/py-r{i}", id="d", ack="auto")
            cl.wait_messages(10)
            c.disconnect()

    def test_client_ack_and_nack(self):
        conn, l = connect()
        conn.subscribe("/queue/py-ack", id="s", ack="client-individual")
        for b in ("a", "b", "c"):
            conn.send("/queue/py-ack", b)
        ms = l.wait_messages(3)
        conn.ack(ms[0].headers["ack"])
        conn.nack(ms[1].headers["ack"])
        # The NACKed one comes back, redelivered.
        l.wait_messages(4)
        again = l.messages[3]
        self.assertEqual(again.body, "b")
        self.assertEqual(again.headers.get("redelivered"), "true")
        conn.ack(again.headers["ack"])
        conn.disconnect(receipt="bye")
        # c was never acked: it is redelivered to the next consumer; a and b are gone.
        c2, l2 = connect()
        c2.subscribe("/queue/py-ack", id="t", ack="auto")
        [m] = l2.wait_messages(1)
        self.assertEqual(m.body, "c")
        time.sleep(0.3)
        self.assertEqual(len(l2.messages), 1)
        c2.disconnect()

    def test_transactions(self):
        conn, l = connect()
        conn.subscribe("/queue/py-tx", id="s", ack="auto")
        tx = conn.begin()
        conn.send("/queue/py-tx", "in-tx", transaction=tx)
        conn.send("/queue/py-tx", "now")
        [m] = l.wait_messages(1)
        self.assertEqual(m.body, "now")
        conn.commit(tx)
        l.wait_messages(2)
        self.assertEqual(l.messages[1].body, "in-tx")
        tx2 = conn.begin()
        conn.send("/queue/py-tx", "aborted", transaction=tx2)
        conn.abort(tx2)
        conn.send("/queue/py-tx", "after", receipt="r")
        l.wait(lambda: "r" in l.receipts, "receipt")
        l.wait_messages(3)
        self.assertEqual(l.messages[2].body, "after")
        conn.disconnect()

    def test_topic_fan_out(self):
        subs = [connect() for _ in range(3)]
        for i, (c, _) in enumerate(subs):
            c.subscribe("/topic/py-fan", id=str(i), ack="auto", headers={"receipt": f"s{i}"})
            subs[i][1].wait(lambda i=i: f"s{i}" in subs[i][1].receipts, "subscribe receipt")
        p, _ = connect()
        for i in range(20):
            p.send("/topic/py-fan", str(i))
        for _, l in subs:
            self.assertEqual([m.body for m in l.wait_messages(20)], [str(i) for i in range(20)])
        for c, _ in subs + [(p, None)]:
            c.disconnect()

    def test_disconnect_receipt(self):
        conn, l = connect()
        conn.disconnect(receipt="bye-now")
        # stomp.py marks itself disconnected before it tells listeners of the receipt, so
        # disconnect() may return first: wait for the listener to see it.
        l.wait(lambda: "bye-now" in l.receipts, "DISCONNECT receipt")

    def test_durable_subscription_and_persistent_receipts(self):
        # ActiveMQ's spelling: client-id on CONNECT, activemq.subscriptionName on SUBSCRIBE.
        who = {"client-id": "py-app"}
        name = {"activemq.subscriptionName": "py-audit"}
        conn, l = connect(headers=who)
        conn.subscribe("/topic/py-durable", id="d", ack="client-individual", headers=dict(name, receipt="sub"))
        l.wait(lambda: "sub" in l.receipts, "subscribe receipt")
        conn.disconnect()
        p, pl = connect()
        for i in range(3):
            # The RECEIPT of a persistent SEND: the message is on disk.
            p.send("/topic/py-durable", f"kept {i}", headers={"persistent": "true"}, receipt=f"p{i}")
        pl.wait(lambda: len(pl.receipts) >= 3, "3 receipts")
        conn, l = connect(headers=who)
        conn.subscribe("/topic/py-durable", id="d", ack="client-individual", headers=name)
        ms = l.wait_messages(3)
        self.assertEqual([m.body for m in ms], ["kept 0", "kept 1", "kept 2"])
        self.assertEqual({m.headers.get("persistent") for m in ms}, {"true"})
        for m in ms:
            conn.ack(m.headers["ack"])
        # An UNSUBSCRIBE naming it deletes it.
        conn.unsubscribe("d", headers=dict(name, receipt="gone"))
        l.wait(lambda: "gone" in l.receipts, "unsubscribe receipt")
        p.send("/topic/py-durable", "nobody keeps this", receipt="late")
        pl.wait(lambda: "late" in pl.receipts, "receipt")
        conn.subscribe("/topic/py-durable", id="d", ack="auto", headers=name)
        time.sleep(0.3)
        self.assertEqual(len(l.messages), 3)
        conn.disconnect()
        p.disconnect()

    def test_tls_round_trip_and_receipts(self):
        sub, got = connect(tls=True)
        pub, _ = connect()
        dest = "/queue/py-tls"
        sub.subscribe(dest, id="t", ack="client-individual")
        for i in range(20):
            pub.send(dest, f"over tls {i}" + "x" * (i * 5000), receipt=f"r{i}")
        msgs = got.wait_messages(20)
        self.assertEqual([m.body.split("x")[0] for m in msgs], [f"over tls {i}" for i in range(20)])
        self.assertEqual(len(msgs[19].body), len("over tls 19") + 19 * 5000)
        for m in msgs:
            sub.ack(m.headers["ack"])
        # And the other way: the TLS client publishes, with a receipt.
        back, back_got = connect()
        back.subscribe("/queue/py-tls-back", id="b")
        sub.send("/queue/py-tls-back", "from the tls side", receipt="tr")
        got.wait(lambda: "tr" in got.receipts, "the TLS client's receipt")
        self.assertEqual(back_got.wait_messages(1)[0].body, "from the tls side")
        for c in (sub, pub, back):
            c.disconnect()

    def test_error_frame(self):
        conn, l = connect()
        conn.subscribe("/queue/py-err", id="dup", ack="auto")
        conn.subscribe("/queue/py-err2", id="dup", ack="auto")
        l.wait(lambda: l.errors, "ERROR")
        self.assertEqual(l.errors[0].headers["message"], "syntax")


class StompPyDialects(unittest.TestCase):
    """The ActiveMQ / Artemis / RabbitMQ extensions as stomp.py users write them."""

    def test_selector_on_a_queue_and_a_topic(self):
        conn, l = connect()
        conn.subscribe("/queue/py-sel", id="q", ack="auto", headers={"selector": "kind = 'wanted' AND n > 1", "receipt": "s1"})
        conn.subscribe("/topic/py-sel", id="t", ack="auto", headers={"selector": "kind IN ('wanted')", "receipt": "s2"})
        l.wait(lambda: {"s1", "s2"} <= set(l.receipts), "subscribe receipts")
        pub, _ = connect()
        for n, kind in enumerate(["wanted", "other", "wanted", "wanted"]):
            pub.send("/queue/py-sel", f"q{n}", headers={"kind": kind, "n": str(n)})
            pub.send("/topic/py-sel", f"t{n}", headers={"kind": kind})
        l.wait_messages(5)
        time.sleep(0.2)
        got = sorted(m.body for m in l.messages)
        self.assertEqual(got, ["q2", "q3", "t0", "t2", "t3"])
        pub.disconnect()
        conn.disconnect()

    def test_malformed_selector_is_an_error(self):
        conn, l = connect()
        conn.subscribe("/queue/py-badsel", id="q", headers={"selector": "kind = "})
        l.wait(lambda: l.errors, "ERROR")
        self.assertEqual(l.errors[0].headers["message"], "syntax")
        self.assertIn("position", l.errors[0].body)

    def test_activemq_wildcards(self):
        conn, l = connect()
        conn.subscribe("/topic/py.prices.>", id="all", headers={"receipt": "w"})
        l.wait(lambda: "w" in l.receipts, "subscribe receipt")
        pub, _ = connect()
        for t in ["/topic/py.prices.a", "/topic/py.prices.b.c", "/topic/py.other"]:
            pub.send(t, t)
        l.wait_messages(2)
        time.sleep(0.2)
        self.assertEqual(sorted(m.body for m in l.messages), ["/topic/py.prices.a", "/topic/py.prices.b.c"])
        pub.disconnect()
        conn.disconnect()

    def test_request_reply_through_a_temp_queue(self):
        service, sl = connect()
        service.subscribe("/queue/py-svc", id="svc", headers={"receipt": "s"})
        sl.wait(lambda: "s" in sl.receipts, "subscribe receipt")
        client, cl = connect()
        client.send("/queue/py-svc", "2+2", headers={"reply-to": "/temp-queue/py-answers"})
        [req] = sl.wait_messages(1)
        service.send(req.headers["reply-to"], "4")
        [answer] = cl.wait_messages(1)
        self.assertEqual(answer.body, "4")
        self.assertEqual(answer.headers["subscription"], "/temp-queue/py-answers")
        service.disconnect()
        client.disconnect()

    def test_scheduled_delay(self):
        conn, l = connect()
        conn.subscribe("/queue/py-later", id="q", headers={"receipt": "s"})
        l.wait(lambda: "s" in l.receipts, "subscribe receipt")
        start = time.monotonic()
        conn.send("/queue/py-later", "later", headers={"AMQ_SCHEDULED_DELAY": "300"})
        conn.send("/queue/py-later", "now")
        ms = l.wait_messages(2)
        self.assertEqual([m.body for m in ms], ["now", "later"])
        self.assertGreaterEqual(time.monotonic() - start, 0.3)
        conn.disconnect()


class StompPyWebSocket(unittest.TestCase):
    def test_subscribe_send_ack_over_websocket(self):
        conn, l = connect(ws=True)
        conn.subscribe("/queue/pyws", id="s", ack="client-individual", headers={"receipt": "sub"})
        l.wait(lambda: "sub" in l.receipts, "subscribe receipt")
        tcp, _ = connect()
        tcp.send("/queue/pyws", "from tcp", headers={"k": "a:b"})
        conn.send("/queue/pyws", "from ws", receipt="sent")
        ms = l.wait_messages(2)
        self.assertEqual(sorted(m.body for m in ms), ["from tcp", "from ws"])
        self.assertEqual([m.headers.get("k") for m in ms if m.body == "from tcp"], ["a:b"])
        for m in ms:
            conn.ack(m.headers["ack"])
        tx = conn.begin()
        conn.send("/queue/pyws", "in tx", transaction=tx)
        conn.commit(tx)
        l.wait_messages(3)
        self.assertEqual(l.messages[2].body, "in tx")
        conn.ack(l.messages[2].headers["ack"])
        conn.disconnect(receipt="bye")
        l.wait(lambda: "bye" in l.receipts, "DISCONNECT receipt")  # see test_disconnect_receipt
        tcp.disconnect()


if __name__ == "__main__":
    unittest.main(verbosity=2)
