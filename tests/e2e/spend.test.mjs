// spend.test.mjs — what finance and the budget owner see: `tollgate report` and /admin/spend
// agree with each other and, to the token, with what the providers billed (the simulator's
// own accounting) over a mixed load; each way providers' usage is easy to misbill (cached
// tokens, DeepSeek cache fields, $0 streams, spend lost on cancel or mid-answer failure) has
// its own test; budgets answer 402 and rate limits 429 with retry-after, in the client's dialect.
// This file has Redis database 5 of the suite's Redis to itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import {
    startGateway, KEY, ADMIN_TOKEN, PRICES, until, rawConnect, rawRequest, chatBody, simFinalState, simId, simRequest,
    simConfig, parseResponses, readAllText, sseParse, ledgerEvent,
} from './harness.mjs';
import { dbUrl, rcli, keyLines, report, reportJson, micro, simBilled, dayUtc } from './money.mjs';

const DB = dbUrl(5);
const SONNET = 'anthropic/claude-sonnet-4-5';
const MORE_PRICES = { [SONNET]: { input: 3, cached_input: 1, output: 15 } };
const ALL_PRICES = { ...PRICES, ...MORE_PRICES };
const ROUTES = `routes:
  - name: mixed
    match: { model: mixed }
    strategy: ordered
    candidates: [qwen/qwen-plus, deepseek/deepseek-flash]
  - name: billed-failover
    match: { model: billed-failover }
    strategy: ordered
    candidates: [anthropic/claude-sonnet-4-5, deepseek/deepseek-flash]
`;
// One gateway key per test, so that each test reads counters of its own.
const K = Object.fromEntries(['cached', 'dscache', 'stream0', 'cancel', 'midfail', 'billedfo', 'refused', 'mixed', 'report']
    .map((n) => [n, { name: `k-${n}`, secret: `tg-e2e-${n}-${process.pid}` }]));
K.budget = { name: 'k-budget', secret: `tg-e2e-budget-${process.pid}`, budget: 0.0002 };
K.rpm = { name: 'k-rpm', secret: `tg-e2e-rpm-${process.pid}`, rpm: 3 };
K.tpm = { name: 'k-tpm', secret: `tg-e2e-tpm-${process.pid}`, tpm: 40 };
K.slow = { name: 'k-slow', secret: `tg-e2e-slow-${process.pid}`, rpm: 1000 };

let gw;
const oa = (k) => new OpenAI({ baseURL: gw.base, apiKey: k.secret, maxRetries: 0 });
const an = (k) => new Anthropic({ baseURL: gw.url, apiKey: k.secret, maxRetries: 0 });

before(async () => {
    await rcli(DB, 'FLUSHDB');
    gw = await startGateway({
        redisUrl: DB, routes: ROUTES, extraPrices: MORE_PRICES, extraConfig: keyLines(Object.values(K)),
    });
});
after(async () => {
    await gw?.stop();
});

// ---- reading the ledger ----

const METRICS = ['requests', 'input_tokens', 'cached_input_tokens', 'output_tokens', 'reasoning_tokens', 'cost_micro_usd'];

/** Today's counters of one gateway key, summed over providers and models. */
async function keyTotals(key, db = DB) {
    const out = await rcli(db, 'HGETALL', `tg:usage:${dayUtc()}`);
    const lines = out ? out.split('\n') : [];
    const t = Object.fromEntries(METRICS.map((m) => [m, 0]));
    for (let i = 0; i + 1 < lines.length; i += 2) {
        const parts = lines[i].split('|');
        if (parts.length === 4 && parts[2] === key.name && parts[3] in t) t[parts[3]] += Number(lines[i + 1]);
    }
    return t;
}

async function waitRequests(key, n, db = DB) {
    let t;
    await until(async () => (t = await keyTotals(key, db)).requests >= n, 15000);
    return t;
}

/** The tg:events entry of request `id`, by default in this file's own Redis. */
const eventOf = (id, db = DB) => ledgerEvent(id, db);

const cost = (target, input, cached, output) =>
    (input - cached) * ALL_PRICES[target].input + cached * ALL_PRICES[target].cached_input + output * ALL_PRICES[target].output;

/** A raw streaming request that hangs up after `deltas` content chunks; returns the gateway's request id. */
async function cutStream(key, model, deltas, headers = {}, g = gw) {
    const sid = simId('cut');
    const s = await rawConnect(g.port);
    s.write(rawRequest('POST', '/v1/chat/completions', {
        headers: { authorization: `Bearer ${key.secret}`, 'x-sim-tps': '40', 'x-sim-output-tokens': '2000', 'x-sim-id': sid, ...headers },
        body: chatBody(model, { stream: true }),
    }));
    await s.waitFor((b) => (b.toString('latin1').match(/"content":"[^"]/g) ?? []).length >= deltas);
    const head = s.buf.toString('latin1');
    const id = /x-tollgate-request-id: (\w+)/i.exec(head)?.[1];
    s.destroy();
    const simRec = await simFinalState(g.sim, sid);
    assert.equal(simRec?.state, 'cancelled', 'the provider saw the hang-up');
    return { id, sid, sim: simRec };
}

// ---- usage that is easy to misbill, one test each ----

test('cached input is priced at the cached rate (OpenAI cached_tokens; Anthropic cache_read_input_tokens), streamed or not', async () => {
    const c = oa(K.cached);
    const msg = [{ role: 'user', content: 'z'.repeat(400) }];
    const a = await c.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: msg, max_tokens: 5 },
        { headers: { 'x-sim-cached-tokens': '60' } });
    const s = await c.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: msg, max_tokens: 5, stream: true,
        stream_options: { include_usage: true } }, { headers: { 'x-sim-cached-tokens': '60' } });
    let su;
    for await (const ch of s) if (ch.usage) su = ch.usage;
    const m = await an(K.cached).messages.create({ model: SONNET, max_tokens: 5, messages: msg },
        { headers: { 'x-sim-cached-tokens': '70' } });
    assert.equal(a.usage.prompt_tokens_details.cached_tokens, 60);
    assert.equal(su.prompt_tokens_details.cached_tokens, 60);
    assert.equal(m.usage.cache_read_input_tokens, 70);
    const t = await waitRequests(K.cached, 3);
    const mIn = m.usage.input_tokens + m.usage.cache_read_input_tokens;
    assert.equal(t.cached_input_tokens, 60 + 60 + 70);
    assert.equal(t.input_tokens, a.usage.prompt_tokens + su.prompt_tokens + mIn, 'input counts cached tokens too');
    assert.equal(t.cost_micro_usd,
        cost('openai/gpt-4o-mini', a.usage.prompt_tokens, 60, 5) + cost('openai/gpt-4o-mini', su.prompt_tokens, 60, 5) +
        cost(SONNET, mIn, 70, m.usage.output_tokens));
});

test("DeepSeek's prompt_cache_hit_tokens are priced as cached input, streamed or not", async () => {
    const c = oa(K.dscache);
    const msg = [{ role: 'user', content: 'd'.repeat(800) }];
    const a = await c.chat.completions.create({ model: 'deepseek/deepseek-flash', messages: msg, max_tokens: 4 },
        { headers: { 'x-sim-cached-tokens': '128' } });
    assert.equal(a.usage.prompt_cache_hit_tokens, 128, 'DeepSeek reports cache hits in its own field');
    assert.equal(a.usage.prompt_tokens_details, undefined, 'and not in prompt_tokens_details');
    const s = await c.chat.completions.create({ model: 'deepseek/deepseek-flash', messages: msg, max_tokens: 4, stream: true },
        { headers: { 'x-sim-cached-tokens': '128' } });
    for await (const _ of s);
    const t = await waitRequests(K.dscache, 2);
    assert.equal(t.cached_input_tokens, 256);
    assert.equal(t.cost_micro_usd, 2 * cost('deepseek/deepseek-flash', a.usage.prompt_tokens, 128, 4));
});

test('a streamed request is never $0: usage from the usage chunk, from a finish chunk, with or without include_usage', async () => {
    const c = oa(K.stream0);
    const body = { model: 'qwen/qwen-plus', messages: [{ role: 'user', content: 'stream me' }], max_tokens: 6, stream: true };
    for (const [opts, headers] of [
        [{}, {}],
        [{ stream_options: { include_usage: true } }, {}],
        [{}, { 'x-sim-usage-on-finish': '1' }],
        [{ stream_options: { include_usage: true } }, { 'x-sim-usage-on-finish': '1' }],
    ]) {
        const s = await c.chat.completions.create({ ...body, ...opts }, { headers });
        for await (const _ of s);
    }
    const t = await waitRequests(K.stream0, 4);
    assert.equal(t.output_tokens, 4 * 6);
    assert.ok(t.input_tokens > 0);
    assert.equal(t.cost_micro_usd, 4 * cost('qwen/qwen-plus', t.input_tokens / 4, 0, 6));
});

test('spend is recorded when the client cancels: streamed, not streamed, and on /v1/messages', async () => {
    const cut = await cutStream(K.cancel, 'openai/gpt-4o-mini', 5);
    const ev = await eventOf(cut.id);
    assert.equal(ev.status, '499');
    assert.equal(ev.estimated, '1', 'no usage came from the provider: the figures are marked estimated');
    assert.equal(Number(ev.input_tokens), cut.sim.prompt_tokens, 'the prompt is counted as the provider counts it');
    assert.ok(Number(ev.output_tokens) >= 5, `the relayed output is counted: ${ev.output_tokens}`);
    assert.ok(Number(ev.cost_micro_usd) > 0);
    // Not streamed: the client leaves while the provider is still thinking.
    const sid = simId('cut-ns');
    const s = await rawConnect(gw.port);
    s.write(rawRequest('POST', '/v1/chat/completions', {
        headers: { authorization: `Bearer ${K.cancel.secret}`, 'x-sim-ttft-ms': '3000', 'x-sim-id': sid },
        body: chatBody('deepseek/deepseek-flash'),
    }));
    await until(async () => (await simRequest(gw.sim, sid))?.state === 'open', 5000);
    s.destroy();
    const simNs = await simFinalState(gw.sim, sid);
    assert.equal(simNs.state, 'cancelled');
    // Anthropic stream cut after message_start: the provider's input count is kept.
    const sa = await rawConnect(gw.port);
    const asid = simId('cut-an');
    sa.write(rawRequest('POST', '/v1/messages', {
        headers: { 'x-api-key': K.cancel.secret, authorization: '', 'anthropic-version': '2023-06-01', 'x-sim-tps': '40',
            'x-sim-output-tokens': '2000', 'x-sim-id': asid },
        body: JSON.stringify({ model: SONNET, max_tokens: 4000, stream: true, messages: [{ role: 'user', content: 'long' }] }),
    }));
    await sa.waitFor((b) => (b.toString('latin1').match(/text_delta/g) ?? []).length >= 5);
    sa.destroy();
    const simAn = await simFinalState(gw.sim, asid);
    assert.equal(simAn.state, 'cancelled');
    const t = await waitRequests(K.cancel, 3);
    assert.equal(t.requests, 3);
    assert.equal(t.input_tokens, cut.sim.prompt_tokens + simNs.prompt_tokens + simAn.prompt_tokens);
    assert.ok(t.output_tokens >= 10);
    assert.ok(t.cost_micro_usd > 0);
});

test('spend is recorded when the upstream fails mid-answer (error event, reset)', async () => {
    const c = oa(K.midfail);
    const ids = [];
    for (const h of [{ 'x-sim-error-after': '6' }, { 'x-sim-reset-after': '6' }]) {
        const sid = simId('midfail');
        const r = await fetch(gw.url + '/v1/chat/completions', {
            method: 'POST',
            headers: { authorization: `Bearer ${K.midfail.secret}`, 'content-type': 'application/json', 'x-sim-id': sid, ...h },
            body: chatBody('deepseek/deepseek-flash', { stream: true, max_tokens: 50 }),
        });
        const text = await readAllText(r);
        const { data } = sseParse(text);
        assert.ok(data.some((d) => d.includes('"error"')), 'the client gets an error event');
        assert.ok(!data.includes('[DONE]'));
        ids.push({ id: r.headers.get('x-tollgate-request-id'), sim: await simFinalState(gw.sim, sid) });
    }
    for (const { id, sim } of ids) {
        const ev = await eventOf(id);
        assert.equal(ev.status, '502');
        assert.equal(Number(ev.input_tokens), sim.prompt_tokens);
        assert.ok(Number(ev.output_tokens) > 0, 'the part that was sent is billed');
        assert.ok(Number(ev.cost_micro_usd) > 0);
    }
    void c;
});

test('a failed attempt the provider billed is recorded (tokens and cost, not a request)', async () => {
    // Claude reports its input in message_start, then fails before any content: the gateway
    // fails over (nothing reached the client yet), and Claude's input is still billed.
    const sid = simId('billed-fo');
    const r = await fetch(gw.url + '/v1/chat/completions', {
        method: 'POST',
        headers: { authorization: `Bearer ${K.billedfo.secret}`, 'content-type': 'application/json', 'x-sim-error-after': '1', 'x-sim-id': sid },
        body: chatBody('billed-failover', { stream: true, max_tokens: 20 }),
    });
    await readAllText(r);
    assert.equal(r.headers.get('x-tollgate-attempts'), '2', 'the second candidate answered');
    const id = r.headers.get('x-tollgate-request-id');
    const first = await eventOf(`${id}.1`);
    assert.equal(first.provider, 'anthropic');
    assert.equal(first.requests, '0');
    assert.equal(first.estimated, '0', "the provider's own count");
    assert.ok(Number(first.input_tokens) > 0 && Number(first.cost_micro_usd) > 0);
    const t = await waitRequests(K.billedfo, 1);
    const second = await eventOf(id);
    assert.equal(t.requests, 1, 'one request');
    assert.equal(t.input_tokens, Number(first.input_tokens) + Number(second.input_tokens), 'both attempts billed');
    assert.equal(t.cost_micro_usd, Number(first.cost_micro_usd) + Number(second.cost_micro_usd));
});

test('a request every provider refused (HTTP errors) is counted but costs nothing', async () => {
    const r = await fetch(gw.url + '/v1/chat/completions', {
        method: 'POST',
        headers: { authorization: `Bearer ${K.refused.secret}`, 'content-type': 'application/json', 'x-sim-status': '500' },
        body: chatBody('billed-failover', { max_tokens: 20 }),
    });
    assert.equal(r.status, 502);
    await r.arrayBuffer();
    const t = await waitRequests(K.refused, 1);
    assert.deepEqual(t, { requests: 1, input_tokens: 0, cached_input_tokens: 0, output_tokens: 0, reasoning_tokens: 0, cost_micro_usd: 0 });
});

// ---- report and /admin/spend ----

test('`tollgate report`: table, CSV and JSON with a totals row; /admin/spend gives the same JSON', async () => {
    const c = oa(K.report);
    await c.chat.completions.create({ model: 'qwen/qwen-plus', messages: [{ role: 'user', content: 'report' }], max_tokens: 3 });
    await waitRequests(K.report, 1);
    const args = ['--redis', DB, '--from', dayUtc(-1), '--to', dayUtc(0), '--by', 'key'];
    const j = await report(...args, '--format', 'json');
    assert.equal(j.code, 0, j.stderr);
    const json = JSON.parse(j.stdout);
    assert.deepEqual(Object.keys(json), ['from', 'to', 'by', 'rows', 'total']);
    assert.equal(json.by, 'key');
    const row = json.rows.find((r) => r.key === K.report.name);
    assert.deepEqual(Object.keys(row), ['key', 'requests', 'input_tokens', 'cached_input_tokens', 'output_tokens', 'reasoning_tokens', 'cost_usd',
        'cache_hits', 'saved_usd']);
    assert.equal(row.requests, 1);
    const sum = (f) => json.rows.reduce((a, r) => a + (f === 'cost_usd' ? micro(r[f]) : r[f]), 0);
    for (const f of ['requests', 'input_tokens', 'output_tokens']) assert.equal(json.total[f], sum(f), `total ${f}`);
    assert.equal(micro(json.total.cost_usd), sum('cost_usd'));
    assert.match(j.stdout, /"cost_usd":\d+\.\d{6}[,}]/, 'six decimals, printed from integers');

    const csv = await report(...args, '--format', 'csv');
    const lines = csv.stdout.trim().split('\n');
    assert.equal(lines[0], 'key,requests,input_tokens,cached_input_tokens,output_tokens,reasoning_tokens,cost_usd,cache_hits,saved_usd');
    assert.match(lines.at(-1), /^TOTAL,/);
    assert.equal(lines.length, json.rows.length + 2);
    const table = await report(...args);
    assert.match(table.stdout, /^TOTAL\s+\d+/m);
    assert.match(table.stdout, new RegExp(`^${K.report.name}\\s+1\\s`, 'm'));

    const r = await fetch(`${gw.url}/admin/spend?from=${dayUtc(-1)}&to=${dayUtc(0)}&by=key`,
        { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /application\/json/);
    assert.deepEqual(await r.json(), JSON.parse((await report(...args, '--format', 'json')).stdout));
    const bad = await fetch(`${gw.url}/admin/spend?by=team`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error.message, /provider, model, key, day/);
});

test('`tollgate report` exits 3 when Redis cannot be reached, 2 on a usage error', async () => {
    const down = await report('--redis', 'redis://127.0.0.1:1/0');
    assert.equal(down.code, 3);
    assert.match(down.stderr, /cannot reach redis/);
    assert.equal((await report('--redis', DB, '--by', 'team')).code, 2);
    assert.equal((await report('--redis', DB, '--from', '2025-02-30')).code, 2);
    assert.equal((await report('--redis', DB, '--format', 'xml')).code, 2);
    // The Redis URL comes from the config when --redis is not given.
    const viaConfig = await report('-c', gw.config, '--format', 'json');
    assert.equal(viaConfig.code, 0, viaConfig.stderr);
});

test('mixed load: report totals equal what the providers billed, per provider, to the token', async () => {
    // A gateway, simulator and Redis database of its own: the totals are this load's alone.
    const db = dbUrl(6);
    await rcli(db, 'FLUSHDB');
    // A circuit that does not open: Qwen's failures of the first half must not keep it out of the second.
    const g = await startGateway({ redisUrl: db, routes: ROUTES, extraPrices: MORE_PRICES,
        extraConfig: keyLines([K.mixed]) + 'circuit: { failures: 1000, cooldown_ms: 1000, max_cooldown_ms: 1000 }\n' });
    try {
        const k = K.mixed;
        const c = new OpenAI({ baseURL: g.base, apiKey: k.secret, maxRetries: 0 });
        const a = new Anthropic({ baseURL: g.url, apiKey: k.secret, maxRetries: 0 });
        const msg = (i) => [{ role: 'user', content: `mixed request ${i} ` + 'w'.repeat(i * 7) }];
        const drain = async (s) => { for await (const _ of s); };
        const cuts = [];
        const kinds = [
            (i) => c.chat.completions.create({ model: 'deepseek/deepseek-flash', messages: msg(i), max_tokens: 7 },
                { headers: { 'x-sim-cached-tokens': '3', 'x-sim-reasoning-tokens': '2' } }),
            async (i) => drain(await c.chat.completions.create({ model: 'mixed', messages: msg(i), max_tokens: 5, stream: true })),
            (i) => a.messages.create({ model: SONNET, max_tokens: 6, messages: msg(i) }, { headers: { 'x-sim-cached-tokens': '2' } }),
            async (i) => drain(await c.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: msg(i), max_tokens: 9, stream: true })),
            async (i) => drain(await c.chat.completions.create({ model: SONNET, messages: msg(i), max_tokens: 4, stream: true })),
            (i) => c.chat.completions.create({ model: 'mixed', messages: msg(i), max_tokens: 3 }),
            async () => cuts.push(await cutStream(k, 'openai/gpt-4o-mini', 4, {}, g)),
        ];
        const N = 42;
        // The first half of the requests to the "mixed" route find Qwen failing (HTTP 500,
        // which bills nothing): they fail over to DeepSeek. The second half reach Qwen.
        await simConfig(g.sim, { provider: 'qwen', fault_status: 500 });
        let next = 0, failovers = 0;
        const worker = async () => {
            while (next < N) {
                const i = next++;
                if (i === N / 2) await simConfig(g.sim, { provider: 'qwen', fault_status: 0 });
                const r = await kinds[i % kinds.length](i);
                if (r?.model === 'deepseek-flash' && i % kinds.length === 5) failovers++;
            }
        };
        await Promise.all([worker(), worker(), worker(), worker()]);
        assert.ok(failovers > 0, 'some requests failed over');
        await waitRequests(k, N, db);
        // Cut streams: the provider sent no usage, so the gateway estimated the output (and
        // marked it so); that difference is the only one allowed, read back from their events.
        let adjOut = 0;
        for (const cut of cuts) {
            const ev = await eventOf(cut.id, db);
            assert.equal(ev.estimated, '1');
            adjOut += Number(ev.output_tokens) - cut.sim.completion_tokens;
        }
        const models = { deepseek: 'deepseek-flash', qwen: 'qwen-plus', openai: 'gpt-4o-mini', anthropic: 'claude-sonnet-4-5' };
        const billed = await simBilled(g.sim, models, ALL_PRICES);
        const json = await reportJson(db, 'provider');
        assert.equal(json.total.requests, N, 'every request counted once');
        let totalCost = 0;
        for (const [prov, b] of Object.entries(billed)) {
            const row = json.rows.find((r) => r.provider === prov) ?? { input_tokens: 0, cached_input_tokens: 0,
                output_tokens: 0, reasoning_tokens: 0, cost_usd: 0 };
            const adj = prov === 'openai' ? adjOut : 0;
            const want = { input_tokens: b.input, cached_input_tokens: b.cached, output_tokens: b.output + adj,
                reasoning_tokens: b.reasoning, cost: b.cost + adj * ALL_PRICES[`${prov}/${models[prov]}`].output };
            const got = { input_tokens: row.input_tokens, cached_input_tokens: row.cached_input_tokens,
                output_tokens: row.output_tokens, reasoning_tokens: row.reasoning_tokens, cost: micro(row.cost_usd) };
            assert.deepEqual(got, want, `${prov}: the report against what the provider billed`);
            assert.ok(b.input > 0, `${prov} served part of the load`);
            totalCost += want.cost;
        }
        assert.equal(micro(json.total.cost_usd), totalCost);
    } finally {
        await g.stop();
    }
});

// ---- budgets and rate limits ----

/** POST a chat request with `key`; returns { status, headers, json }. */
async function ask(key, model = 'deepseek/deepseek-flash', extra = {}, pathName = '/v1/chat/completions') {
    const messages = pathName === '/v1/messages';
    const r = await fetch(gw.url + pathName, {
        method: 'POST',
        headers: messages
            ? { 'x-api-key': key.secret, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' }
            : { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model, max_tokens: 16, messages: [{ role: 'user', content: 'limits' }], ...extra }),
    });
    const text = await r.text();
    let json = null;
    try {
        json = JSON.parse(text);
    } catch {}
    return { status: r.status, headers: r.headers, json, text };
}

test('a key past its monthly budget gets 402 with a clear message, in the OpenAI and the Anthropic shape', async () => {
    let seen = 0, refused;
    for (let i = 0; i < 10 && !refused; i++) {
        const r = await ask(K.budget);
        if (r.status === 402) {
            refused = r;
            break;
        }
        assert.equal(r.status, 200, r.text);
        seen++;
        await waitRequests(K.budget, seen); // the ledger carries the spend to Redis
    }
    assert.ok(refused, 'the budget stops the key');
    const spent = (await keyTotals(K.budget)).cost_micro_usd;
    // A request holds its worst case first (prompt "limits" = 6 tokens at 2, max_tokens 16 at 3):
    // it is refused once it could pass the budget, and the budget is never passed.
    const worst = 6 * 2 + 16 * 3;
    assert.ok(spent <= 200 && spent + worst > 200 && seen >= 1,
        `refused only once the next request could pass the budget (${spent} micro-USD after ${seen} requests)`);
    assert.equal(refused.json.error.code, 'budget_exceeded');
    assert.match(refused.json.error.message, /k-budget.*budget of \$0\.000200/);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1, 'retry-after: the start of next month');
    const m = await ask(K.budget, SONNET, {}, '/v1/messages');
    assert.equal(m.status, 402);
    assert.equal(m.json.type, 'error');
    assert.equal(m.json.error.type, 'billing_error');
    assert.match(m.json.error.message, /budget/);
});

test('a key past its rpm gets 429 with retry-after, in the OpenAI and the Anthropic shape', async () => {
    const st = [];
    for (let i = 0; i < 3; i++) st.push((await ask(K.rpm)).status);
    assert.deepEqual(st, [200, 200, 200]);
    const r = await ask(K.rpm);
    assert.equal(r.status, 429);
    assert.equal(r.json.error.code, 'rpm_exceeded');
    assert.match(r.json.error.message, /3 requests per minute/);
    const ra = Number(r.headers.get('retry-after'));
    assert.ok(ra >= 1 && ra <= 60, `retry-after ${ra}`);
    const m = await ask(K.rpm, SONNET, {}, '/v1/messages');
    assert.equal(m.status, 429);
    assert.equal(m.json.error.type, 'rate_limit_error');
    assert.ok(m.headers.get('retry-after'));
});

test('a key past its tpm gets 429 once the tokens of the last minute reach the limit', async () => {
    let served = 0, r;
    for (let i = 0; i < 5; i++) {
        r = await ask(K.tpm);
        if (r.status !== 200) break;
        served++;
        await waitRequests(K.tpm, served);
    }
    assert.equal(r.status, 429, r.text);
    assert.equal(r.json.error.code, 'tpm_exceeded');
    const t = await keyTotals(K.tpm);
    const worst = 6 + 16; // the refused request's own worst case: 6 prompt tokens + max_tokens
    assert.ok(t.input_tokens + t.output_tokens <= 40 && t.input_tokens + t.output_tokens + worst > 40,
        'refused once the next request could pass 40 tokens, never past them');
    assert.ok(served >= 1);
});

test('a client that hangs up while its quota check waits on a stalled Redis: no harm, and the next requests are served', async () => {
    // A Lua busy loop holds Redis for 600 ms; checks meanwhile wait (then decide locally).
    const busy = rcli(DB, 'EVAL', "local t=redis.call('TIME') local s=t[1]*1000000+t[2] repeat local n=redis.call('TIME') " +
        'until n[1]*1000000+n[2]-s>600000 return 1', '0');
    await new Promise((r) => setTimeout(r, 50));
    const socks = [];
    for (let i = 0; i < 5; i++) {
        const s = await rawConnect(gw.port);
        s.write(rawRequest('POST', '/v1/chat/completions', {
            headers: { authorization: `Bearer ${K.slow.secret}` }, body: chatBody('deepseek/deepseek-flash'),
        }));
        socks.push(s);
    }
    await new Promise((r) => setTimeout(r, 30));
    for (const s of socks) s.destroy();
    const during = await ask(K.slow); // waits for the check, then is served without Redis
    assert.equal(during.status, 200, during.text);
    await busy;
    const after = await ask(K.slow);
    assert.equal(after.status, 200);
    assert.equal(gw.gw.exitInfo, null, 'the gateway is still running');
});
