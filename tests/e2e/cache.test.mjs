// cache.test.mjs — the exact response cache (gateway/cache.c): a rule with `cache:` answers
// an identical request from Redis (x-tollgate-cache: hit, cost 0, no provider call), streamed
// ones as the same stream the SDKs read; hits and the cost they saved reach the ledger, the
// report and /admin/spend; errors and cut streams are never stored; a key confined to a region
// never gets an answer made elsewhere; keys do not share entries unless a scope says so; and
// without Redis requests are served as if there were no cache.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import {
    startGateway, KEY, ADMIN_TOKEN, BIN, REDIS_URL, simStats, simConfig, post, chatBody, readAllText, sseParse,
    hgetallNumbers, todayUtc, until, costMicro, redis,
} from './harness.mjs';

const execFileP = promisify(execFile);

const K = {
    a: { name: 'cache-a', secret: 'tg-e2e-cache-a-' + randomBytes(8).toString('hex') },
    b: { name: 'cache-b', secret: 'tg-e2e-cache-b-' + randomBytes(8).toString('hex') },
    eu: { name: 'cache-eu', secret: 'tg-e2e-cache-eu-' + randomBytes(8).toString('hex'), tags: ['eu-only'] },
    report: { name: 'cache-report', secret: 'tg-e2e-cache-report-' + randomBytes(8).toString('hex') },
};

// `cached` fails over from deepseek (cn) to vendorx (eu); `cached-one` has deepseek only, so
// its errors reach the client; `shared` keeps one cache for every key (a scope). The tenant
// rule binds the eu-only key to eu providers whatever route it names.
const ROUTES = `routes:
  - name: eu-tenants
    match: { key_tag: eu-only }
    require: { region: [eu] }
    candidates: [vendorx/vx-1]
  - name: cached
    match: { model: cached }
    strategy: ordered
    candidates: [deepseek/deepseek-flash, vendorx/vx-1]
    cache: { ttl_s: 60 }
  - name: cached-one
    match: { model: cached-one }
    candidates: [deepseek/deepseek-flash]
    cache: { ttl_s: 60 }
  - name: shared
    match: { model: shared }
    strategy: ordered
    candidates: [deepseek/deepseek-flash, vendorx/vx-1]
    cache: { ttl_s: 60, scope: everyone }
  - name: small
    match: { model: small }
    candidates: [deepseek/deepseek-flash]
    cache: { ttl_s: 60, max_bytes: 200 }
  - name: cached-claude
    match: { model: cached-claude }
    candidates: [anthropic/claude-haiku-4-5]
    cache: { ttl_s: 60 }
`;

let gw;
before(async () => {
    gw = await startGateway({ routes: ROUTES, keys: Object.values(K) });
});
after(async () => {
    await gw?.stop();
});

const nonce = () => randomBytes(6).toString('hex');
// Entries in Redis. Only this file turns the cache on, and its tests run one at a time.
const cacheKeys = async () =>
    (await execFileP('redis-cli', ['-u', REDIS_URL, '--raw', 'KEYS', 'tg:cache:*'])).stdout.split('\n').filter(Boolean).length;
// Runs fn (a request that should be stored) and waits until its entry is in Redis: the store
// goes out after the answer, so the client could otherwise ask again before it lands.
async function stored(fn) {
    const n = await cacheKeys();
    const r = await fn();
    assert.ok(await until(async () => (await cacheKeys()) > n, 5000), 'the answer was stored');
    return r;
}
const calls = async (provider) => (await simStats(gw.sim)).providers[provider]?.requests ?? 0;
const auth = (k) => ({ authorization: `Bearer ${k.secret}` });
const oa = (k) => new OpenAI({ baseURL: gw.base, apiKey: k.secret, maxRetries: 0 });

test('a second identical request is answered from the cache: hit header, cost 0, attempts 0, one provider call', async () => {
    const body = chatBody('cached', { messages: [{ role: 'user', content: `cache me ${nonce()}` }], max_tokens: 7 });
    const before = await calls('deepseek');
    const first = await stored(() => post(gw, body, auth(K.a)));
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers.get('x-tollgate-cache'), null);
    assert.equal(first.headers.get('x-tollgate-provider'), 'deepseek');
    const usage = first.json.usage;
    const cost = costMicro('deepseek/deepseek-flash', { input: usage.prompt_tokens, output: usage.completion_tokens });
    assert.ok(cost > 0);
    const second = await post(gw, body, auth(K.a));
    assert.equal(second.headers.get('x-tollgate-cache'), 'hit');
    assert.equal(second.status, 200);
    assert.equal(second.headers.get('x-tollgate-cost-usd'), '0.000000');
    assert.equal(second.headers.get('x-tollgate-attempts'), '0');
    assert.equal(second.headers.get('x-tollgate-provider'), 'deepseek');
    assert.equal(second.headers.get('x-tollgate-model'), 'deepseek-flash');
    assert.equal(second.headers.get('x-tollgate-route'), 'cached');
    assert.notEqual(second.headers.get('x-tollgate-request-id'), first.headers.get('x-tollgate-request-id'));
    assert.equal(second.text, first.text, 'the stored answer, byte for byte');
    assert.equal(await calls('deepseek'), before + 1, 'the simulator saw one call');
    // A body that differs by one byte is another request.
    const other = await post(gw, body.replace('cache me', 'cache me!'), auth(K.a));
    assert.equal(other.headers.get('x-tollgate-cache'), null);
    assert.equal(await calls('deepseek'), before + 2);
});

test('a streamed hit reads, through the SDK, the same text and usage as the live stream', async () => {
    const client = oa(K.a);
    const req = {
        model: 'cached', messages: [{ role: 'user', content: `stream me ${nonce()}` }], max_tokens: 12, stream: true,
        stream_options: { include_usage: true },
    };
    const read = async () => {
        const { data, response } = await client.chat.completions.create(req).withResponse();
        let text = '';
        let usage = null;
        for await (const chunk of data) {
            text += chunk.choices[0]?.delta?.content ?? '';
            if (chunk.usage) usage = chunk.usage;
        }
        return { text, usage, headers: response.headers };
    };
    const before = await calls('deepseek');
    const live = await stored(read);
    assert.equal(live.headers.get('x-tollgate-cache'), null);
    assert.ok(live.text.length > 0 && live.usage);
    const hit = await read();
    assert.equal(hit.headers.get('x-tollgate-cache'), 'hit', 'the stream was answered from the cache');
    assert.equal(hit.text, live.text);
    assert.deepEqual(hit.usage, live.usage);
    assert.equal(hit.headers.get('x-tollgate-attempts'), '0');
    assert.equal(await calls('deepseek'), before + 1);
    // The raw stream ends as a live one does: cost comment (cost 0), then [DONE].
    const r = await fetch(`${gw.base}/chat/completions`, {
        method: 'POST', headers: { ...auth(K.a), 'content-type': 'application/json' }, body: JSON.stringify(req),
    });
    const { data, comments } = sseParse(await readAllText(r));
    assert.equal(r.headers.get('x-tollgate-cache'), 'hit');
    assert.equal(data.at(-1), '[DONE]');
    const c = comments.find((l) => l.startsWith(': tollgate '));
    assert.ok(c, 'cost comment');
    const meta = JSON.parse(c.slice(': tollgate '.length));
    assert.equal(meta.cost_usd, 0);
    assert.equal(meta.usage.output_tokens, live.usage.completion_tokens);
    // A non-stream request with the same messages is another entry.
    const whole = await post(gw, JSON.stringify({ ...req, stream: false, stream_options: undefined }), auth(K.a));
    assert.equal(whole.headers.get('x-tollgate-cache'), null);
});

test('an Anthropic stream is replayed as the same events; the SDK reads the same message', async () => {
    const client = new Anthropic({ baseURL: gw.url, apiKey: K.a.secret, maxRetries: 0 });
    const req = { model: 'cached-claude', max_tokens: 10, stream: true, messages: [{ role: 'user', content: `claude ${nonce()}` }] };
    const read = async () => {
        const { data, response } = await client.messages.create(req).withResponse();
        const events = [];
        for await (const ev of data) events.push(ev);
        return { events, cache: response.headers.get('x-tollgate-cache') };
    };
    const before = await calls('anthropic');
    const live = await stored(read);
    assert.equal(live.cache, null);
    const hit = await read();
    assert.equal(hit.cache, 'hit');
    assert.deepEqual(hit.events, live.events, 'the same events, in order');
    assert.ok(hit.events.some((e) => e.type === 'content_block_delta'));
    assert.equal(hit.events.at(-1).type, 'message_stop');
    assert.equal(await calls('anthropic'), before + 1);
});

test('the Responses API: a whole and a streamed hit give the stored response, whose id a next turn continues', async () => {
    const client = oa(K.a);
    const input = `responses ${nonce()}`;
    const before = await calls('deepseek');
    const live = await stored(() => client.responses.create({ model: 'cached-one', input, max_output_tokens: 8 }).withResponse());
    assert.equal(live.response.headers.get('x-tollgate-cache'), null);
    const hit = await client.responses.create({ model: 'cached-one', input, max_output_tokens: 8 }).withResponse();
    assert.equal(hit.response.headers.get('x-tollgate-cache'), 'hit');
    assert.equal(hit.data.id, live.data.id, 'the stored response, id included');
    assert.equal(hit.data.output_text, live.data.output_text);
    assert.equal(await calls('deepseek'), before + 1);
    // That id is a stored response: a next turn continues from it.
    const next = await client.responses.create({ model: 'cached-one', input: 'and then?', previous_response_id: hit.data.id });
    assert.ok(next.output_text.length > 0);

    const read = async () => {
        const { data, response } = await client.responses.create({ model: 'cached-one', input, stream: true }).withResponse();
        const events = [];
        for await (const e of data) events.push(e);
        return { events, cache: response.headers.get('x-tollgate-cache') };
    };
    const s1 = await stored(read);
    const s2 = await read();
    assert.equal(s1.cache, null);
    assert.equal(s2.cache, 'hit');
    assert.deepEqual(s2.events, s1.events);
    assert.equal(s2.events.at(-1).type, 'response.completed');
});

test('a hit is recorded with cache_hit and the cost it saved; the report and /admin/spend show hits and saved USD', async () => {
    const body = chatBody('cached', { messages: [{ role: 'user', content: `report ${nonce()}` }], max_tokens: 5 });
    const first = await stored(() => post(gw, body, auth(K.report)));
    assert.equal(first.status, 200);
    const u = first.json.usage;
    const cost = costMicro('deepseek/deepseek-flash', { input: u.prompt_tokens, output: u.completion_tokens });
    const hit = await post(gw, body, auth(K.report));
    assert.equal(hit.headers.get('x-tollgate-cache'), 'hit');
    const field = (m) => `deepseek|deepseek-flash|${K.report.name}|${m}`;
    const h = await until(async () => {
        const x = await hgetallNumbers(`tg:usage:${todayUtc()}`);
        return x[field('cache_hits')] >= 1 && x;
    });
    assert.ok(h, 'cache_hits counted');
    assert.equal(h[field('cache_hits')], 1);
    assert.equal(h[field('saved_cost_micro_usd')], cost);
    assert.equal(h[field('cost_micro_usd')], cost, 'the hit itself cost nothing');
    assert.equal(h[field('requests')], 2, 'the hit is a request');
    assert.equal(h[field('input_tokens')], u.prompt_tokens, 'a hit uses no provider tokens');
    // The event of the hit.
    const xr = await redis('XREVRANGE', 'tg:events', '+', '-', 'COUNT', '200');
    const id = hit.headers.get('x-tollgate-request-id');
    const at = xr.indexOf(`"${id}"`);
    assert.ok(at > 0, 'the hit has an event');
    const ev = xr.slice(at, at + 1200);
    assert.match(ev, /"cache_hit"\n\s*\d+\) "1"/);
    assert.match(ev, new RegExp(`"saved_micro_usd"\\n\\s*\\d+\\) "${cost}"`));
    // The report: the old keys as they were, and the new ones.
    const { stdout } = await execFileP(BIN, ['report', '--redis', REDIS_URL, '--by', 'key', '--format', 'json']);
    const rep = JSON.parse(stdout);
    const row = rep.rows.find((r) => r.key === K.report.name);
    assert.deepEqual(Object.keys(row), ['key', 'requests', 'input_tokens', 'cached_input_tokens', 'output_tokens',
        'reasoning_tokens', 'cost_usd', 'cache_hits', 'saved_usd']);
    assert.equal(row.cache_hits, 1);
    assert.equal(Math.round(row.saved_usd * 1e6), cost);
    assert.equal(Math.round(row.cost_usd * 1e6), cost);
    const table = (await execFileP(BIN, ['report', '--redis', REDIS_URL, '--by', 'key'])).stdout;
    assert.match(table.split('\n')[2], /cache_hits\s+saved_usd$/);
    assert.match(table, new RegExp(`^${K.report.name}\\s+2\\s.*\\s1\\s+${(cost / 1e6).toFixed(6)}$`, 'm'));
    const r = await fetch(`${gw.url}/admin/spend?by=provider`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const spend = await r.json();
    const ds = spend.rows.find((x) => x.provider === 'deepseek');
    assert.ok(ds.cache_hits >= 1 && ds.saved_usd > 0, JSON.stringify(ds));
    assert.ok(spend.total.cache_hits >= 1);
});

test('errors are never stored: a 500, a 429 and a 400 go upstream again', async () => {
    // (A 400 between the others, so that deepseek's circuit never sees five failures in a row;
    // retry-after 0, so that no 429 keeps deepseek out for a while.)
    for (const status of ['500', '400', '429']) {
        const body = chatBody('cached-one', { messages: [{ role: 'user', content: `fail ${status} ${nonce()}` }] });
        const before = await calls('deepseek');
        const h = { ...auth(K.a), 'x-sim-status': status, 'x-sim-retry-after': '0' };
        const a = await post(gw, body, h);
        await new Promise((res) => setTimeout(res, 100)); // time for a store, were there one
        const b = await post(gw, body, h);
        assert.equal(a.status, b.status);
        assert.ok(a.status >= 400, `${status}: ${a.status}`);
        assert.equal(b.headers.get('x-tollgate-cache'), null);
        assert.equal(await calls('deepseek'), before + 2, `${status}: both went upstream`);
    }
    // The provider failing for every request, then recovering: the same body goes upstream again.
    const body = chatBody('cached-one', { messages: [{ role: 'user', content: `recover ${nonce()}` }] });
    await simConfig(gw.sim, { provider: 'deepseek', fault_status: 429, fault_percent: 100, retry_after: 0 });
    try {
        const a = await post(gw, body, auth(K.a));
        assert.equal(a.status, 429);
    } finally {
        await simConfig(gw.sim, { provider: 'deepseek', fault_status: 0, fault_percent: 0, retry_after: null });
    }
    const before = await calls('deepseek');
    const b = await stored(() => post(gw, body, auth(K.a)));
    assert.equal(b.status, 200, b.text);
    assert.equal(b.headers.get('x-tollgate-cache'), null);
    assert.equal(await calls('deepseek'), before + 1);
});

test('a cut stream is never stored', async () => {
    const body = chatBody('cached-one', { messages: [{ role: 'user', content: `cut ${nonce()}` }], stream: true, max_tokens: 20 });
    const hdr = { ...auth(K.a), 'content-type': 'application/json', 'x-sim-reset-after': '2' };
    const before = await calls('deepseek');
    for (let i = 0; i < 2; i++) {
        const r = await fetch(`${gw.base}/chat/completions`, { method: 'POST', headers: hdr, body });
        const text = await readAllText(r);
        await new Promise((res) => setTimeout(res, 100)); // time for a store, were there one
        assert.equal(r.headers.get('x-tollgate-cache'), null);
        assert.match(text, /upstream_error/, 'the client saw the stream break');
        assert.doesNotMatch(text, /\[DONE\]/);
    }
    assert.equal(await calls('deepseek'), before + 2, 'the second went upstream too');
});

test('residency holds: an eu-only key never gets an answer a cn provider made, even in a shared scope', async () => {
    const body = chatBody('shared', { messages: [{ role: 'user', content: `where ${nonce()}` }] });
    const made = await stored(() => post(gw, body, auth(K.a)));
    assert.equal(made.headers.get('x-tollgate-provider'), 'deepseek');
    assert.equal((await post(gw, body, auth(K.a))).headers.get('x-tollgate-cache'), 'hit');
    // The same scope and body: the entry is there, but it was made in cn.
    const before = await calls('openai'); // vendorx's base_url is the simulator's openai
    const eu = await post(gw, body, auth(K.eu));
    assert.equal(eu.status, 200, eu.text);
    assert.equal(eu.headers.get('x-tollgate-cache'), null);
    assert.equal(eu.headers.get('x-tollgate-provider'), 'vendorx');
    assert.equal(await calls('openai'), before + 1);
    // Its own answer (made in eu, stored over the cn one: one scope, one body) is a hit for it,
    // and for the other key too, which may use eu as well.
    const again = await until(async () => {
        const r = await post(gw, body, auth(K.eu));
        return r.headers.get('x-tollgate-cache') === 'hit' && r;
    });
    assert.equal(again.headers.get('x-tollgate-provider'), 'vendorx');
    const other = await post(gw, body, auth(K.a));
    assert.equal(other.headers.get('x-tollgate-cache'), 'hit');
    assert.equal(other.headers.get('x-tollgate-provider'), 'vendorx');
});

test('different keys do not share entries (the default scope is the key)', async () => {
    const body = chatBody('cached', { messages: [{ role: 'user', content: `mine ${nonce()}` }] });
    await stored(() => post(gw, body, auth(K.a)));
    assert.equal((await post(gw, body, auth(K.a))).headers.get('x-tollgate-cache'), 'hit');
    const before = await calls('deepseek');
    const b = await stored(() => post(gw, body, auth(K.b)));
    assert.equal(b.status, 200);
    assert.equal(b.headers.get('x-tollgate-cache'), null);
    assert.equal(await calls('deepseek'), before + 1);
    assert.equal((await post(gw, body, auth(K.b))).headers.get('x-tollgate-cache'), 'hit', "b's own entry");
    // The suite's default key has no cache rule in common: `deepseek` (an alias, no rule) is never cached.
    const plain = chatBody('deepseek', { messages: [{ role: 'user', content: `plain ${nonce()}` }] });
    await post(gw, plain, { authorization: `Bearer ${KEY}` });
    const p2 = await post(gw, plain, { authorization: `Bearer ${KEY}` });
    assert.equal(p2.headers.get('x-tollgate-cache'), null);
});

test('an answer over max_bytes is not stored', async () => {
    const body = chatBody('small', { messages: [{ role: 'user', content: `big ${nonce()}` }], max_tokens: 40 });
    const before = await calls('deepseek');
    const a = await post(gw, body, auth(K.a));
    assert.equal(a.status, 200);
    assert.ok(a.text.length > 200);
    await new Promise((res) => setTimeout(res, 100)); // time for a store, were there one
    const b = await post(gw, body, auth(K.a));
    assert.equal(b.headers.get('x-tollgate-cache'), null);
    assert.equal(await calls('deepseek'), before + 2);
});

test('without Redis there is no cache, and requests are served normally', async () => {
    const g = await startGateway({ routes: ROUTES, keys: Object.values(K), redisUrl: 'redis://127.0.0.1:1/0' });
    try {
        const body = chatBody('cached', { messages: [{ role: 'user', content: `no redis ${nonce()}` }] });
        for (let i = 0; i < 2; i++) {
            const r = await post(g, body, auth(K.a));
            assert.equal(r.status, 200, r.text);
            assert.equal(r.headers.get('x-tollgate-cache'), null);
        }
        assert.equal((await simStats(g.sim)).providers.deepseek.requests, 2);
    } finally {
        await g.stop();
    }
});
