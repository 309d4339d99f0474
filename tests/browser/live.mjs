// Drives headless Chromium against cometgate's live page; run by the Rust test
// tests/gateway/live_page.rs, which starts the node, the gateway and the load.
//
//   node live.mjs <page url> <flooding client> <screenshot path>
//
// Prints `filled` once the tables have rows and the page has redrawn on its own, and
// waits for the flooding client (which the Rust test then starts) to head the client
// list within 5 s. Exits non-zero, saying why, on any failed check or page error.
import { chromium } from 'playwright-core';

const [url, flooder, screenshot] = process.argv.slice(2);
if (!url || !flooder || !screenshot) {
  console.error('usage: node live.mjs <page url> <flooding client> <screenshot path>');
  process.exit(2);
}
const FLOOD_ON_TOP_MS = 5_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  // As root (CI), Chromium runs only without its sandbox.
  args: ['--no-sandbox'],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  let loads = 0;
  page.on('load', () => { loads += 1; });

  await page.goto(url);
  await page.waitForFunction(
    () => ['nodes', 'lanes', 'clients'].every((id) => document.querySelector(`#${id} tbody tr`)),
    null,
    { timeout: 15_000 },
  );
  // The page redraws by itself: the node's row changes as blocks come, with no reload.
  const before = await page.textContent('#nodes tbody');
  await page.waitForFunction(
    (text) => document.querySelector('#nodes tbody').textContent !== text,
    before,
    { timeout: 10_000 },
  );
  const lanes = await page.$$eval('#lanes tbody tr', (rows) => rows.map((r) => r.dataset.lane));
  if (lanes.join() !== 'light,heavy') throw new Error(`lanes table shows ${lanes}`);
  console.log('filled');

  const started = Date.now();
  await page.waitForFunction(
    (ip) => document.querySelector('#clients tbody tr')?.dataset.client === ip,
    flooder,
    { timeout: FLOOD_ON_TOP_MS },
  ).catch(async () => {
    const top = await page.$$eval('#clients tbody tr', (rows) => rows.map((r) => r.dataset.client));
    throw new Error(`${flooder} not at the top of the clients within ${FLOOD_ON_TOP_MS} ms: ${top}`);
  });
  console.log(`flooder on top after ${Date.now() - started} ms`);

  // Every sparkline draws a line of at least three points (15 s of history).
  await page.waitForFunction(
    () => [...document.querySelectorAll('#sparks svg')].every(
      (s) => (s.querySelector('polyline')?.getAttribute('points') ?? '').split(' ').length >= 3,
    ),
    null,
    { timeout: 30_000 },
  );
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot ${screenshot}`);
  if (loads !== 1) problems.push(`the page loaded ${loads} times: it must update in place`);
  if (problems.length) throw new Error(problems.join('\n'));
} catch (e) {
  console.error(e.message);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
