// Small async helpers shared by the suites.
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Every wait in the suite is bounded; 10 s is the ceiling. */
export const MAX_WAIT_MS = 10_000;

export function withTimeout(promise, ms, label) {
  if (ms > MAX_WAIT_MS) throw new Error(`wait of ${ms} ms exceeds the ${MAX_WAIT_MS} ms ceiling (${label})`);
  let timer;
  return Promise.race([
    promise,
    new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${label}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Queue of received items with bounded waits. */
export class Inbox {
  constructor(label) {
    this.label = label;
    this.items = [];
    this._read = 0;
    this._waiters = [];
  }
  push(item) {
    this.items.push(item);
    for (const w of this._waiters.splice(0)) w();
  }
  get length() {
    return this.items.length;
  }
  /** Next unread item, waiting up to ms. */
  async next(ms = MAX_WAIT_MS, what = "message") {
    await this.waitForCount(this._read + 1, ms, what);
    return this.items[this._read++];
  }
  async waitForCount(n, ms = MAX_WAIT_MS, what = "message") {
    if (this.items.length >= n) return this.items;
    await withTimeout(
      new Promise((resolve) => {
        const check = () => {
          if (this.items.length >= n) resolve();
          else this._waiters.push(check);
        };
        check();
      }),
      ms,
      `${this.label}: waiting for ${what} #${n} (have ${this.items.length}: ${preview(this.items)})`,
    );
    return this.items;
  }
}

export function preview(v, max = 600) {
  let s;
  try {
    s = JSON.stringify(v, (_k, x) => (x instanceof Date ? `Date(${x.toISOString()})` : x instanceof Uint8Array ? `bytes(${x.length})` : x));
  } catch {
    s = String(v);
  }
  return s && s.length > max ? `${s.slice(0, max)}...` : s;
}
