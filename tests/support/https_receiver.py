#!/usr/bin/env python3
"""HTTPS receiver for the TLS tests: answers 204 and logs "<webhook-id> <record id>
<authorization>" per delivery. A POST to /token is an OAuth token endpoint: it logs the request's
grant_type and the protocol its connection agreed by ALPN ("None" for none) to
<logfile>.tokens, and answers the token "tok-tls". Arguments: port cert key logfile
[client-ca]; with client-ca, only clients presenting a certificate that CA signed get through the
handshake (mTLS)."""
import http.server, json, ssl, sys, urllib.parse

port, cert, key, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
client_ca = sys.argv[5] if len(sys.argv) > 5 else None

class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/token":
            form = urllib.parse.parse_qs(body.decode())
            with open(log + ".tokens", "a") as f:
                alpn = self.connection.selected_alpn_protocol()
                f.write(f"{form.get('grant_type', ['-'])[0]} {alpn}\n")
            answer = json.dumps({"access_token": "tok-tls", "token_type": "Bearer",
                                 "expires_in": 3600}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        record = json.loads(body).get("record") or {}
        authorization = self.headers.get("authorization", "-")
        with open(log, "a") as f:
            f.write(f"{self.headers['webhook-id']} {record.get('id')} {authorization}\n")
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
context.set_alpn_protocols(["http/1.1"])
if client_ca:
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(client_ca)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
