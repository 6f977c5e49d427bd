// chat.test.mjs — what an app developer sees through the official OpenAI SDK:
// chat completions streamed or not, the x-tollgate-* headers, cost, usage
// (DeepSeek cache fields included), models, health and metrics, auth.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startGateway, KEY, costMicro, post, chatBody, readAllText, sseParse } from './harness.mjs';

let gw, client;
before(async () => {
    gw = await startGateway();
    client = new OpenAI({ baseURL: gw.base, apiKey: KEY, maxRetries: 0 });
});
after(async () => {
    const e = await gw?.stop();
    // A graceful stop is part of the contract (containers stop with SIGTERM).
    assert.deepEqual(e, { code: 0, sig: null }, 'gateway exits 0 on SIGTERM');
});

const messages = [{ role: 'user', content: 'Say hello in one word.' }];
// Simulator contract: prompt_tokens = ceil(text_bytes/4) + 4 * n_messages.
const PROMPT_TOKENS = Math.ceil(Buffer.byteLength(messages[0].content) / 4) + 4;

test('non-stream chat completion by provider/model, with the x-tollgate-* headers', async () => {
    const { data, response } = await client.chat.completions
        .create({ model: 'deepseek/deepseek-flash', messages })
        .withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.choices.length, 1);
    assert.equal(data.choices[0].message.role, 'assistant');
    assert.equal(typeof data.choices[0].message.content, 'string');
    assert.ok(data.choices[0].message.content.length > 0);
    assert.equal(data.usage.prompt_tokens, PROMPT_TOKENS);
    assert.ok(data.usage.completion_tokens > 0);

    const h = response.headers;
    assert.equal(h.get('x-tollgate-provider'), 'deepseek');
    assert.equal(h.get('x-tollgate-model'), 'deepseek-flash');
    assert.equal(h.get('x-tollgate-route'), 'direct');
    assert.equal(h.get('x-tollgate-attempts'), '1');
    assert.match(h.get('x-tollgate-request-id') ?? '', /\S{8,}/);
    const cost = Number(h.get('x-tollgate-cost-usd'));
    const expected = costMicro('deepseek/deepseek-flash', {
        input: data.usage.prompt_tokens,
        cached: data.usage.prompt_cache_hit_tokens ?? 0,
        output: data.usage.completion_tokens,
    }) / 1e6;
    assert.ok(Math.abs(cost - expected) < 1e-9, `x-tollgate-cost-usd ${cost}, expected ${expected}`);
});

test('an alias resolves to its provider/model', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'deepseek', messages }).withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal(response.headers.get('x-tollgate-provider'), 'deepseek');
    assert.equal(response.headers.get('x-tollgate-model'), 'deepseek-flash');
});

test('a route name picks its first candidate and names the route', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'e2e-route', messages }).withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal(response.headers.get('x-tollgate-route'), 'e2e-route');
    assert.equal(response.headers.get('x-tollgate-provider'), 'openai');
    assert.equal(response.headers.get('x-tollgate-model'), 'gpt-4o-mini');
});

test('each request gets its own request id', async () => {
    const a = await client.chat.completions.create({ model: 'mini', messages }).withResponse();
    const b = await client.chat.completions.create({ model: 'mini', messages }).withResponse();
    assert.notEqual(a.response.headers.get('x-tollgate-request-id'), b.response.headers.get('x-tollgate-request-id'));
});

test('Qwen and OpenAI targets answer too', async () => {
    for (const [model, provider] of [['qwen/qwen-plus', 'qwen'], ['openai/gpt-4o-mini', 'openai']]) {
        const { data, response } = await client.chat.completions.create({ model, messages }).withResponse();
        assert.equal(data.object, 'chat.completion');
        assert.equal(response.headers.get('x-tollgate-provider'), provider);
    }
});

test('an OpenAI-compatible vendor with its own key (not simulated) is one more provider', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'vendorx/vx-1', messages }).withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal(response.headers.get('x-tollgate-provider'), 'vendorx');
});

test('exact cost with cached input (OpenAI usage fields)', async () => {
    const { data, response } = await client.chat.completions
        .create({ model: 'openai/gpt-4o-mini', messages, max_tokens: 7 }, { headers: { 'x-sim-cached-tokens': '3' } })
        .withResponse();
    assert.equal(data.usage.completion_tokens, 7);
    assert.equal(data.usage.prompt_tokens_details?.cached_tokens, 3);
    const expected = costMicro('openai/gpt-4o-mini', { input: data.usage.prompt_tokens, cached: 3, output: 7 }) / 1e6;
    assert.ok(Math.abs(Number(response.headers.get('x-tollgate-cost-usd')) - expected) < 1e-9);
});

test('DeepSeek cache-hit tokens reach the client and are priced as cached input', async () => {
    const big = [{ role: 'user', content: 'x'.repeat(400) }];
    const { data, response } = await client.chat.completions
        .create({ model: 'deepseek/deepseek-flash', messages: big, max_tokens: 5 }, { headers: { 'x-sim-cached-tokens': '64' } })
        .withResponse();
    assert.equal(data.usage.prompt_cache_hit_tokens, 64);
    assert.equal(data.usage.prompt_cache_miss_tokens, data.usage.prompt_tokens - 64);
    const full = costMicro('deepseek/deepseek-flash', { input: data.usage.prompt_tokens, cached: 0, output: 5 }) / 1e6;
    const cached = costMicro('deepseek/deepseek-flash', { input: data.usage.prompt_tokens, cached: 64, output: 5 }) / 1e6;
    const cost = Number(response.headers.get('x-tollgate-cost-usd'));
    assert.ok(Math.abs(cost - cached) < 1e-9, `cost ${cost}: expected ${cached} (not the uncached ${full})`);
});

test('stream without include_usage: chunks, no usage chunk, clean end', async () => {
    const stream = await client.chat.completions.create({ model: 'deepseek/deepseek-flash', messages, stream: true, max_tokens: 8 });
    let text = '';
    let n = 0;
    let finish = null;
    for await (const chunk of stream) {
        n++;
        assert.equal(chunk.object, 'chat.completion.chunk');
        assert.ok(!chunk.usage, 'no chunk carries usage when the client did not ask for it');
        assert.ok(chunk.choices.length > 0, 'no usage-only (empty choices) chunk');
        text += chunk.choices[0].delta?.content ?? '';
        finish = chunk.choices[0].finish_reason ?? finish;
    }
    assert.ok(n >= 2);
    assert.ok(text.length > 0);
    assert.ok(finish, 'the last choice chunk has a finish_reason');
});

test('stream with include_usage: the last chunk carries usage', async () => {
    const stream = await client.chat.completions.create({
        model: 'deepseek/deepseek-flash', messages, stream: true, max_tokens: 6, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks.at(-1);
    assert.ok(last.usage, 'last chunk has usage');
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.prompt_tokens, PROMPT_TOKENS);
    assert.equal(last.usage.completion_tokens, 6);
    assert.equal(chunks.filter((c) => c.usage).length, 1, 'exactly one chunk has usage');
});

test('stream headers name provider, model, route and attempts', async () => {
    const { response } = await client.chat.completions
        .create({ model: 'mini', messages, stream: true })
        .withResponse();
    assert.equal(response.headers.get('x-tollgate-provider'), 'openai');
    assert.equal(response.headers.get('x-tollgate-model'), 'gpt-4o-mini');
    assert.equal(response.headers.get('x-tollgate-attempts'), '1');
    assert.ok(response.headers.get('x-tollgate-request-id'));
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    await response.body?.cancel();
});

test('raw stream ends with the tollgate cost comment, then [DONE]', async () => {
    const r = await fetch(gw.url + '/v1/chat/completions', {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'x-sim-cached-tokens': '2' },
        body: chatBody('openai/gpt-4o-mini', { stream: true, max_tokens: 5 }),
    });
    assert.equal(r.status, 200);
    const text = await readAllText(r);
    const { data, comments } = sseParse(text);
    assert.equal(data.at(-1), '[DONE]');
    const idxComment = text.lastIndexOf(': tollgate ');
    assert.ok(idxComment > 0 && idxComment < text.lastIndexOf('data: [DONE]'), 'cost comment comes before [DONE]');
    const c = comments.find((l) => l.startsWith(': tollgate '));
    const info = JSON.parse(c.slice(': tollgate '.length));
    assert.equal(typeof info.usage, 'object');
    const u = info.usage;
    const input = u.input_tokens ?? u.prompt_tokens;
    const output = u.output_tokens ?? u.completion_tokens;
    assert.equal(output, 5);
    assert.equal(input, Math.ceil(Buffer.byteLength('hello there') / 4) + 4);
    const expected = costMicro('openai/gpt-4o-mini', { input, cached: 2, output: 5 }) / 1e6;
    assert.ok(Math.abs(info.cost_usd - expected) < 1e-9, `cost_usd ${info.cost_usd}, expected ${expected}`);
    // The client did not ask for usage: no data event carries it.
    for (const d of data.slice(0, -1)) assert.ok(!JSON.parse(d).usage);
});

test('reasoning tokens and reasoning_content pass through (DeepSeek)', async () => {
    const { data } = await client.chat.completions
        .create({ model: 'deepseek/deepseek-flash', messages, max_tokens: 10 }, { headers: { 'x-sim-reasoning-tokens': '4' } })
        .withResponse();
    assert.equal(data.usage.completion_tokens_details?.reasoning_tokens, 4);
    assert.equal(data.usage.completion_tokens, 4 + 10);
    assert.equal(typeof data.choices[0].message.reasoning_content, 'string', 'reasoning_content passed through');
});

test('tool calls come back in OpenAI shape', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const data = await client.chat.completions.create(
        { model: 'openai/gpt-4o-mini', messages, tools },
        { headers: { 'x-sim-tool-call': 'get_weather' } },
    );
    const call = data.choices[0].message.tool_calls?.[0];
    assert.ok(call, 'a tool call');
    assert.equal(call.function.name, 'get_weather');
    assert.doesNotThrow(() => JSON.parse(call.function.arguments));
    assert.equal(data.choices[0].finish_reason, 'tool_calls');
});

test('missing or wrong gateway key: 401 in OpenAI error shape', async () => {
    for (const headers of [{}, { authorization: 'Bearer not-a-key' }, { authorization: KEY }]) {
        const r = await fetch(gw.url + '/v1/chat/completions', {
            method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: chatBody('deepseek'),
        });
        assert.equal(r.status, 401);
        const j = await r.json();
        assert.equal(typeof j.error.message, 'string');
        assert.equal(typeof j.error.type, 'string');
        assert.ok('code' in j.error);
    }
    const bad = new OpenAI({ baseURL: gw.base, apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(bad.chat.completions.create({ model: 'deepseek', messages }), (e) => e.status === 401);
});

test('GET /v1/models lists the models in OpenAI list shape', async () => {
    const ids = [];
    for await (const m of client.models.list()) {
        assert.equal(m.object, 'model');
        ids.push(m.id);
    }
    for (const id of ['deepseek/deepseek-flash', 'qwen/qwen-plus', 'openai/gpt-4o-mini', 'e2e-route']) {
        assert.ok(ids.includes(id), `${id} in ${ids.join(', ')}`);
    }
});

test('/healthz and /readyz answer 200', async () => {
    for (const p of ['/healthz', '/readyz']) {
        const r = await fetch(gw.url + p);
        assert.equal(r.status, 200, p);
        await r.arrayBuffer();
    }
});

test('/metrics is Prometheus text and counts requests', async () => {
    const r = await fetch(gw.url + '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await r.text();
    const samples = text.split('\n').filter((l) => l && !l.startsWith('#'));
    assert.ok(samples.length > 0);
    for (const l of samples) assert.match(l, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+0-9.eEInfa]+$/, l);
    assert.match(text, /deepseek/, 'per-provider series');
});

test('a plain curl-style request without the SDK works', async () => {
    const r = await post(gw, chatBody('deepseek/deepseek-flash'));
    assert.equal(r.status, 200);
    assert.equal(r.json.object, 'chat.completion');
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
});
