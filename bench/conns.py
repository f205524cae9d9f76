#!/usr/bin/env python3
"""Connection helper for bench/connections.sh (Python 3 standard library only).

Two commands:

  conns.py hold --port P --mode MODE --count N [--path PATH] [--ready FILE] [--stats FILE]
      Opens N connections to 127.0.0.1:P and holds them until SIGTERM/SIGINT (or --seconds).
      MODE:
        idle       connect and send nothing
        keepalive  send one `HEAD PATH` (HTTP/1.1 keep-alive), read the response, stay open
        slowloris  send a `GET PATH` (--method) request head one byte every --interval seconds; when
                   the server cuts the connection, count it and open a new one
        trickle    send a `POST PATH` (--method) head with a large Content-Length, then one body byte
                   every --interval seconds; reconnect when cut, as for slowloris
      Connections are spread over source addresses 127.0.1.1, 127.0.1.2, ... (--per-source
      connections each), like many clients rather than one. When all N were tried, writes a
      JSON summary to --ready; at exit writes the final one (how many were still open, how
      many the server cut) to --stats.

  conns.py latency --port P --path PATH [--count N] [--interval-ms MS] [--method HEAD]
      N sequential requests, each on a new connection (connect, request, whole response,
      close), and prints one JSON line: n, ok (2xx), errors, p50/p90/p99/max in ms.
"""

import argparse
import asyncio
import json
import math
import os
import resource
import signal
import socket
import sys
import time


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass


def source_address(i, per_source):
    n = i // per_source
    return "127.0.%d.%d" % (1 + n // 250, 1 + n % 250)


class Holder:
    def __init__(self, args):
        self.a = args
        self.open = 0
        self.opened = 0
        self.failed = 0
        self.cut = 0
        self.statuses = {}
        self.errors = {}
        self.stop = asyncio.Event()

    def error(self, e):
        name = type(e).__name__
        self.errors[name] = self.errors.get(name, 0) + 1

    def summary(self):
        return {
            "mode": self.a.mode,
            "count": self.a.count,
            "opened": self.opened,
            "failed": self.failed,
            "still_open": self.open,
            "cut_by_server": self.cut,
            "statuses": self.statuses,
            "errors": self.errors,
        }

    async def connect(self, i):
        return await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1",
                self.a.port,
                local_addr=(source_address(i, self.a.per_source), 0),
            ),
            timeout=self.a.timeout,
        )

    def head(self):
        a = self.a
        if a.mode == "slowloris":
            return (
                "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris%s\r\n\r\n"
                % (a.method or "GET", a.path, "-" * 200)
            ).encode()
        if a.mode == "trickle":
            return (
                "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/octet-stream\r\n"
                "x-image-meta-name: trickle\r\nx-image-meta-disk_format: raw\r\n"
                "x-image-meta-container_format: bare\r\n"
                "Content-Length: 1000000000\r\n\r\n" % (a.method or "POST", a.path)
            ).encode()
        return ("HEAD %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % a.path).encode()

    async def one(self, i, started):
        """One connection for its whole life (and its successors, for the slow modes)."""
        first = True
        while not self.stop.is_set():
            try:
                reader, writer = await self.connect(i)
            except Exception as e:  # refused, timed out, out of files...
                self.error(e)
                if first:
                    self.failed += 1
                    started()
                    first = False
                if self.a.mode in ("idle", "keepalive"):
                    return
                await asyncio.sleep(self.a.interval)
                continue
            try:
                if self.a.mode == "keepalive":
                    writer.write(self.head())
                    await writer.drain()
                    data = await asyncio.wait_for(
                        reader.readuntil(b"\r\n\r\n"), timeout=self.a.timeout
                    )
                    status = data.split(b" ", 2)[1].decode() if b" " in data else "?"
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                    if not status.startswith("2"):
                        raise ConnectionError("status " + status)
                elif self.a.mode == "trickle":
                    writer.write(self.head())
                    await writer.drain()
            except Exception as e:
                self.error(e)
                writer.close()
                if first:
                    self.failed += 1
                    started()
                    first = False
                if self.a.mode in ("idle", "keepalive"):
                    return
                await asyncio.sleep(self.a.interval)
                continue
            self.open += 1
            if first:
                self.opened += 1
                started()
                first = False
            try:
                await self.hold(reader, writer)
            finally:
                self.open -= 1
                writer.close()
            if self.a.mode in ("idle", "keepalive"):
                return
            # Cut by the server: come back after a pause (not in a tight loop against a
            # server that refuses at once).
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=self.a.interval)
            except asyncio.TimeoutError:
                pass

    async def hold(self, reader, writer):
        """Until stop: idle/keepalive wait for the close; slow modes send a byte per interval."""
        a = self.a
        if a.mode in ("idle", "keepalive"):
            stop = asyncio.ensure_future(self.stop.wait())
            read = asyncio.ensure_future(reader.read(4096))
            done, _ = await asyncio.wait({stop, read}, return_when=asyncio.FIRST_COMPLETED)
            if read in done:
                self.cut += 1
            for t in (stop, read):
                t.cancel()
            return
        payload = self.head() if a.mode == "slowloris" else b"x"
        pos = 0
        while not self.stop.is_set():
            try:
                writer.write(payload[pos : pos + 1])
                pos = (pos + 1) % len(payload)
                await writer.drain()
                data = await asyncio.wait_for(reader.read(4096), timeout=a.interval)
                # Anything read (a 408, a 400) or the end of stream: the server cut us.
                self.cut += 1
                return
            except asyncio.TimeoutError:
                continue
            except Exception as e:
                self.error(e)
                self.cut += 1
                return

    async def run(self):
        a = self.a
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        gate = asyncio.Semaphore(a.parallel)
        tasks = []
        t0 = time.monotonic()

        async def gated(i):
            await gate.acquire()
            state = {"released": False}

            def started():
                if not state["released"]:
                    state["released"] = True
                    gate.release()

            try:
                await self.one(i, started)
            finally:
                started()

        for i in range(a.count):
            tasks.append(asyncio.ensure_future(gated(i)))
        while self.opened + self.failed < a.count and not self.stop.is_set():
            await asyncio.sleep(0.05)
        ready = dict(self.summary(), seconds_to_open=round(time.monotonic() - t0, 3))
        if a.ready:
            with open(a.ready + ".tmp", "w") as f:
                json.dump(ready, f)
            os.rename(a.ready + ".tmp", a.ready)
        if a.seconds:
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=a.seconds)
            except asyncio.TimeoutError:
                pass
        else:
            await self.stop.wait()
        final = self.summary()
        self.stop.set()
        await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        out = json.dumps(final)
        if a.stats:
            with open(a.stats, "w") as f:
                f.write(out + "\n")
        else:
            print(out)


def percentile(sorted_ms, p):
    if not sorted_ms:
        return None
    k = max(0, min(len(sorted_ms) - 1, math.ceil(p / 100.0 * len(sorted_ms)) - 1))
    return round(sorted_ms[k], 3)


def latency(a):
    req = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % (a.method, a.path)).encode()
    times, ok, errors, statuses = [], 0, 0, {}
    for _ in range(a.count):
        t0 = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", a.port), timeout=a.timeout) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(req)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            dt = (time.perf_counter() - t0) * 1000.0
            status = data.split(b" ", 2)[1].decode() if data.count(b" ") >= 2 else "none"
            statuses[status] = statuses.get(status, 0) + 1
            if status.startswith("2"):
                ok += 1
                times.append(dt)
            else:
                errors += 1
        except Exception as e:
            errors += 1
            name = type(e).__name__
            statuses[name] = statuses.get(name, 0) + 1
        if a.interval_ms:
            time.sleep(a.interval_ms / 1000.0)
    times.sort()
    print(
        json.dumps(
            {
                "n": a.count,
                "ok": ok,
                "errors": errors,
                "statuses": statuses,
                "p50_ms": percentile(times, 50),
                "p90_ms": percentile(times, 90),
                "p99_ms": percentile(times, 99),
                "max_ms": round(times[-1], 3) if times else None,
            }
        )
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hold")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--mode", choices=["idle", "keepalive", "slowloris", "trickle"], required=True)
    h.add_argument("--count", type=int, required=True)
    h.add_argument("--path", default="/")
    h.add_argument("--method", help="request method (slowloris: GET, trickle: POST)")
    h.add_argument("--interval", type=float, default=1.0, help="seconds between bytes (slow modes)")
    h.add_argument("--per-source", type=int, default=200, help="connections per source address")
    h.add_argument("--parallel", type=int, default=256, help="connections being opened at once")
    h.add_argument("--timeout", type=float, default=5.0, help="connect and response timeout")
    h.add_argument("--seconds", type=float, default=0, help="stop after this long (0: at SIGTERM)")
    h.add_argument("--ready", help="file to write the summary to once all are opened")
    h.add_argument("--stats", help="file to write the final summary to (default stdout)")
    l = sub.add_parser("latency")
    l.add_argument("--port", type=int, required=True)
    l.add_argument("--path", required=True)
    l.add_argument("--method", default="HEAD")
    l.add_argument("--count", type=int, default=500)
    l.add_argument("--interval-ms", type=float, default=0)
    l.add_argument("--timeout", type=float, default=5.0)
    a = p.parse_args()
    raise_nofile()
    if a.cmd == "hold":
        asyncio.run(Holder(a).run())
    else:
        latency(a)


if __name__ == "__main__":
    sys.exit(main())
