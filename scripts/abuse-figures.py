#!/usr/bin/env python3
"""The hardening review's inbound attacks at their original scale, against a pushwarden binary.

Prints one line per row of issue 13's table (rows 1, 2, 3, 6, 9) with what the server held:
resident memory before and at peak, how long the attack's sockets stayed open, whether /alive
kept answering a client on another address, and the statuses the attacker got. The abuse suite
(`cargo test -p pushwarden --test abuse`) asserts the same bounds at a smaller scale on every CI
run; this script is for the figures.

    scripts/abuse-figures.py [path/to/pushwarden]     (default: target/debug/pushwarden)
"""
import asyncio
import collections
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/pushwarden"
ATTACKER, LEGIT = "127.0.0.1", "127.0.0.2"
# asyncio logs every write to a socket the server has closed; those are expected here.
logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def spare_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, extra=None, nofile=256):
        self.dir = tempfile.mkdtemp(prefix="pushwarden-abuse-")
        self.port = spare_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PUSHWARDEN_LISTEN": f"127.0.0.1:{self.port}",
            "PUSHWARDEN_DATA_DIR": self.dir + "/data",
            "PUSHWARDEN_TRUSTED_PROXIES": "none",
            "RUST_LOG": "error",
        }
        env.update(extra or {})
        self.env = env
        self.proc = subprocess.Popen(
            ["sh", "-c", f'ulimit -n {nofile} && exec "$0" serve', BIN],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if self.alive(timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("server did not start")

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def alive(self, timeout=2.0):
        t = time.time()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout, source_address=(LEGIT, 0))
        s.sendall(b"GET /alive HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = s.recv(4096)
        s.close()
        return int(data.split()[1]) if data else 0, time.time() - t

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


async def open_from(port, source=ATTACKER):
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def status_and_time(reader, limit):
    """(status or 0 if closed without one, seconds) or (None, limit) if still open."""
    t = time.time()
    try:
        data = await asyncio.wait_for(reader.read(4096), limit)
        status = int(data.split()[1]) if data.startswith(b"HTTP/") else 0
        return status, time.time() - t
    except (asyncio.TimeoutError, TimeoutError):
        return None, limit
    except OSError:
        return 0, time.time() - t


class Peak:
    def __init__(self, server):
        self.server, self.base, self.peak, self.alive = server, server.rss_mb(), 0.0, []

    async def watch(self, stop):
        while not stop.is_set():
            self.peak = max(self.peak, self.server.rss_mb())
            try:
                self.alive.append(await asyncio.to_thread(self.server.alive))
            except OSError as e:
                self.alive.append((str(e), 0))
            await asyncio.sleep(0.25)

    def line(self):
        ok = [a for a in self.alive if a[0] == 200]
        worst = max((a[1] for a in ok), default=0)
        return (f"RSS {self.base:.0f} -> peak {self.peak:.0f} MB; /alive from another address "
                f"{len(ok)}/{len(self.alive)} answered (slowest {worst * 1000:.0f} ms)")


async def attack(server, coro):
    peak = Peak(server)
    stop = asyncio.Event()
    watcher = asyncio.create_task(peak.watch(stop))
    try:
        result = await coro
    finally:
        stop.set()
        await watcher
    return result, peak


def summary(results, limit):
    counts = collections.Counter("open" if s is None else s for s, _ in results)
    closed = [t for s, t in results if s is not None]
    return (f"statuses {dict(counts)}; all answered or closed within "
            f"{max(closed, default=0):.1f} s" if len(closed) == len(results)
            else f"statuses {dict(counts)}; {len(results) - len(closed)} still open after {limit} s")


async def row1(server):
    """500 anonymous negotiates, each followed by a long-poll POST of ~1 MiB that stalls."""
    async def one(i):
        try:
            r, w = await open_from(server.port)
            w.write(b"POST /notifications/anonymous-hub/negotiate?negotiateVersion=1&Token=t HTTP/1.1\r\n"
                    b"host: x\r\ncontent-length: 0\r\n\r\n")
            data = await r.read(4096)
            if not data.startswith(b"HTTP/1.1 200"):
                w.close()
                return int(data.split()[1]) if data else 0, 0.0
            token = json.loads(data.split(b"\r\n\r\n", 1)[1])["connectionToken"]
            w.write(f"POST /notifications/anonymous-hub?id={token}&Token=t HTTP/1.1\r\nhost: x\r\n"
                    f"content-length: 1048576\r\n\r\n".encode())
            for _ in range(1000):
                w.write(b"x" * 1024)
            result = await status_and_time(r, 25)
            w.close()
            return result
        except OSError:
            return 0, 0.0
    return await asyncio.gather(*(one(i) for i in range(500)))


async def row2(server):
    """3,000 connections: /send with a wrong bearer and a 10 MiB body sent slowly."""
    async def one(i):
        try:
            r, w = await open_from(server.port)
        except OSError:
            return 0, 0.0
        path = ["/send", "/push/send", "/push/register"][i % 3]
        w.write(f"POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer wrong\r\n"
                f"content-type: application/json\r\ncontent-length: 10485760\r\n\r\n".encode())
        w.write(b" " * 65536)
        result = await status_and_time(r, 45)
        w.close()
        return result
    return await asyncio.gather(*(one(i) for i in range(3000)))


async def row3(server):
    """300 idle TCP connections, half of them drip-feeding headers a byte a second."""
    async def one(i):
        try:
            r, w = await open_from(server.port)
        except OSError:
            return 0, 0.0
        # Watch for the server's answer or close from the start, while dripping.
        watch = asyncio.create_task(status_and_time(r, 60))
        if i % 2:
            for b in b"GET /alive HTTP/1.1\r\nhost: x\r\n\r\n":
                if watch.done():
                    break
                w.write(bytes([b]))
                await asyncio.sleep(1)
        result = await watch
        w.close()
        return result
    return await asyncio.gather(*(one(i) for i in range(300)))


async def row6(server, installation, key):
    """700 token requests with a wrong secret, then the real key from another address."""
    def form(secret):
        body = (f"grant_type=client_credentials&scope=api.push&client_id=installation.{installation}"
                f"&client_secret={secret}").encode()
        return (f"POST /connect/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body

    async def ask(secret, source):
        r, w = await open_from(server.port, source)
        w.write(form(secret))
        data = await r.read(65536)
        w.close()
        return int(data.split()[1]) if data else 0
    wrong = collections.Counter([await ask("wrong", ATTACKER) for _ in range(700)])
    right_elsewhere = await ask(key, LEGIT)
    right_same = await ask(key, ATTACKER)
    return wrong, right_elsewhere, right_same


async def row9(server):
    """200,000 unauthenticated negotiates on 20 keep-alive connections."""
    counts = collections.Counter()

    async def conn(n):
        r, w = await open_from(server.port)
        req = (b"POST /notifications/anonymous-hub/negotiate?negotiateVersion=1 HTTP/1.1\r\n"
               b"host: x\r\ncontent-length: 0\r\n\r\n")
        for _ in range(n):
            w.write(req)
            head = await r.readuntil(b"\r\n\r\n")
            length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n")
                           if l.lower().startswith(b"content-length:")), 0)
            await r.readexactly(length)
            counts[int(head.split()[1])] += 1
        w.close()
    t = time.time()
    await asyncio.gather(*(conn(10000) for _ in range(20)))
    return counts, time.time() - t


async def main():
    print(f"binary: {BIN}")
    s = Server(nofile=4096)
    res, peak = await attack(s, row1(s))
    print(f"row 1 (500 x negotiate + stalled 1 MiB long-poll POST, file limit 4096): {summary(res, 25)}; {peak.line()}")
    s.stop()
    s = Server({"PUSHWARDEN_NEGOTIATES_PER_MINUTE": "0"}, nofile=4096)
    res, peak = await attack(s, row1(s))
    print(f"row 1, negotiate rate limit off: {summary(res, 25)}; {peak.line()}")
    s.stop()

    s = Server(nofile=4096)
    res, peak = await attack(s, row2(s))
    print(f"row 2 (3,000 x wrong bearer + slow 10 MiB body, file limit 4096): {summary(res, 45)}; {peak.line()}")
    s.stop()

    s = Server()
    res, peak = await attack(s, row3(s))
    print(f"row 3 (300 idle / drip-fed sockets, file limit 256): {summary(res, 60)}; {peak.line()}")
    s.stop()

    data = tempfile.mkdtemp(prefix="pushwarden-abuse-inst-")
    out = subprocess.run([BIN, "installation", "create", "--email", "ops@example.com"],
                         env={"PATH": os.environ.get("PATH", ""), "PUSHWARDEN_DATA_DIR": data + "/data"},
                         capture_output=True, text=True, check=True).stdout
    fields = dict(l.split(":", 1) for l in out.splitlines() if ":" in l)
    s = Server({"PUSHWARDEN_DATA_DIR": data + "/data"})
    wrong, elsewhere, same = await row6(s, fields["id"].strip(), fields["key"].strip())
    metrics = subprocess.run(["curl", "-s", f"http://127.0.0.1:{s.port}/metrics"], capture_output=True, text=True).stdout
    print(f"row 6 (700 wrong secrets): attacker got {dict(wrong)}; the real key from another address: "
          f"{elsewhere}, from the attacker's address: {same}; installation id in /metrics: "
          f"{fields['id'].strip() in metrics}")
    s.stop()
    shutil.rmtree(data, ignore_errors=True)

    s = Server()
    (counts, secs), peak = await attack(s, row9(s))
    print(f"row 9 (200,000 negotiates): {dict(counts)} in {secs:.0f} s; {peak.line()}; "
          f"RSS 15 s later {(time.sleep(15), s.rss_mb())[1]:.0f} MB")
    s.stop()


asyncio.run(main())
