// `scripts/bench explorer-paint`: the first contentful paint of each explorer view in Debian's
// chromium (20 loads each, every one in a fresh page), p50 and p95, beside the same
// measurement of the server's static stylesheet opened as a document (the baseline; the goal
// is a view's p95 at most 3x its). Against a three-node devnet of REMEMBRANCER_BIN. `--json`
// prints the figures for programs.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { chromium } from 'playwright-core';

const LOADS = 20;
const VIEWS = ['/', '/members', '/members/did:vm:node:dev2', '/namespaces', '/namespaces/dev:node1',
  '/namespaces/dev:node1/tree', '/namespaces/dev:node1/records/10', '/witnesses', '/evidence', '/audit', '/verify'];
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const dir = mkdtempSync(join(tmpdir(), 'remembrancer-paint-'));
const devnet = spawn(process.env.REMEMBRANCER_BIN, ['devnet', '--dir', join(dir, 'devnet'), '--nodes', '3', '--seconds', '900'], { stdio: ['ignore', 'pipe', 'inherit'] });
let output = '';
devnet.stdout.on('data', (data) => { output += data; });
const until = Date.now() + 60_000;
while (!/round +3 /.test(output)) {
  if (Date.now() > until) throw new Error(`the devnet did not run:\n${output}`);
  await new Promise((resolve) => setTimeout(resolve, 200));
}
const base = output.match(/explorer of dev:node1: (http:\/\/[^/\s]+)\//)[1];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: FLAGS });
const percentile = (sorted, p) => sorted[Math.floor((sorted.length - 1) * p / 100)];

async function paints(path) {
  const times = [];
  for (let load = 0; load < LOADS; load += 1) {
    const page = await browser.newPage();
    await page.goto(base + path, { waitUntil: 'load' });
    const fcp = await page.evaluate(() => new Promise((resolve) => {
      const found = performance.getEntriesByName('first-contentful-paint')[0];
      if (found) return resolve(found.startTime);
      new PerformanceObserver((list) => resolve(list.getEntries()[0].startTime)).observe({ type: 'paint', buffered: true });
      setTimeout(() => resolve(NaN), 2000);
    }));
    times.push(fcp);
    await page.close();
  }
  return times.sort((a, b) => a - b);
}

try {
  const baseline = await paints('/assets/style.css');
  const b95 = percentile(baseline, 95);
  const rows = [];
  for (const view of VIEWS) {
    const times = await paints(view);
    rows.push({ view, p50: percentile(times, 50), p95: percentile(times, 95), to_static_p95: percentile(times, 95) / b95 });
  }
  if (process.argv.includes('--json')) {
    console.log(JSON.stringify({ loads: LOADS, static_fcp_ms: { p50: percentile(baseline, 50), p95: b95 }, views: rows }, null, 2));
  } else {
    console.log(`first contentful paint in chromium, ${LOADS} loads per view (3-node devnet):`);
    console.log(`  baseline: /assets/style.css as a document   p50 ${percentile(baseline, 50).toFixed(1)} ms  p95 ${b95.toFixed(1)} ms`);
    for (const r of rows) {
      console.log(`  ${r.view.padEnd(36)} p50 ${r.p50.toFixed(1)} ms  p95 ${r.p95.toFixed(1)} ms  (${r.to_static_p95.toFixed(2)}x the static p95; goal <= 3x)`);
    }
  }
} finally {
  await browser.close();
  devnet.kill('SIGINT');
  await once(devnet, 'exit');
  rmSync(dir, { recursive: true, force: true });
}
