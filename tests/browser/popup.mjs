// Drives the popup login the way Duplicati's newest UI does: an opener page
// window.open()s the broker's `/?type=ID`, the user logs in (the mock
// provider approves at once), and the logged-in page posts
// `authid:<AuthID>` back to the opener.
//
// Usage: node popup.mjs <opener-url> [screenshot-dir] [no-message]
// Prints one JSON line: {"message", "origin", "popupAuthid", "status",
// "errors"}. With `no-message` the broker is expected not to post to this
// opener (its origin is not allowed): the run does not wait for a message,
// reports whatever arrived, and takes no screenshots.
// Uses the system Chromium only (/usr/bin/chromium); never downloads one.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const openerUrl = process.argv[2];
const shots = process.argv[3] || path.join('target', 'screenshots');
const expectMessage = process.argv[4] !== 'no-message';
if (!openerUrl) {
  console.error('usage: node popup.mjs <opener-url> [screenshot-dir]');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!fs.existsSync(executablePath)) {
  console.error(`${executablePath} is missing: apt-get update && apt-get install -y chromium`);
  process.exit(3);
}
fs.mkdirSync(shots, { recursive: true });
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'oauth-broker-chromium-'));

const phone = { width: 390, height: 844 };
const desktop = { width: 1280, height: 860 };

async function screenshots(page, name) {
  await page.setViewportSize(phone);
  await page.screenshot({ path: path.join(shots, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(desktop);
  await page.screenshot({ path: path.join(shots, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(phone);
}

let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    viewport: phone,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
    ],
  });
  const errors = [];
  context.on('weberror', (e) => errors.push(String(e.error())));
  const opener = context.pages()[0] || (await context.newPage());
  await opener.goto(openerUrl);

  const [popup] = await Promise.all([
    context.waitForEvent('page'),
    opener.click('#open'),
  ]);
  popup.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  await popup.waitForLoadState('load');
  if (expectMessage) {
    await screenshots(popup, 'index');
  }

  await Promise.all([
    popup.waitForURL(/\/logged-in/, { timeout: 20000 }),
    popup.click('a.button'),
  ]);
  await popup.waitForLoadState('load');
  const popupAuthid = (await popup.textContent('#authid'))?.trim() ?? null;
  const status = (await popup.textContent('#status'))?.trim() ?? null;

  if (expectMessage) {
    await opener.waitForFunction(() => window.received !== null, null, { timeout: 10000 });
  }
  const received = await opener.evaluate(() => ({
    message: window.received,
    origin: window.receivedOrigin,
  }));
  if (expectMessage) {
    await screenshots(popup, 'logged-in');
  }

  console.log(JSON.stringify({ ...received, popupAuthid, status, errors }));
} catch (e) {
  console.error(`browser run failed: ${e && e.message ? e.message : e}`);
  process.exitCode = 1;
} finally {
  if (context) {
    await context.close();
  }
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
