#!/usr/bin/env python3
"""A webhook receiver for the demo: verifies each Standard Webhooks signature with nothing but
Python's standard library (an implementation independent of pg_webhook's) and prints it."""
import base64, hashlib, hmac, http.server, json, sys, threading, time

port, secret = int(sys.argv[1]), sys.argv[2]
key = base64.b64decode(secret.removeprefix("whsec_"))
print_lock = threading.Lock()

class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        msg_id, ts = self.headers["webhook-id"], self.headers["webhook-timestamp"]
        signed = f"{msg_id}.{ts}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        sigs = [s.split(",", 1)[1] for s in self.headers["webhook-signature"].split()]
        ok = any(hmac.compare_digest(expected, s) for s in sigs) and abs(time.time() - int(ts)) < 300
        event = json.loads(body)
        with print_lock:
            print(f"receiver: {'VERIFIED' if ok else 'BAD SIGNATURE'} {msg_id} {event['type']}\n"
                  f"          {body.decode()}", flush=True)
        self.send_response(204 if ok else 401)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
