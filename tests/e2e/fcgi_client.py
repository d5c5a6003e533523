"""fcgi_client.py — a minimal FastCGI client (the spec's record layer, written
from the FastCGI 1.0 specification) for talking to sparkd's socket without
nginx: to time the FastCGI hop alone and to send requests nginx never would
(lying CONTENT_LENGTH, absurd parameter lengths, no path)."""
import json
import socket
import struct

BEGIN, ABORT, END, PARAMS, STDIN, STDOUT, STDERR = 1, 2, 3, 4, 5, 6, 7


def record(rtype, content, req_id=1):
    out = b""
    # a record holds at most 65535 content bytes
    for i in range(0, max(len(content), 1), 65535):
        chunk = content[i:i + 65535]
        pad = (8 - len(chunk) % 8) % 8
        out += struct.pack(">BBHHBB", 1, rtype, req_id, len(chunk), pad, 0) + chunk + b"\0" * pad
        if not content:
            break
    return out


def nv_len(n):
    return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)


def params(pairs):
    body = b""
    for k, v in pairs.items():
        k = k.encode() if isinstance(k, str) else k
        v = v.encode() if isinstance(v, str) else v
        body += nv_len(len(k)) + nv_len(len(v)) + k + v
    return body


class Conn:
    def __init__(self, path, timeout=60):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)

    def close(self):
        self.s.close()

    def send_raw(self, data):
        self.s.sendall(data)

    def request(self, env, body=b"", keep=True, raw_params=None):
        """Sends one request; returns (status, headers dict, body bytes)."""
        flags = 1 if keep else 0
        msg = record(BEGIN, struct.pack(">HB5x", 1, flags))
        p = raw_params if raw_params is not None else params(env)
        msg += record(PARAMS, p) + record(PARAMS, b"")
        if body:
            msg += record(STDIN, body)
        msg += record(STDIN, b"")
        self.s.sendall(msg)
        return self.read_response()

    def read_exact(self, n):
        b = b""
        while len(b) < n:
            k = self.s.recv(n - len(b))
            if not k:
                raise ConnectionError("closed after %d of %d bytes" % (len(b), n))
            b += k
        return b

    def read_response(self):
        out = b""
        while True:
            h = self.read_exact(8)
            _, rtype, _, clen, pad, _ = struct.unpack(">BBHHBB", h)
            content = self.read_exact(clen + pad)[:clen]
            if rtype == STDOUT:
                out += content
            elif rtype == END:
                break
        head, _, body = out.partition(b"\r\n\r\n")
        headers = {}
        status = 200
        for line in head.split(b"\r\n"):
            k, _, v = line.partition(b":")
            headers[k.strip().decode().lower()] = v.strip().decode()
        if "status" in headers:
            status = int(headers["status"].split()[0])
        return status, headers, body


def env_for(method, path, body=b"", auth=None):
    e = {"REQUEST_METHOD": method, "DOCUMENT_URI": path, "REQUEST_URI": path, "SCRIPT_NAME": path,
         "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json", "SERVER_PROTOCOL": "HTTP/1.1"}
    if auth:
        e["HTTP_AUTHORIZATION"] = "Bearer " + auth
    return e


def stream_completion(sock, key, prompt, n, model="synth", timeout=120):
    """Sends a greedy streaming /v1/completions request of n tokens (ignore_eos) over one
    connection and returns the Conn, its reply still to be read (read_sse)."""
    data = json.dumps({"model": model, "prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True,
                       "stream": True}).encode()
    c = Conn(sock, timeout=timeout)
    msg = record(BEGIN, struct.pack(">HB5x", 1, 0))
    msg += record(PARAMS, params(env_for("POST", "/v1/completions", data, auth=key))) + record(PARAMS, b"")
    msg += record(STDIN, data) + record(STDIN, b"")
    c.s.sendall(msg)
    return c


def read_sse(c, stop_after=None):
    """Reads STDOUT records until END_REQUEST, or until stop_after SSE data lines have come.
    Returns (the data lines, whether END_REQUEST came, the raw STDOUT bytes)."""
    out = b""
    events = []
    while True:
        _, rtype, _, clen, pad, _ = struct.unpack(">BBHHBB", c.read_exact(8))
        content = c.read_exact(clen + pad)[:clen]
        if rtype == STDOUT:
            out += content
            events = [l[6:] for l in out.split(b"\n") if l.startswith(b"data: ")]
            if stop_after and len(events) >= stop_after:
                return events, False, out
        elif rtype == END:
            return events, True, out
