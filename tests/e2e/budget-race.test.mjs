// budget-race.test.mjs — budgets and tpm across instances: two gateway processes on one Redis,
// 100 concurrent requests split across both, against a key whose budget (or tpm) fits ~20 of
// them. Each request holds its worst case in Redis before its upstream call (gateway/quota.c),
// so the key never spends past its budget or tpm, spends all but less than one request's worst
// case of it, and every other request is refused (402 or 429). The price has no input part and
// each answer is exactly max_tokens long, so a worst case and a real cost are the same known
// number. This file has Redis database 13 of the suite's Redis to itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, post, until, rawConnect, rawRequest, simFinalState, simId } from './harness.mjs';
import { dbUrl, rcli, keyLines, dayUtc } from './money.mjs';

const DB = dbUrl(13);
const TARGET = 'qwen/qwen-plus';
// $10 per 1M output tokens = 10 micro-USD a token; no input price.
const RACE_PRICES = { [TARGET]: { input: 0, cached_input: 0, output: 10 } };
const MAX_TOKENS = 100;
const WORST_MICRO = MAX_TOKENS * 10; // 1000 micro-USD a request
const PROMPT = 'race'; // 4 bytes + 4 tokens of framing = 5 prompt tokens, by both counts
const WORST_TOKENS = 5 + MAX_TOKENS;
const K = {
    budget: { name: 'k-race-budget', secret: `tg-e2e-race-b-${process.pid}`, budget: 0.0205 }, // 20.5 worst cases
    tpm: { name: 'k-race-tpm', secret: `tg-e2e-race-t-${process.pid}`, tpm: 20 * WORST_TOKENS + 50 },
    two: { name: 'k-race-two', secret: `tg-e2e-race-2-${process.pid}`, budget: 0.002 }, // two worst cases
};

let a, b;

before(async () => {
    await rcli(DB, 'FLUSHDB');
    const opts = { redisUrl: DB, extraPrices: RACE_PRICES, extraConfig: keyLines(Object.values(K)) };
    [a, b] = await Promise.all([startGateway(opts), startGateway(opts)]);
});
after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
});

/** 100 requests at once, alternately on each gateway; resolves their { status, code, retry }. */
async function burst(key) {
    const body = JSON.stringify({ model: TARGET, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: PROMPT }] });
    const headers = { authorization: `Bearer ${key.secret}`, 'x-sim-output-tokens': String(MAX_TOKENS), 'x-sim-ttft-ms': '400' };
    const rs = await Promise.all(Array.from({ length: 100 }, (_, i) => post(i % 2 ? b : a, body, headers)));
    return rs.map((r) => ({ status: r.status, code: r.json?.error?.code, retry: Number(r.headers.get('retry-after')) }));
}

/** Today's requests, tokens and cost of one key in the ledger, once `n` requests are in. */
async function ledgerTotals(key, n) {
    let t;
    await until(async () => {
        const lines = (await rcli(DB, 'HGETALL', `tg:usage:${dayUtc()}`)).split('\n');
        t = { requests: 0, tokens: 0, cost: 0 };
        for (let i = 0; i + 1 < lines.length; i += 2) {
            const [, , k, metric] = lines[i].split('|');
            if (k !== key.name) continue;
            const v = Number(lines[i + 1]);
            if (metric === 'requests') t.requests += v;
            if (metric === 'input_tokens' || metric === 'output_tokens') t.tokens += v;
            if (metric === 'cost_micro_usd') t.cost += v;
        }
        return t.requests >= n;
    }, 15000);
    return t;
}

/** Every hold was settled: nothing of the key is reserved any more. */
async function holdsSettled(key) {
    await until(async () => Number((await rcli(DB, 'HGET', `tg:hold:{${key.name}}`, 'micro')) || 0) === 0 &&
        Number((await rcli(DB, 'HGET', `tg:hold:{${key.name}}`, 'tokens')) || 0) === 0 &&
        Number(await rcli(DB, 'ZCARD', `tg:hold-exp:{${key.name}}`)) === 0, 5000);
}

test('100 concurrent requests on two instances never spend past the budget', async () => {
    const budget = Math.round(K.budget.budget * 1e6);
    const rs = await burst(K.budget);
    const ok = rs.filter((r) => r.status === 200);
    const refused = rs.filter((r) => r.status !== 200);
    for (const r of refused) {
        assert.equal(r.status, 402, `refused with ${r.status} ${r.code}`);
        assert.equal(r.code, 'budget_exceeded');
        assert.ok(r.retry >= 1, 'a 402 says when to retry');
    }
    const t = await ledgerTotals(K.budget, ok.length);
    assert.equal(t.requests, ok.length);
    assert.equal(t.cost, ok.length * WORST_MICRO, 'each answer cost exactly its worst case');
    assert.ok(t.cost <= budget, `spent ${t.cost} of a budget of ${budget}`);
    assert.ok(t.cost >= budget - WORST_MICRO, `spent ${t.cost}: the budget was used up to less than one request`);
    assert.equal(ok.length, 20);
    const month = dayUtc().slice(0, 7);
    assert.equal(Number(await rcli(DB, 'GET', `tg:spend:{${K.budget.name}}:${month}`)), t.cost);
    await holdsSettled(K.budget);
});

test('100 concurrent requests on two instances never pass tpm', async () => {
    // The sliding window weighs the previous minute less each second: start early in a minute.
    const into = Date.now() % 60000;
    if (into > 50000) await new Promise((r) => setTimeout(r, 60000 - into + 200));
    const rs = await burst(K.tpm);
    const ok = rs.filter((r) => r.status === 200);
    for (const r of rs.filter((x) => x.status !== 200)) {
        assert.equal(r.status, 429, `refused with ${r.status} ${r.code}`);
        assert.equal(r.code, 'tpm_exceeded');
        assert.ok(r.retry >= 1);
    }
    const t = await ledgerTotals(K.tpm, ok.length);
    assert.equal(t.tokens, ok.length * WORST_TOKENS, 'each answer used exactly its worst case');
    assert.ok(t.tokens <= K.tpm.tpm, `${t.tokens} tokens in the minute, tpm ${K.tpm.tpm}`);
    assert.ok(t.tokens >= K.tpm.tpm - WORST_TOKENS, `${t.tokens} tokens: tpm used up to less than one request`);
    assert.equal(ok.length, 20);
    await holdsSettled(K.tpm);
});

test('requests in flight hold the budget (402, retry in 2 s); a client that hangs up gives its hold back', async () => {
    const body = JSON.stringify({ model: TARGET, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: PROMPT }] });
    const socks = [];
    for (const g of [a, b]) {
        const sid = simId('hold');
        const s = await rawConnect(g.port);
        s.write(rawRequest('POST', '/v1/chat/completions', {
            headers: { authorization: `Bearer ${K.two.secret}`, 'x-sim-ttft-ms': '5000', 'x-sim-id': sid }, body,
        }));
        socks.push({ s, sid, g });
    }
    await until(async () => Number(await rcli(DB, 'ZCARD', `tg:hold-exp:{${K.two.name}}`)) === 2, 5000);
    const headers = { authorization: `Bearer ${K.two.secret}` };
    const held = await post(a, body, headers);
    assert.equal(held.status, 402);
    assert.equal(held.json.error.code, 'budget_exceeded');
    assert.match(held.json.error.message, /requests in flight/);
    assert.equal(held.headers.get('retry-after'), '2');
    for (const { s } of socks) s.destroy();
    for (const { sid, g } of socks) assert.equal((await simFinalState(g.sim, sid)).state, 'cancelled');
    // The cut requests are recorded (nothing was generated: no cost here) and their holds settled.
    await holdsSettled(K.two);
    const r = await post(b, body, { ...headers, 'x-sim-output-tokens': String(MAX_TOKENS) });
    assert.equal(r.status, 200, r.text);
});
