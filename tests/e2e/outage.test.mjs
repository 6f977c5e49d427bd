// outage.test.mjs — Redis goes away and comes back under load: no request fails, and once
// Redis is back every request of the outage is in the report exactly once, equal to what the
// providers billed. Two gateway processes on one Redis: their reports add up, and a key's rpm
// holds across both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startGateway, until, metric } from './harness.mjs';
import { dbUrl, rcli, keyLines, reportJson, micro, simBilled, startRedis } from './money.mjs';

// k-outage has a (high) rpm so that its quota checks run, and fall back, during the outage.
const K = { name: 'k-outage', secret: `tg-e2e-outage-${process.pid}`, rpm: 100000 };
const R = { name: 'k-shared-rpm', secret: `tg-e2e-shared-${process.pid}`, rpm: 10 };
const MODELS = { deepseek: 'deepseek-flash', qwen: 'qwen-plus', openai: 'gpt-4o-mini' };
const TARGETS = Object.entries(MODELS).map(([p, m]) => `${p}/${m}`);

/** Asserts the report (by provider) equals the sums of what the simulators billed. */
async function assertExact(url, sims, n) {
    const billed = {};
    for (const sim of sims)
        for (const [p, b] of Object.entries(await simBilled(sim, MODELS))) {
            const t = (billed[p] ??= { input: 0, cached: 0, output: 0, cost: 0 });
            t.input += b.input, t.cached += b.cached, t.output += b.output, t.cost += b.cost;
        }
    const json = await reportJson(url, 'provider');
    assert.equal(json.total.requests, n, 'every served request counted once');
    for (const [p, b] of Object.entries(billed)) {
        const row = json.rows.find((r) => r.provider === p);
        assert.deepEqual(
            { input: row.input_tokens, cached: row.cached_input_tokens, output: row.output_tokens, cost: micro(row.cost_usd) },
            b, `${p}: report against billed`);
    }
}

test('Redis killed during a load and restarted: no request fails, and the report is exact afterwards', async () => {
    const redis = await startRedis();
    const g = await startGateway({ redisUrl: redis.url, extraConfig: keyLines([K]) });
    try {
        const c = new OpenAI({ baseURL: g.base, apiKey: K.secret, maxRetries: 0 });
        const N = 240;
        let sent = 0, ok = 0;
        const failures = [];
        const worker = async () => {
            while (sent < N) {
                const i = sent++;
                const model = TARGETS[i % TARGETS.length];
                try {
                    if (i % 2) {
                        const s = await c.chat.completions.create({ model, stream: true, max_tokens: 5,
                            messages: [{ role: 'user', content: `outage ${i}` }] }, { headers: { 'x-sim-ttft-ms': '20' } });
                        for await (const _ of s);
                    } else {
                        await c.chat.completions.create({ model, max_tokens: 5, messages: [{ role: 'user', content: `outage ${i}` }] },
                            { headers: { 'x-sim-cached-tokens': '2', 'x-sim-ttft-ms': '20' } });
                    }
                    ok++;
                } catch (e) {
                    failures.push(`${i}: ${e.message}`);
                }
            }
        };
        const load = Promise.all(Array.from({ length: 6 }, worker));
        await until(() => ok >= 60, 20000);
        await redis.kill(); // SIGKILL: what Redis acknowledged is in its fsync'd append-only file
        await until(() => ok >= 180, 20000); // about half a second without Redis
        await redis.start();
        await load;
        assert.deepEqual(failures, [], 'no request failed while Redis was away');
        assert.equal(ok, N);
        // The journal drains once the ledger reconnects (backoff up to 5 s).
        await until(async () => (await reportJson(redis.url)).total.requests >= N, 20000, 200);
        await until(async () => (await metric(g, 'tollgate_ledger_backlog', {})) === 0 ||
            (await metric(g, 'tollgate_ledger_backlog', {})) === undefined, 5000);
        await assertExact(redis.url, [g.sim], N);
        const journaled = await fetch(g.url + '/metrics').then((r) => r.text());
        assert.match(journaled, /tollgate_ledger_records_total\{fate="journaled"\} [1-9]/, 'some records went through the journal');
    } finally {
        await g.stop();
        await redis.stop();
    }
});

test('two gateway processes on one Redis: their reports add up, and a shared rpm limit holds across both', async () => {
    const db = dbUrl(8);
    await rcli(db, 'FLUSHDB');
    const opts = { redisUrl: db, extraConfig: keyLines([K, R]) };
    const [g1, g2] = await Promise.all([startGateway(opts), startGateway(opts)]);
    try {
        const clients = [g1, g2].map((g) => new OpenAI({ baseURL: g.base, apiKey: K.secret, maxRetries: 0 }));
        const N = 40;
        await Promise.all(Array.from({ length: N }, (_, i) =>
            clients[i % 2].chat.completions.create({ model: TARGETS[i % 3], max_tokens: 4, messages: [{ role: 'user', content: `two ${i}` }] })));
        // The rate-limited key, alternating between the two gateways: 10 per minute in all.
        const statuses = [];
        for (let i = 0; i < 16; i++) {
            const g = i % 2 ? g2 : g1;
            const r = await fetch(g.url + '/v1/chat/completions', {
                method: 'POST',
                headers: { authorization: `Bearer ${R.secret}`, 'content-type': 'application/json' },
                body: JSON.stringify({ model: 'qwen/qwen-plus', max_tokens: 2, messages: [{ role: 'user', content: 'shared' }] }),
            });
            await r.arrayBuffer();
            statuses.push(r.status);
        }
        assert.equal(statuses.filter((s) => s === 200).length, 10, `statuses: ${statuses}`);
        assert.equal(statuses.filter((s) => s === 429).length, 6);
        assert.deepEqual(statuses.slice(0, 10), Array(10).fill(200), 'the first ten pass, whichever gateway served them');
        await until(async () => (await reportJson(db)).total.requests >= N + 10, 10000);
        await assertExact(db, [g1.sim, g2.sim], N + 10);
    } finally {
        await Promise.all([g1.stop(), g2.stop()]);
    }
});
