// ledger.test.mjs — what finance sees: every finished request's usage lands
// in Redis (tg:usage:{day} counters, tg:events), priced exactly, streamed or
// not, cut off by the client or not; and nothing secret reaches the logs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import OpenAI from 'openai';
import {
    startGateway, KEY, LEDGER_KEY, ADMIN_TOKEN, VENDOR_SECRET, BIN, REPO, costMicro, hgetallNumbers, todayUtc, until,
    rawConnect, rawRequest, chatBody, simFinalState, simId, redis,
} from './harness.mjs';

let gw, client;
before(async () => {
    gw = await startGateway();
    client = new OpenAI({ baseURL: gw.base, apiKey: LEDGER_KEY, maxRetries: 0 });
});
after(async () => {
    await gw?.stop();
});

// Fields of one provider/model/key in today's hash, as numbers (0 when absent).
async function counters(provider, model, key) {
    const h = await hgetallNumbers(`tg:usage:${todayUtc()}`);
    const get = (m) => h[`${provider}|${model}|${key}|${m}`] ?? 0;
    return Object.fromEntries(
        ['requests', 'input_tokens', 'cached_input_tokens', 'output_tokens', 'reasoning_tokens', 'cost_micro_usd'].map((m) => [m, get(m)]),
    );
}

const diff = (a, b) => Object.fromEntries(Object.keys(a).map((k) => [k, a[k] - b[k]]));

async function waitForRequests(provider, model, key, before, n) {
    let now;
    await until(async () => {
        now = await counters(provider, model, key);
        return now.requests >= before.requests + n;
    }, 10000);
    return now;
}

test('non-stream and stream usage is counted in Redis, priced exactly', async () => {
    // qwen/qwen-plus with the "ledger" key is used by this test only, so the deltas are ours.
    const before = await counters('qwen', 'qwen-plus', 'ledger');
    const messages = [{ role: 'user', content: 'count me' }];
    const a = await client.chat.completions.create(
        { model: 'qwen/qwen-plus', messages, max_tokens: 9 },
        { headers: { 'x-sim-cached-tokens': '2', 'x-sim-reasoning-tokens': '3' } },
    );
    const s = await client.chat.completions.create({ model: 'qwen/qwen-plus', messages, max_tokens: 4, stream: true });
    for await (const _ of s);
    const now = await waitForRequests('qwen', 'qwen-plus', 'ledger', before, 2);
    const d = diff(now, before);
    assert.equal(d.requests, 2);
    // The stream's usage was not shown to the client (it did not ask); the gateway asked for it.
    const streamInput = a.usage.prompt_tokens;
    assert.equal(d.input_tokens, a.usage.prompt_tokens + streamInput);
    assert.equal(d.cached_input_tokens, 2);
    // Simulator: completion_tokens = reasoning + visible output; output_tokens counts reasoning too.
    assert.equal(a.usage.completion_tokens, 3 + 9);
    assert.equal(d.output_tokens, a.usage.completion_tokens + 4);
    assert.equal(d.reasoning_tokens, 3);
    const cost = costMicro('qwen/qwen-plus', { input: a.usage.prompt_tokens, cached: 2, output: a.usage.completion_tokens }) +
        costMicro('qwen/qwen-plus', { input: streamInput, cached: 0, output: 4 });
    assert.equal(d.cost_micro_usd, cost);
});

test('DeepSeek cache hits are counted as cached input', async () => {
    const before = await counters('deepseek', 'deepseek-flash', 'ledger');
    const r = await client.chat.completions.create(
        { model: 'deepseek/deepseek-flash', messages: [{ role: 'user', content: 'y'.repeat(300) }], max_tokens: 3 },
        { headers: { 'x-sim-cached-tokens': '50' } },
    );
    const d = diff(await waitForRequests('deepseek', 'deepseek-flash', 'ledger', before, 1), before);
    assert.equal(d.input_tokens, r.usage.prompt_tokens);
    assert.equal(d.cached_input_tokens, 50);
    assert.equal(d.cost_micro_usd, costMicro('deepseek/deepseek-flash', { input: r.usage.prompt_tokens, cached: 50, output: 3 }));
});

test('a stream the client cuts off is still recorded', async () => {
    const before = await counters('openai', 'gpt-4o-mini', 'ledger');
    const id = simId('ledger-cut');
    const s = await rawConnect(gw.port);
    s.write(rawRequest('POST', '/v1/chat/completions', {
        headers: { authorization: `Bearer ${LEDGER_KEY}`, 'x-sim-tps': '20', 'x-sim-id': id, 'x-sim-output-tokens': '2000' },
        body: chatBody('openai/gpt-4o-mini', { stream: true }),
    }));
    await s.waitFor((b) => (b.toString('latin1').match(/"delta"/g) ?? []).length >= 10);
    s.destroy();
    assert.equal((await simFinalState(gw.sim, id))?.state, 'cancelled');
    const d = diff(await waitForRequests('openai', 'gpt-4o-mini', 'ledger', before, 1), before);
    assert.equal(d.requests, 1);
    assert.ok(d.input_tokens > 0, 'input tokens recorded for a cut-off stream');
    assert.ok(d.output_tokens >= 1 && d.output_tokens < 2000, `partial output recorded: ${d.output_tokens}`);
    assert.ok(d.cost_micro_usd > 0);
});

test('each request adds one event to tg:events', async () => {
    const len = async () => Number((await redis('XLEN', 'tg:events')).trim().replace(/^\(integer\) /, ''));
    const n0 = await len();
    await client.chat.completions.create({ model: 'deepseek/deepseek-flash', messages: [{ role: 'user', content: 'e' }] });
    assert.ok(await until(async () => (await len()) >= n0 + 1, 10000), 'one more event');
});

test('the repo default config passes `tollgate check`', async () => {
    const { stdout, stderr } = await promisify(execFile)(BIN, ['check', '-c', path.join(REPO, 'config/tollgate.yaml')]);
    // Warnings (a provider key not set: simulated) are fine; errors are not.
    assert.doesNotMatch(stdout + stderr, /:\d+:\d+: (?!warning:)/, 'no FILE:LINE:COL errors');
    assert.match(stdout + stderr, /ok/);
});

test('`tollgate check` reports FILE:LINE:COL and exits 1 on a bad config', async () => {
    const bad = path.join(gw.dir, 'bad.yaml');
    writeFileSync(bad, 'listen: 127.0.0.1:1\nworkers: two\nbogus_key: 1\n');
    const r = await promisify(execFile)(BIN, ['check', '-c', bad]).then(() => ({ code: 0 }), (e) => e);
    assert.equal(r.code, 1);
    assert.match(r.stdout + r.stderr, /bad\.yaml:3:1: .*bogus_key/);
    assert.match(r.stdout + r.stderr, /bad\.yaml:2:\d+: .*workers/);
});

test('no secret reaches the gateway log', async () => {
    // Provoke every path that logs: success, auth failure, upstream failure, the vendor with a key.
    const c = new OpenAI({ baseURL: gw.base, apiKey: KEY, maxRetries: 0 });
    await c.chat.completions.create({ model: 'vendorx/vx-1', messages: [{ role: 'user', content: 'secret-free' }] });
    await c.chat.completions.create({ model: 'deepseek', messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-sim-status': '500' } })
        .catch(() => {});
    await fetch(gw.url + '/v1/models', { headers: { authorization: `Bearer ${KEY}x` } }).then((r) => r.arrayBuffer());
    await fetch(gw.url + '/metrics', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }).then((r) => r.arrayBuffer());
    await new Promise((r) => setTimeout(r, 1500)); // the access log is flushed from a timer
    const log = readFileSync(gw.gw.logFile, 'utf8');
    assert.ok(log.length > 0, 'the gateway logs something');
    for (const secret of [KEY, LEDGER_KEY, ADMIN_TOKEN, VENDOR_SECRET]) {
        assert.ok(!log.includes(secret), 'a secret appears in the gateway log');
    }
    assert.ok(!log.includes('secret-free'), 'prompt text appears in the gateway log');
});
