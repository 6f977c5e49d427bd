// dashboard.test.mjs — GET /dashboard opened as a person would: in headless Chromium
// (Debian's `chromium`, driven by playwright-core), with the admin token in the URL. The page
// must show one chart per provider with a bar per day that had spend, the totals of
// `tollgate report`, and load nothing from anywhere else. Asserts on the DOM, not on pixels;
// the screenshot is kept in the test's directory for a person to look at.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { startGateway, ADMIN_TOKEN } from './harness.mjs';
import { dbUrl, rcli, keyLines, reportJson, dayUtc, micro } from './money.mjs';

const CHROMIUM = '/usr/bin/chromium';
const DB = dbUrl(7);
const K = { name: 'k-dash', secret: `tg-e2e-dash-${process.pid}` };

let gw, playwright;
before(async () => {
    try {
        playwright = await import('playwright-core');
    } catch {
        playwright = null;
    }
    await rcli(DB, 'FLUSHDB');
    gw = await startGateway({ redisUrl: DB, extraConfig: keyLines([K]) });
    // Two days of spend: yesterday's from an earlier run (written as the ledger writes it),
    // today's from real requests to three providers.
    const y = dayUtc(-1);
    for (const [f, v] of [['requests', 4], ['input_tokens', 400], ['output_tokens', 100], ['cost_micro_usd', 1100]])
        await rcli(DB, 'HINCRBY', `tg:usage:${y}`, `deepseek|deepseek-flash|${K.name}|${f}`, String(v));
    const c = new OpenAI({ baseURL: gw.base, apiKey: K.secret, maxRetries: 0 });
    for (const model of ['deepseek/deepseek-flash', 'qwen/qwen-plus', 'openai/gpt-4o-mini', 'openai/gpt-4o-mini'])
        await c.chat.completions.create({ model, max_tokens: 5, messages: [{ role: 'user', content: 'dashboard' }] });
    const until = Date.now() + 10000;
    while ((await reportJson(DB)).total.requests < 8 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
});
after(async () => {
    await gw?.stop();
});

test('the dashboard needs the admin token', async () => {
    assert.equal((await fetch(`${gw.url}/dashboard`)).status, 401);
    assert.equal((await fetch(`${gw.url}/dashboard?token=wrong`)).status, 401);
    const r = await fetch(`${gw.url}/dashboard`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /text\/html/);
    const html = await r.text();
    assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org\/2000\/svg)/, 'no script and no external URL');
});

test('headless Chromium shows one chart per provider, a bar per day with spend, and the report totals', async (t) => {
    if (!existsSync(CHROMIUM) || !playwright) {
        t.skip(`needs ${CHROMIUM} (Debian package chromium) and the npm package playwright-core`);
        return;
    }
    const browser = await playwright.chromium.launch({
        executablePath: CHROMIUM,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
            '--disable-sync', '--no-first-run'],
    });
    try {
        const page = await browser.newPage({ viewport: { width: 900, height: 1000 } });
        const requested = [];
        page.on('request', (req) => requested.push(req.url()));
        const url = `${gw.url}/dashboard?token=${encodeURIComponent(ADMIN_TOKEN)}&from=${dayUtc(-6)}`;
        const resp = await page.goto(url, { waitUntil: 'load' });
        assert.equal(resp.status(), 200);
        await page.screenshot({ path: path.join(gw.dir, 'dashboard.png'), fullPage: true });

        const charts = await page.$$eval('section.provider', (els) => els.map((e) => ({
            provider: e.dataset.provider,
            svgs: e.querySelectorAll('svg.chart').length,
            bars: [...e.querySelectorAll('rect.bar')].map((b) => ({ day: b.dataset.day, usd: b.dataset.usd, h: Number(b.getAttribute('height')) })),
        })));
        const report = await reportJson(DB);
        assert.deepEqual(charts.map((c) => c.provider).sort(), report.rows.map((r) => r.provider).sort(), 'a chart per provider');
        assert.equal(charts.length, 3);
        for (const c of charts) {
            assert.equal(c.svgs, 1, `${c.provider}: one SVG chart`);
            assert.ok(c.bars.every((b) => b.h > 0), `${c.provider}: bars have a height`);
            const row = report.rows.find((r) => r.provider === c.provider);
            assert.equal(c.bars.reduce((a, b) => a + micro(Number(b.usd)), 0), micro(row.cost_usd), `${c.provider}: bars add up to the report`);
        }
        const ds = charts.find((c) => c.provider === 'deepseek');
        assert.deepEqual(ds.bars.map((b) => b.day), [dayUtc(-1), dayUtc(0)], 'deepseek: a bar for each day with spend');
        const total = await page.textContent('#total-usd');
        assert.equal(micro(Number(total.replace('$', ''))), micro(report.total.cost_usd));
        assert.deepEqual([...new Set(requested)], [url], 'the page fetched nothing but itself');
    } finally {
        await browser.close();
    }
});
