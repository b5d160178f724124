// The admin page in a real browser (Debian's headless Chromium, driven by playwright-core):
// log in, see a /send reflected in the counts, create an installation and see its key once,
// look up a device and its delivery attempts, with no console error and no page error. Saves a
// screenshot. Run by run.sh, which starts pushwarden and a fake FCM and passes:
//   ADMIN_URL, ADMIN_TOKEN, SEND_COMMAND (JSON argv of `pushwarden send ...`), DEVICE_ID,
//   USER_ID, SCREENSHOT, CHROMIUM.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('ADMIN_URL');
const token = env('ADMIN_TOKEN');
const sendCommand = JSON.parse(env('SEND_COMMAND'));
const deviceId = env('DEVICE_ID');
const userId = env('USER_ID');
const screenshot = env('SCREENSHOT');
const STEP = 10_000;

// The network is closed here, and nothing should call out anyway: no background services.
const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
  ],
  timeout: 60_000,
});
const problems = [];
const externalRequests = [];
let ok = false;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(STEP);
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // The wrong token below is answered 401, which Chromium logs as a failed load: expected.
    if (/status of 401/.test(m.text()) && m.location().url.endsWith('/admin/login')) return;
    problems.push(`console: ${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => { if (!r.url().startsWith(base) && !r.url().startsWith('data:')) externalRequests.push(r.url()); });

  const text = async (selector) => (await page.locator(selector).textContent()).trim();

  // 1. The login form, a wrong token, then the right one.
  await page.goto(`${base}/admin`);
  await page.fill('#token', 'not-the-admin-token');
  await Promise.all([page.waitForURL(`${base}/admin/login`), page.click('#login')]);
  assert.match(await text('#login-error'), /Wrong token/);
  await page.fill('#token', token);
  await Promise.all([page.waitForURL(`${base}/admin`), page.click('#login')]);
  await page.locator('#live').waitFor();
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'pushwarden_admin');
  assert.ok(session, 'session cookie set');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(session.path, '/admin');

  // 2. The hub client run.sh connected, and a /send, show in the counts.
  assert.equal(await text('#connections-hub'), '1');
  assert.match(await page.locator('#connections').textContent(), /hub\s*WebSockets\s*messagepack\s*1/);
  const before = Number(await text('#notifications-15m'));
  const sent = execFileSync(sendCommand[0], sendCommand.slice(1), { encoding: 'utf8' });
  assert.match(sent, /"delivered"/, sent);
  await page.click('#refresh');
  await page.locator('#live').waitFor();
  const after = Number(await text('#notifications-15m'));
  assert.equal(after, before + 1, `notifications went from ${before} to ${after}`);
  assert.equal(await page.locator('#chart rect[fill="#175ddc"]').count() >= 1, true, 'a bar in the chart');

  // 3. A new installation; its key shows once.
  await page.fill('#email', 'ops@example.com');
  await Promise.all([page.waitForURL(`${base}/admin/installations`), page.click('#create')]);
  const id = await text('#new-id');
  const key = await text('#new-key');
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.match(key, /^[A-Za-z0-9]{30}$/);
  const row = page.locator(`#installation-list tr[data-id="${id}"]`);
  assert.match(await row.textContent(), /enabled.*ops@example\.com/);
  await page.click('#refresh');
  await page.locator('#installation-list').waitFor();
  assert.equal((await page.content()).includes(key), false, 'the key is not shown again');

  // 4. The device the test registered, with the attempt that delivered the push.
  await page.fill('#q', userId);
  await Promise.all([page.waitForURL(/\/admin\/devices\?q=/), page.click('#find')]);
  await page.locator('.device').first().waitFor();
  const device = await page.locator('.device').first().textContent();
  assert.ok(device.includes(deviceId), device);
  let outcome = await page.locator('.attempts .outcome').first().textContent().catch(() => '');
  // The push may still be on its way to the fake: look again until it has an outcome.
  for (let i = 0; i < 50 && !outcome; i++) {
    await page.waitForTimeout(100);
    await page.reload();
    outcome = await page.locator('.attempts .outcome').first().textContent().catch(() => '');
  }
  assert.equal(outcome.trim(), 'delivered', device);

  // 5. Back to the dashboard for the screenshot.
  await page.click('#refresh');
  await page.locator('#live').waitFor();
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });

  assert.deepEqual(problems, [], 'no console errors or page errors');
  assert.deepEqual(externalRequests, [], 'no request leaves the service');
  ok = true;
} finally {
  await browser.close();
}
console.log(ok ? `admin page: ok (screenshot: ${screenshot})` : 'admin page: FAILED');
