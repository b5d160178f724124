// Minimal TCP proxy (node:net) used to drop a client's sockets without the server's help.
import net from "node:net";

export async function startProxy(targetPort, targetHost = "127.0.0.1") {
  const pairs = new Set();
  const held = [];
  let holding = false;
  let accepted = 0;
  let forwarded = 0;

  const forward = (down) => {
    const up = net.connect(targetPort, targetHost);
    const pair = { down, up };
    pairs.add(pair);
    forwarded++;
    const kill = () => {
      down.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    down.on("error", kill);
    up.on("error", kill);
    down.on("close", kill);
    up.on("close", kill);
    down.pipe(up);
    up.pipe(down);
  };

  const server = net.createServer((sock) => {
    accepted++;
    sock.on("error", () => {});
    if (holding) {
      sock.pause(); // bytes (e.g. the WebSocket upgrade request) stay buffered until release()
      held.push(sock);
    } else {
      forward(sock);
    }
  });
  await new Promise((res, rej) => {
    server.once("error", rej);
    server.listen(0, "127.0.0.1", res);
  });
  const port = server.address().port;

  return {
    port,
    base: `http://127.0.0.1:${port}`,
    get accepted() {
      return accepted;
    },
    get forwarded() {
      return forwarded;
    },
    get open() {
      return pairs.size;
    },
    get held() {
      return held.length;
    },
    /** New client connections are accepted but not forwarded until release(). */
    hold() {
      holding = true;
    },
    /** Abruptly destroy every proxied socket pair (no WebSocket close frame either way). */
    dropAll() {
      const n = pairs.size;
      for (const { down, up } of [...pairs]) {
        down.destroy();
        up.destroy();
      }
      pairs.clear();
      return n;
    },
    release() {
      holding = false;
      for (const s of held.splice(0)) if (!s.destroyed) forward(s);
    },
    async close() {
      this.dropAll();
      for (const s of held.splice(0)) s.destroy();
      await new Promise((res) => server.close(() => res()));
    },
  };
}
