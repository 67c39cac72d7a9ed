#!/usr/bin/env python3
"""HTTPS receiver for the TLS fault test: answers 204 and logs "<webhook-id> <record id>" per
request. Arguments: port cert key logfile."""
import http.server, json, ssl, sys

port, cert, key, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        record = json.loads(body).get("record") or {}
        with open(log, "a") as f:
            f.write(f"{self.headers['webhook-id']} {record.get('id')}\n")
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
