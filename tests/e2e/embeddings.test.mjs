// embeddings.test.mjs — the endpoints beside chat, as SDK users meet them:
// POST /v1/embeddings through the `openai` SDK (routed, billed by input
// tokens, only embedding models on OpenAI-dialect providers), POST
// /v1/messages/count_tokens through the Anthropic SDK (Claude counts, others
// are estimated, nothing is billed), Claude ids through the "claude-*" alias
// (with the ?beta=true query Claude Code adds), and GET /v1/models, which
// lists only what the calling key may use.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startGateway, KEY, ledgerEvent, redis, until, hgetallNumbers, todayUtc, clientsConfig } from './harness.mjs';

const EMBED = 'openai/text-embedding-3-small';
const COUNT_KEY = 'tg-e2e-count-' + randomBytes(10).toString('hex');
const EU_KEY = 'tg-e2e-eu-' + randomBytes(10).toString('hex');

// The test routes plus an eu-only tenant rule (vendorx is the one eu
// provider), an embeddings route, and the "claude-*" alias.
const ROUTES = `routes:
  - name: eu-tenants
    match: { key_tag: eu-only }
    require: { region: [eu] }
    candidates: [vendorx/vx-1]
  - name: e2e-route
    match: { model: e2e-route }
    strategy: ordered
    candidates: [openai/gpt-4o-mini, deepseek/deepseek-flash]
  - name: embed
    match: { model: embed }
    candidates: [openai/text-embedding-3-small]
aliases: { "claude-*": "anthropic/claude-*", deepseek: deepseek/deepseek-flash, mini: openai/gpt-4o-mini, small-embed: openai/text-embedding-3-small }
`;

let gw, oa, an;
before(async () => {
    gw = await startGateway({
        routes: ROUTES,
        // An input-only price on the Anthropic provider: the dialect has no
        // embeddings endpoint, so it must be refused, never called.
        extraPricesYaml: clientsConfig({ embeddings: true }).extraPricesYaml +
            `  anthropic/voyage-x: { input: 1, source: e2e test, as_of: ${todayUtc()} }\n`,
        keys: [{ name: 'counter', secret: COUNT_KEY }, { name: 'eu', secret: EU_KEY, tags: ['eu-only'] }],
    });
    oa = new OpenAI({ baseURL: gw.base, apiKey: KEY, maxRetries: 0 });
    an = new Anthropic({ baseURL: gw.url, apiKey: COUNT_KEY, maxRetries: 0 });
});
after(async () => {
    await gw?.stop();
});

// ---- embeddings ----

test('embeddings: a string input gives one vector, billed by input tokens', async () => {
    const { data, response } = await oa.embeddings.create({ model: EMBED, input: 'hello world' }).withResponse();
    assert.equal(data.object, 'list');
    assert.equal(data.data.length, 1);
    assert.equal(data.data[0].index, 0);
    assert.ok(Array.isArray(data.data[0].embedding) && data.data[0].embedding.length > 0);
    assert.ok(data.data[0].embedding.every((x) => Number.isFinite(x)));
    assert.ok(data.usage.prompt_tokens > 0);
    assert.equal(response.headers.get('x-tollgate-provider'), 'openai');
    assert.equal(response.headers.get('x-tollgate-model'), 'text-embedding-3-small');
    assert.equal(response.headers.get('x-tollgate-route'), 'direct');
    assert.equal(response.headers.get('x-tollgate-attempts'), '1');
    const cost = Number(response.headers.get('x-tollgate-cost-usd'));
    assert.ok(Math.abs(cost - (data.usage.prompt_tokens * 2) / 1e6) < 1e-9, `cost ${cost} = input tokens x $2/M`);
    const ev = await ledgerEvent(response.headers.get('x-tollgate-request-id'));
    assert.equal(Number(ev.input_tokens), data.usage.prompt_tokens);
    assert.equal(Number(ev.output_tokens), 0);
    assert.equal(Number(ev.cost_micro_usd), data.usage.prompt_tokens * 2);
});

test('embeddings: an array input gives one vector per string, in order', async () => {
    const r = await oa.embeddings.create({ model: EMBED, input: ['one', 'two', 'three'] });
    assert.deepEqual(r.data.map((d) => d.index), [0, 1, 2]);
    assert.notDeepEqual(r.data[0].embedding, r.data[1].embedding);
});

test('embeddings: dimensions sets the vector length', async () => {
    const r = await oa.embeddings.create({ model: EMBED, input: 'hello', dimensions: 16 });
    assert.equal(r.data[0].embedding.length, 16);
});

test('embeddings: the same input gives the same vector (float and base64 encodings agree)', async () => {
    const a = await oa.embeddings.create({ model: EMBED, input: 'deterministic' });
    const b = await oa.embeddings.create({ model: EMBED, input: 'deterministic', encoding_format: 'float' });
    assert.equal(a.data[0].embedding.length, b.data[0].embedding.length);
    a.data[0].embedding.forEach((x, i) => assert.ok(Math.abs(x - b.data[0].embedding[i]) < 1e-6, `component ${i}`));
});

test('embeddings: routed by alias and by rule like chat', async () => {
    const viaAlias = await oa.embeddings.create({ model: 'small-embed', input: 'hi' }).withResponse();
    assert.equal(viaAlias.response.headers.get('x-tollgate-model'), 'text-embedding-3-small');
    const viaRule = await oa.embeddings.create({ model: 'embed', input: 'hi' }).withResponse();
    assert.equal(viaRule.response.headers.get('x-tollgate-route'), 'embed');
});

test('embeddings: a chat model is refused with 400 naming it, and an embedding model refuses chat', async () => {
    await assert.rejects(
        oa.embeddings.create({ model: 'openai/gpt-4o-mini', input: 'hi' }),
        (e) => e instanceof OpenAI.BadRequestError && /gpt-4o-mini is a chat model/.test(e.message),
    );
    await assert.rejects(
        oa.chat.completions.create({ model: EMBED, messages: [{ role: 'user', content: 'hi' }] }),
        (e) => e instanceof OpenAI.BadRequestError && /text-embedding-3-small is an embedding model/.test(e.message),
    );
});

test('embeddings: an Anthropic candidate is refused, never called', async () => {
    await assert.rejects(
        oa.embeddings.create({ model: 'anthropic/voyage-x', input: 'hi' }),
        (e) => e instanceof OpenAI.BadRequestError && /no embeddings endpoint/.test(e.message),
    );
});

test('embeddings: the key must be valid', async () => {
    const bad = new OpenAI({ baseURL: gw.base, apiKey: 'tg-wrong', maxRetries: 0 });
    await assert.rejects(bad.embeddings.create({ model: EMBED, input: 'hi' }), (e) => e instanceof OpenAI.AuthenticationError);
});

// ---- count_tokens ----

async function counterFields() {
    const h = await hgetallNumbers(`tg:usage:${todayUtc()}`);
    return Object.keys(h).filter((f) => f.split('|')[2] === 'counter');
}

test('count_tokens for a Claude model: a count from Claude, not estimated, not billed', async () => {
    const { data, response } = await an.messages
        .countTokens({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'How many tokens is this?' }] })
        .withResponse();
    assert.ok(Number.isInteger(data.input_tokens) && data.input_tokens > 0);
    assert.notEqual(response.headers.get('x-tollgate-estimated'), 'true');
    assert.equal(response.headers.get('x-tollgate-provider'), 'anthropic');
    await sleep(300);
    assert.deepEqual(await counterFields(), [], 'nothing billed to the key');
});

test('count_tokens for a non-Claude model: estimated locally (x-tollgate-estimated: true), not billed', async () => {
    const { data, response } = await an.messages
        .countTokens({ model: 'deepseek/deepseek-flash', messages: [{ role: 'user', content: 'How many tokens is this?' }] })
        .withResponse();
    assert.ok(Number.isInteger(data.input_tokens) && data.input_tokens > 0);
    assert.equal(response.headers.get('x-tollgate-estimated'), 'true');
    assert.equal(response.headers.get('x-tollgate-provider'), 'deepseek');
    await sleep(300);
    assert.deepEqual(await counterFields(), [], 'nothing billed to the key');
});

test('count_tokens: x-api-key works too, and errors are Anthropic-shaped', async () => {
    const r = await fetch(`${gw.url}/v1/messages/count_tokens`, {
        method: 'POST',
        headers: { 'x-api-key': COUNT_KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(r.status, 200);
    assert.ok((await r.json()).input_tokens > 0);
    const bad = await fetch(`${gw.url}/v1/messages/count_tokens`, {
        method: 'POST',
        headers: { 'x-api-key': COUNT_KEY, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(bad.status, 404);
    const body = await bad.json();
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'not_found_error');
});

// ---- Claude ids by pattern, with Claude Code's query string ----

test('claude-* alias: /v1/messages?beta=true with a Claude id nobody listed reaches Anthropic unchanged', async () => {
    const r = await fetch(`${gw.url}/v1/messages?beta=true`, {
        method: 'POST',
        headers: { 'x-api-key': KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'claude-opus-5-5', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-tollgate-provider'), 'anthropic');
    assert.equal(r.headers.get('x-tollgate-model'), 'claude-opus-5-5');
    assert.equal((await r.json()).type, 'message');
});

// ---- GET /v1/models ----

async function modelIds(key) {
    const r = await fetch(`${gw.base}/models`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(r.status, 200);
    const body = await r.json();
    assert.equal(body.object, 'list');
    return body.data.map((m) => m.id);
}

test('GET /v1/models lists what the key may use: an eu-only key sees only eu models and the routes that reach them', async () => {
    const all = await modelIds(KEY);
    for (const id of ['openai/gpt-4o-mini', 'deepseek/deepseek-flash', 'vendorx/vx-1', 'e2e-route', 'mini', 'claude-*', EMBED])
        assert.ok(all.includes(id), `${id} listed for the test key`);
    assert.ok(!all.includes('anthropic/claude-*'), 'a pattern price is not a model id');
    const eu = await modelIds(EU_KEY);
    assert.ok(eu.includes('vendorx/vx-1'), 'the eu provider is listed');
    assert.ok(eu.includes('eu-tenants'), 'the eu route is listed');
    for (const id of ['openai/gpt-4o-mini', 'deepseek/deepseek-flash', 'e2e-route', 'mini', 'claude-*', EMBED])
        assert.ok(!eu.includes(id), `${id} is not listed for the eu-only key`);
    // The list and the router agree: what is not listed is refused.
    const euClient = new OpenAI({ baseURL: gw.base, apiKey: EU_KEY, maxRetries: 0 });
    await assert.rejects(euClient.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
        (e) => e.status === 403);
});
