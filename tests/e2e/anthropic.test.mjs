// anthropic.test.mjs — the four client x provider pairs through the official
// SDKs: OpenAI SDK or Anthropic SDK (/v1/messages) against an OpenAI-dialect
// provider (DeepSeek) or Claude, streamed and not, each with a tool round
// trip (call, result, final answer); the usage the gateway records matches
// what the simulated provider reported; a stream the provider breaks reaches
// the client as an error event of its own dialect.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startGateway, KEY, ledgerEvent, until, simFinalState, simId, redis, readAllText, sseParse } from './harness.mjs';

const CLAUDE = 'anthropic/claude-haiku-4-5';
const DEEPSEEK = 'deepseek/deepseek-flash';
const QUESTION = 'What is the weather in Paris?';
const RESULT = '{"temp_c":21,"sky":"clear"}';

let gw, oa, an;
before(async () => {
    gw = await startGateway();
    oa = new OpenAI({ baseURL: gw.base, apiKey: KEY, maxRetries: 0 });
    an = new Anthropic({ baseURL: gw.url, apiKey: KEY, maxRetries: 0 });
});
after(async () => {
    await gw?.stop();
});

const oaTools = [{
    type: 'function',
    function: {
        name: 'get_weather', description: 'Current weather of a city',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
}];
const anTools = [{
    name: 'get_weather', description: 'Current weather of a city',
    input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
}];

// The usage event the gateway wrote to tg:events for one request id.
// What the simulator billed for request `sid` equals what the gateway recorded.
async function assertUsageMatches(sid, requestId) {
    const sim = await simFinalState(gw.sim, sid);
    assert.equal(sim?.state, 'completed', `simulated request ${sid} completed`);
    const ev = await ledgerEvent(requestId);
    assert.equal(Number(ev.input_tokens), sim.prompt_tokens, 'input tokens as the provider reported');
    assert.equal(Number(ev.cached_input_tokens), sim.cached_tokens, 'cached input tokens as reported');
    assert.equal(Number(ev.output_tokens), sim.completion_tokens, 'output tokens as reported');
    assert.equal(Number(ev.estimated), 0, 'not an estimate');
    return sim;
}

function headers(sid, extra = {}) {
    return { 'x-sim-id': sid, 'x-sim-cached-tokens': '2', ...extra };
}

// ---- OpenAI SDK -------------------------------------------------------------

async function openaiTurn(model, messages, stream, sid, tool) {
    const h = headers(sid, tool ? { 'x-sim-tool-call': 'get_weather' } : {});
    const body = { model, messages, tools: oaTools, max_tokens: 64 };
    if (!stream) {
        const { data, response } = await oa.chat.completions.create(body, { headers: h }).withResponse();
        assert.equal(data.object, 'chat.completion');
        const c = data.choices[0];
        return { msg: c.message, finish: c.finish_reason, usage: data.usage, rid: response.headers.get('x-tollgate-request-id') };
    }
    const { data: s, response } = await oa.chat.completions
        .create({ ...body, stream: true, stream_options: { include_usage: true } }, { headers: h })
        .withResponse();
    const msg = { role: null, content: '', tool_calls: [] };
    let finish = null, usage = null, first = true;
    for await (const chunk of s) {
        assert.equal(chunk.object, 'chat.completion.chunk');
        if (chunk.usage) usage = chunk.usage;
        if (!chunk.choices.length) continue;
        const d = chunk.choices[0].delta;
        if (first) assert.equal(d.role, 'assistant', 'the first chunk carries the role');
        first = false;
        msg.content += d.content ?? '';
        for (const tc of d.tool_calls ?? []) {
            const t = (msg.tool_calls[tc.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } });
            if (tc.id) t.id = tc.id;
            if (tc.function?.name) t.function.name = tc.function.name;
            t.function.arguments += tc.function?.arguments ?? '';
        }
        finish = chunk.choices[0].finish_reason ?? finish;
    }
    assert.ok(usage, 'the usage chunk came (include_usage)');
    return { msg, finish, usage, rid: response.headers.get('x-tollgate-request-id') };
}

async function openaiRoundTrip(model, stream) {
    const sid1 = simId('oa-call'), sid2 = simId('oa-final');
    const q = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: QUESTION }];
    const a = await openaiTurn(model, q, stream, sid1, true);
    assert.equal(a.finish, 'tool_calls');
    assert.equal(a.msg.tool_calls.length, 1);
    const call = a.msg.tool_calls[0];
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
    assert.ok(call.id.length > 0);
    const sim1 = await assertUsageMatches(sid1, a.rid);
    assert.equal(a.usage.prompt_tokens, sim1.prompt_tokens, 'client sees the provider prompt tokens');
    assert.equal(a.usage.completion_tokens, sim1.completion_tokens);

    const history = [...q, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: call.id, content: RESULT }];
    const b = await openaiTurn(model, history, stream, sid2, false);
    assert.equal(b.finish, 'stop');
    assert.ok(!b.msg.tool_calls?.length, 'no second tool call');
    assert.match(b.msg.content, /\w+/);
    const sim2 = await assertUsageMatches(sid2, b.rid);
    assert.equal(b.usage.prompt_tokens, sim2.prompt_tokens);
    assert.equal(b.usage.prompt_tokens_details?.cached_tokens ?? b.usage.prompt_cache_hit_tokens, 2);
}

for (const [model, what] of [[DEEPSEEK, 'an OpenAI-dialect provider'], [CLAUDE, 'Claude']]) {
    for (const stream of [false, true]) {
        test(`OpenAI SDK -> ${what}, ${stream ? 'streamed' : 'not streamed'}: tool call, result, final answer`, () =>
            openaiRoundTrip(model, stream));
    }
}

// ---- Anthropic SDK (/v1/messages) -----------------------------------------

async function anthropicTurn(model, messages, stream, sid, tool) {
    const h = headers(sid, tool ? { 'x-sim-tool-call': 'get_weather' } : {});
    const body = { model, max_tokens: 64, system: 'You are terse.', messages, tools: anTools };
    if (!stream) {
        const { data, response } = await an.messages.create(body, { headers: h }).withResponse();
        assert.equal(data.type, 'message');
        assert.equal(data.role, 'assistant');
        return { msg: data, rid: response.headers.get('x-tollgate-request-id') };
    }
    const { data: s, response } = await an.messages.stream(body, { headers: h }).withResponse();
    const types = [];
    s.on('streamEvent', (e) => types.push(e.type));
    const msg = await s.finalMessage();
    assert.equal(types[0], 'message_start');
    assert.equal(types.at(-1), 'message_stop');
    assert.equal(types.at(-2), 'message_delta');
    assert.equal(types.filter((t) => t === 'content_block_start').length, types.filter((t) => t === 'content_block_stop').length);
    return { msg, rid: response.headers.get('x-tollgate-request-id') };
}

// Anthropic usage: input_tokens excludes cache reads and writes.
const anthropicPrompt = (u) => u.input_tokens + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0);

async function anthropicRoundTrip(model, stream) {
    const sid1 = simId('an-call'), sid2 = simId('an-final');
    const q = [{ role: 'user', content: QUESTION }];
    const a = await anthropicTurn(model, q, stream, sid1, true);
    assert.equal(a.msg.stop_reason, 'tool_use');
    const use = a.msg.content.find((b) => b.type === 'tool_use');
    assert.ok(use, 'a tool_use block');
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, { city: 'Paris' });
    assert.ok(use.id.length > 0);
    const sim1 = await assertUsageMatches(sid1, a.rid);
    assert.equal(anthropicPrompt(a.msg.usage), sim1.prompt_tokens, 'client sees the provider prompt tokens');
    assert.equal(a.msg.usage.cache_read_input_tokens, 2);
    assert.equal(a.msg.usage.output_tokens, sim1.completion_tokens);

    const history = [...q, { role: 'assistant', content: a.msg.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: RESULT }] }];
    const b = await anthropicTurn(model, history, stream, sid2, false);
    assert.equal(b.msg.stop_reason, 'end_turn');
    assert.equal(b.msg.content.length, 1);
    assert.equal(b.msg.content[0].type, 'text');
    assert.match(b.msg.content[0].text, /\w+/);
    const sim2 = await assertUsageMatches(sid2, b.rid);
    assert.equal(anthropicPrompt(b.msg.usage), sim2.prompt_tokens);
    assert.equal(b.msg.usage.output_tokens, sim2.completion_tokens);
}

for (const [model, what] of [[DEEPSEEK, 'an OpenAI-dialect provider'], [CLAUDE, 'Claude']]) {
    for (const stream of [false, true]) {
        test(`Anthropic SDK -> ${what}, ${stream ? 'streamed' : 'not streamed'}: tool call, result, final answer`, () =>
            anthropicRoundTrip(model, stream));
    }
}

// ---- a provider breaking a stream mid-answer ---------------------------------

const user = [{ role: 'user', content: 'Tell me a long story.' }];

test('OpenAI SDK, Claude resets mid-stream: the SDK raises the error event, no [DONE]', async () => {
    const s = await oa.chat.completions.create(
        { model: CLAUDE, messages: user, stream: true }, { headers: { 'x-sim-reset-after': '5', 'x-sim-output-tokens': '50' } });
    let text = '';
    await assert.rejects(async () => {
        for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
    }, (e) => /upstream|reset|stream/i.test(e.message));
    assert.ok(text.length > 0, 'some text arrived before the break');
});

test('OpenAI SDK, Claude sends an error event after a 200: an OpenAI error chunk, no [DONE]', async () => {
    const r = await fetch(`${gw.base}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'x-sim-error-after': '5' },
        body: JSON.stringify({ model: CLAUDE, messages: user, stream: true }),
    });
    assert.equal(r.status, 200);
    const { data } = sseParse(await readAllText(r));
    assert.ok(!data.includes('[DONE]'));
    const last = JSON.parse(data.at(-1));
    assert.equal(last.error.type, 'upstream_error');
    assert.match(last.error.message, /overloaded/i);
    assert.ok(data.slice(0, -1).every((d) => JSON.parse(d).object === 'chat.completion.chunk'));
});

test('Anthropic SDK, DeepSeek breaks mid-stream: an Anthropic error event, no message_stop', async () => {
    for (const fault of [{ 'x-sim-error-after': '4' }, { 'x-sim-reset-after': '4' }]) {
        const s = an.messages.stream({ model: DEEPSEEK, max_tokens: 100, messages: user }, { headers: { 'x-sim-output-tokens': '50', ...fault } });
        const types = [];
        s.on('streamEvent', (e) => types.push(e.type));
        await assert.rejects(s.finalMessage(), (e) => e instanceof Anthropic.APIError || /error/i.test(e.message));
        assert.equal(types[0], 'message_start');
        assert.ok(!types.includes('message_stop'), JSON.stringify(fault));
    }
});

test('raw /v1/messages stream from Claude cut mid-answer ends with event: error (api_error)', async () => {
    const r = await fetch(`${gw.url}/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json', 'x-sim-reset-after': '6' },
        body: JSON.stringify({ model: CLAUDE, max_tokens: 100, messages: user, stream: true }),
    });
    assert.equal(r.status, 200);
    const text = await readAllText(r);
    assert.match(text, /^event: message_start$/m);
    assert.doesNotMatch(text, /event: message_stop/);
    const m = text.match(/event: error\ndata: (.*)\n/);
    assert.ok(m, 'an error event');
    const e = JSON.parse(m[1]);
    assert.equal(e.type, 'error');
    assert.equal(e.error.type, 'api_error');
});

// ---- pass-through, errors, and the cost comment ---------------------------------

test('Anthropic client on Claude: events pass through (ping included) and the cost comment follows message_stop', async () => {
    const sid = simId('an-raw');
    const r = await fetch(`${gw.url}/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json', 'x-sim-id': sid,
            'x-sim-cache-write-tokens': '3', 'x-sim-cached-tokens': '2' },
        body: JSON.stringify({ model: CLAUDE, max_tokens: 5, messages: user, stream: true }),
    });
    const text = await readAllText(r);
    assert.match(text, /^event: ping$/m);
    assert.ok(text.indexOf('event: message_stop') < text.indexOf(': tollgate '), 'cost comment after message_stop');
    const usage = JSON.parse(text.match(/^: tollgate (.*)$/m)[1]).usage;
    const sim = await simFinalState(gw.sim, sid);
    assert.equal(usage.input_tokens, sim.prompt_tokens, 'cache reads and writes counted in input');
    assert.equal(usage.cached_input_tokens, 2);
    assert.equal(usage.output_tokens, 5);
    assert.ok(!text.includes('[DONE]'));
});

test('Claude overloaded (529) is retryable: the Anthropic client gets an Anthropic-shaped 502', async () => {
    await assert.rejects(
        an.messages.create({ model: CLAUDE, max_tokens: 10, messages: user }, { headers: { 'x-sim-status': '529' } }),
        (e) => e.status === 502 && e.error?.type === 'error' && /overloaded/i.test(e.message));
});

test('a 400 from Claude is the client\'s: relayed to an OpenAI client with its message, not retried', async () => {
    await assert.rejects(
        oa.chat.completions.create({ model: CLAUDE, messages: user }, { headers: { 'x-sim-status': '400' } }),
        (e) => e.status === 400 && /Simulated error 400/.test(e.message));
});

test('Claude overloaded right after message_start: nothing was sent yet, so it counts as a failed attempt (502), not a cut stream', async () => {
    const h = { headers: { 'x-sim-error-after': '1' } };
    await assert.rejects(
        an.messages.create({ model: CLAUDE, max_tokens: 10, messages: user, stream: true }, h).then(async (s) => { for await (const _ of s); }),
        (e) => e.status === 502 && /overloaded/i.test(e.message));
    await assert.rejects(
        oa.chat.completions.create({ model: CLAUDE, messages: user, stream: true }, h).then(async (s) => { for await (const _ of s); }),
        (e) => e.status === 502 && /overloaded/i.test(e.message));
});
