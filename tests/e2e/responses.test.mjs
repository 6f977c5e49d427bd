// responses.test.mjs — the OpenAI Responses API (/v1/responses) as a user of
// the official `openai` SDK sees it: create, streamed events one by one as
// the SDK parses them, a function-call round trip, previous_response_id
// across providers, stored responses (GET, DELETE, other keys, store:false),
// built-in tools refused, headers and the ledger; an upstream that breaks
// mid-stream (an `error` event, then response.failed), a vendor marked
// `responses: native`, the response store with Redis away. (/v1/embeddings
// and /v1/messages/count_tokens are in embeddings.test.mjs.)
// TOLLGATE_E2E_PENDING=1 skips the file (while these endpoints are being built).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { startGateway, KEY, ledgerEvent, redis, until, simId, clientsConfig, costMicro, readAllText, simFinalState } from './harness.mjs';

const PENDING = process.env.TOLLGATE_E2E_PENDING === '1';
const it = (name, fn) => test(name, { skip: PENDING && 'TOLLGATE_E2E_PENDING=1' }, fn);

const MINI = 'openai/gpt-4o-mini';
const CLAUDE = 'anthropic/claude-haiku-4-5';
// A vendor that speaks the Responses API itself (the simulator serves /{provider}/v1/responses).
const NATIVE = 'nativeai/nv-1';
const NATIVE_PRICE = { input: 2, cached_input: 1, output: 4 };
const OTHER_KEY = 'tg-e2e-other-' + randomBytes(10).toString('hex');
const tools = [{
    type: 'function', name: 'get_weather', description: 'Current weather of a city', strict: false,
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
}];

let gw, oa, other;
before(async () => {
    if (PENDING) return;
    gw = await startGateway({
        ...clientsConfig({ embeddings: true }),
        keys: [{ name: 'other', secret: OTHER_KEY }],
        extraProviders: '  nativeai: { dialect: openai, base_url: https://api.nativeai.example/v1, api_key_env: TG_E2E_UNSET_NATIVE_KEY, region: us, responses: native }',
        extraPrices: { [NATIVE]: NATIVE_PRICE },
    });
    oa = new OpenAI({ baseURL: gw.base, apiKey: KEY, maxRetries: 0 });
    other = new OpenAI({ baseURL: gw.base, apiKey: OTHER_KEY, maxRetries: 0 });
});
after(async () => {
    await gw?.stop();
});

// All events of one streamed create, as the SDK parsed them (memoised per kind).
const streams = {};
function streamed(kind) {
    streams[kind] ??= (async () => {
        const headers = kind === 'tool' ? { 'x-sim-tool-call': 'get_weather' } : {};
        const body = { model: MINI, input: 'What is the weather in Paris?', stream: true, ...(kind === 'tool' ? { tools } : {}) };
        const { data: s, response } = await oa.responses.create(body, { headers }).withResponse();
        const events = [];
        for await (const e of s) events.push(e);
        return { events, headers: response.headers };
    })();
    return streams[kind];
}
const ofType = (events, t) => events.filter((e) => e.type === t);

// ---- create ----

it('responses.create (non-stream): a completed response with output_text, usage and the x-tollgate-* headers', async () => {
    const { data, response } = await oa.responses.create({ model: MINI, input: 'Say hello in one word.' }).withResponse();
    assert.equal(data.object, 'response');
    assert.match(data.id, /^resp_/);
    assert.equal(data.status, 'completed');
    assert.equal(data.model.length > 0, true);
    const msg = data.output.find((o) => o.type === 'message');
    assert.ok(msg, 'a message output item');
    assert.equal(msg.role, 'assistant');
    assert.equal(msg.content[0].type, 'output_text');
    assert.ok(data.output_text.length > 0, 'output_text (SDK convenience) is not empty');
    assert.ok(data.usage.input_tokens > 0 && data.usage.output_tokens > 0);
    assert.equal(data.usage.total_tokens, data.usage.input_tokens + data.usage.output_tokens);

    const h = response.headers;
    assert.equal(h.get('x-tollgate-provider'), 'openai');
    assert.equal(h.get('x-tollgate-model'), 'gpt-4o-mini');
    assert.equal(h.get('x-tollgate-route'), 'direct');
    assert.equal(h.get('x-tollgate-attempts'), '1');
    const rid = h.get('x-tollgate-request-id');
    assert.match(rid ?? '', /\S{8,}/);
    const cached = data.usage.input_tokens_details?.cached_tokens ?? 0;
    const expected = costMicro(MINI, { input: data.usage.input_tokens, cached, output: data.usage.output_tokens });
    assert.ok(Math.abs(Number(h.get('x-tollgate-cost-usd')) - expected / 1e6) < 1e-9, 'x-tollgate-cost-usd is exact');

    const ev = await ledgerEvent(rid);
    assert.equal(ev.provider, 'openai');
    assert.equal(ev.model, 'gpt-4o-mini');
    assert.equal(Number(ev.input_tokens), data.usage.input_tokens, 'ledger input tokens = response usage');
    assert.equal(Number(ev.output_tokens), data.usage.output_tokens, 'ledger output tokens = response usage');
    assert.equal(Number(ev.cost_micro_usd), expected, 'ledger cost');
});

it('responses.create translated to Claude: same shape, provider anthropic', async () => {
    const { data, response } = await oa.responses
        .create({ model: CLAUDE, instructions: 'Be brief.', input: [{ role: 'user', content: 'Say hello.' }], max_output_tokens: 32 })
        .withResponse();
    assert.equal(data.status, 'completed');
    assert.ok(data.output_text.length > 0);
    assert.equal(response.headers.get('x-tollgate-provider'), 'anthropic');
    assert.ok(data.usage.input_tokens > 0);
});

it('responses.stream: deltas, then finalResponse with the same text and usage', async () => {
    const s = oa.responses.stream({ model: MINI, input: 'Say hello.' });
    let text = '';
    s.on('response.output_text.delta', (e) => (text += e.delta));
    const final = await s.finalResponse();
    assert.equal(final.status, 'completed');
    assert.ok(text.length > 0, 'text came as deltas');
    assert.equal(final.output_text, text, 'the final response holds what the deltas said');
    assert.ok(final.usage.output_tokens > 0);
});

// ---- stream events, one test per type the SDK parses ----

it('stream: response.created comes first, with an in_progress response', async () => {
    const { events } = await streamed('text');
    assert.equal(events[0].type, 'response.created');
    assert.equal(events[0].response.status, 'in_progress');
    assert.match(events[0].response.id, /^resp_/);
    assert.equal(ofType(events, 'response.created').length, 1);
});

it('stream: response.in_progress follows response.created', async () => {
    const { events } = await streamed('text');
    const i = events.findIndex((e) => e.type === 'response.in_progress');
    assert.ok(i > 0, 'response.in_progress present after created');
    assert.equal(events[i].response.id, events[0].response.id);
});

it('stream: response.output_item.added opens the message item', async () => {
    const { events } = await streamed('text');
    const a = ofType(events, 'response.output_item.added');
    assert.ok(a.length >= 1);
    assert.equal(a[0].output_index, 0);
    assert.equal(a[0].item.type, 'message');
    assert.equal(a[0].item.role, 'assistant');
    assert.ok(a[0].item.id);
});

it('stream: response.content_part.added opens an output_text part before any delta', async () => {
    const { events } = await streamed('text');
    const i = events.findIndex((e) => e.type === 'response.content_part.added');
    assert.ok(i >= 0);
    assert.equal(events[i].part.type, 'output_text');
    assert.equal(events[i].content_index, 0);
    assert.ok(i < events.findIndex((e) => e.type === 'response.output_text.delta'), 'part added before the first delta');
});

it('stream: response.output_text.delta events carry the text', async () => {
    const { events } = await streamed('text');
    const d = ofType(events, 'response.output_text.delta');
    assert.ok(d.length >= 1);
    const item = ofType(events, 'response.output_item.added')[0].item.id;
    for (const e of d) {
        assert.equal(e.item_id, item);
        assert.equal(typeof e.delta, 'string');
    }
    assert.ok(d.map((e) => e.delta).join('').length > 0);
});

it('stream: response.output_text.done holds the whole text', async () => {
    const { events } = await streamed('text');
    const [done] = ofType(events, 'response.output_text.done');
    assert.ok(done);
    assert.equal(done.text, ofType(events, 'response.output_text.delta').map((e) => e.delta).join(''));
});

it('stream: response.content_part.done closes the part with the text', async () => {
    const { events } = await streamed('text');
    const [done] = ofType(events, 'response.content_part.done');
    assert.ok(done);
    assert.equal(done.part.type, 'output_text');
    assert.equal(done.part.text, ofType(events, 'response.output_text.done')[0].text);
});

it('stream: response.output_item.done closes the completed message', async () => {
    const { events } = await streamed('text');
    const [done] = ofType(events, 'response.output_item.done');
    assert.ok(done);
    assert.equal(done.item.type, 'message');
    assert.equal(done.item.status, 'completed');
    assert.equal(done.item.content[0].text, ofType(events, 'response.output_text.done')[0].text);
});

it('stream: response.completed ends it, with the output and usage', async () => {
    const { events } = await streamed('text');
    const last = events.at(-1);
    assert.equal(last.type, 'response.completed');
    assert.equal(last.response.status, 'completed');
    assert.equal(last.response.id, events[0].response.id);
    assert.equal(last.response.output[0].content[0].text, ofType(events, 'response.output_text.done')[0].text);
    assert.ok(last.response.usage.input_tokens > 0 && last.response.usage.output_tokens > 0);
});

it('stream: sequence_number starts at 0 and increases by one', async () => {
    const { events } = await streamed('text');
    events.forEach((e, i) => assert.equal(e.sequence_number, i, `event ${i} (${e.type})`));
});

it('stream: response.function_call_arguments.delta events build the arguments', async () => {
    const { events } = await streamed('tool');
    const added = ofType(events, 'response.output_item.added').find((e) => e.item.type === 'function_call');
    assert.ok(added, 'a function_call item is added');
    assert.equal(added.item.name, 'get_weather');
    const d = ofType(events, 'response.function_call_arguments.delta');
    assert.ok(d.length >= 1);
    for (const e of d) assert.equal(e.item_id, added.item.id);
});

it('stream: response.function_call_arguments.done holds JSON arguments, and the item is done', async () => {
    const { events } = await streamed('tool');
    const [done] = ofType(events, 'response.function_call_arguments.done');
    assert.ok(done);
    assert.equal(done.arguments, ofType(events, 'response.function_call_arguments.delta').map((e) => e.delta).join(''));
    assert.equal(typeof JSON.parse(done.arguments), 'object');
    const item = ofType(events, 'response.output_item.done').find((e) => e.item.type === 'function_call');
    assert.ok(item.item.call_id);
    assert.equal(item.item.arguments, done.arguments);
    assert.equal(events.at(-1).type, 'response.completed');
    events.forEach((e, i) => assert.equal(e.sequence_number, i));
});

it('stream headers: provider, model and request id; content-type text/event-stream', async () => {
    const { headers } = await streamed('text');
    assert.equal(headers.get('x-tollgate-provider'), 'openai');
    assert.equal(headers.get('x-tollgate-model'), 'gpt-4o-mini');
    assert.ok(headers.get('x-tollgate-request-id'));
    assert.match(headers.get('content-type') ?? '', /^text\/event-stream/);
});

// ---- tools and conversation state ----

it('function-call round trip: tool call, function_call_output, final answer', async () => {
    const sid = simId('resp-tool');
    const first = await oa.responses.create(
        { model: MINI, input: 'What is the weather in Paris?', tools },
        { headers: { 'x-sim-tool-call': 'get_weather', 'x-sim-id': sid } },
    );
    const call = first.output.find((o) => o.type === 'function_call');
    assert.ok(call, `a function_call in ${JSON.stringify(first.output)}`);
    assert.equal(call.name, 'get_weather');
    assert.ok(call.call_id);
    JSON.parse(call.arguments);

    const second = await oa.responses.create({
        model: MINI, tools,
        input: [
            { role: 'user', content: 'What is the weather in Paris?' },
            { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
            { type: 'function_call_output', call_id: call.call_id, output: '{"temp_c":21,"sky":"clear"}' },
        ],
    });
    assert.equal(second.status, 'completed');
    assert.ok(second.output_text.length > 0, 'a final answer');
    assert.ok(!second.output.some((o) => o.type === 'function_call'), 'no further tool call');
});

it('previous_response_id: the follow-up goes to another provider and carries the first turn', async () => {
    const first = await oa.responses.create({ model: MINI, input: 'My name is Ada. Remember it, please.' });
    assert.equal(first.status, 'completed');
    const q = 'What is my name?';
    const { data: alone } = await oa.responses.create({ model: CLAUDE, input: q }).withResponse();
    const { data: follow, response } = await oa.responses
        .create({ model: CLAUDE, input: q, previous_response_id: first.id })
        .withResponse();
    assert.equal(response.headers.get('x-tollgate-provider'), 'anthropic', 'second turn on Claude');
    assert.equal(follow.status, 'completed');
    assert.equal(follow.previous_response_id, first.id);
    assert.ok(follow.output_text.length > 0);
    assert.ok(follow.usage.input_tokens > alone.usage.input_tokens,
        `the first turn is in the prompt: ${follow.usage.input_tokens} > ${alone.usage.input_tokens} input tokens`);
});

it('previous_response_id that does not exist: 404', async () => {
    await assert.rejects(oa.responses.create({ model: MINI, input: 'hi', previous_response_id: 'resp_doesnotexist0000' }),
        (e) => e.status === 404);
});

// ---- stored responses ----

it('GET /v1/responses/{id} returns the stored response; DELETE removes it', async () => {
    const made = await oa.responses.create({ model: MINI, input: 'Say hello.' });
    const got = await oa.responses.retrieve(made.id);
    assert.equal(got.id, made.id);
    assert.equal(got.status, 'completed');
    assert.equal(got.output_text, made.output_text);
    const del = await oa.responses.delete(made.id).asResponse();
    assert.equal(del.status, 200);
    await assert.rejects(oa.responses.retrieve(made.id), (e) => e instanceof OpenAI.NotFoundError);
    await assert.rejects(oa.responses.delete(made.id), (e) => e instanceof OpenAI.NotFoundError);
});

it('another key gets 404 for a stored response, and cannot delete it or continue from it', async () => {
    const made = await oa.responses.create({ model: MINI, input: 'Say hello.' });
    await assert.rejects(other.responses.retrieve(made.id), (e) => e instanceof OpenAI.NotFoundError);
    await assert.rejects(other.responses.delete(made.id), (e) => e instanceof OpenAI.NotFoundError);
    await assert.rejects(other.responses.create({ model: MINI, input: 'hi', previous_response_id: made.id }), (e) => e.status === 404);
    assert.equal((await oa.responses.retrieve(made.id)).id, made.id, 'the owner still sees it');
});

it('store:false keeps nothing', async () => {
    const made = await oa.responses.create({ model: MINI, input: 'Say hello.', store: false });
    assert.equal(made.status, 'completed');
    assert.equal(made.store, false);
    await assert.rejects(oa.responses.retrieve(made.id), (e) => e instanceof OpenAI.NotFoundError);
    await assert.rejects(oa.responses.create({ model: MINI, input: 'hi', previous_response_id: made.id }), (e) => e.status === 404);
});

it('a built-in tool (web_search) is refused with 400 naming the tool', async () => {
    await assert.rejects(
        oa.responses.create({ model: MINI, input: 'News today?', tools: [{ type: 'web_search' }] }),
        (e) => e instanceof OpenAI.BadRequestError && /web_search/.test(e.message),
    );
});

// ---- an upstream that breaks mid-stream ----

// POST /v1/responses with stream:true, read raw: [{event, data}] in order (data parsed when JSON).
async function rawStream(body, headers = {}) {
    const r = await fetch(`${gw.base}/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ stream: true, ...body }),
    });
    const text = await readAllText(r);
    const events = [];
    for (const block of text.split(/\n\n/)) {
        const lines = block.split('\n');
        const ev = lines.find((l) => l.startsWith('event: '))?.slice(7);
        const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
        if (!data) continue;
        let d = data;
        try {
            d = JSON.parse(data);
        } catch {}
        events.push({ event: ev, data: d });
    }
    return { status: r.status, headers: r.headers, text, events };
}

// The failure ending: deltas reached the client, then `error` and response.failed, in sequence.
function assertFailedEnding(events, text, what) {
    assert.ok(events.some((e) => e.event === 'response.output_text.delta'), `${what}: text reached the client first`);
    const [err, failed] = events.slice(-2);
    assert.equal(err.event, 'error', `${what}: an error event before the end`);
    assert.equal(err.data.type, 'error');
    assert.ok(err.data.message.length > 0, 'the error says what happened');
    assert.equal(failed.event, 'response.failed', `${what}: response.failed ends it`);
    assert.equal(failed.data.response.status, 'failed');
    assert.equal(failed.data.response.id, events[0].data.response.id, 'the same response failed');
    assert.ok(!events.some((e) => e.event === 'response.completed'), `${what}: never response.completed`);
    assert.doesNotMatch(text, /\[DONE\]/);
    events.forEach((e, i) => assert.equal(e.data.sequence_number, i, `${what}: event ${i} (${e.event}) in sequence`));
}

for (const [model, after] of [[MINI, 6], [CLAUDE, 6], [NATIVE, 6]]) {
    it(`stream cut mid-answer (${model}): an error event, then response.failed, never response.completed`, async () => {
        const { status, headers, text, events } = await rawStream(
            { model, input: 'Tell me a story.' },
            { 'x-sim-reset-after': String(after), 'x-sim-output-tokens': '40' },
        );
        assert.equal(status, 200);
        assertFailedEnding(events, text, model);
        const ev = await ledgerEvent(headers.get('x-tollgate-request-id'));
        assert.equal(ev.status, '502', 'recorded as a broken answer');
    });
}

it('an error event from the provider mid-stream also ends in response.failed', async () => {
    const { text, events } = await rawStream(
        { model: MINI, input: 'Tell me a story.' },
        { 'x-sim-error-after': '6', 'x-sim-output-tokens': '40' },
    );
    assertFailedEnding(events, text, 'error-after');
});

it('client hang-up mid-stream cancels the upstream, and the partial answer is recorded', async () => {
    const sid = simId('resp-hangup');
    const ac = new AbortController();
    const r = await fetch(`${gw.base}/responses`, {
        method: 'POST',
        signal: ac.signal,
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'x-sim-id': sid, 'x-sim-tps': '20', 'x-sim-output-tokens': '400' },
        body: JSON.stringify({ model: MINI, input: 'Tell me a long story.', stream: true }),
    });
    const rid = r.headers.get('x-tollgate-request-id');
    const reader = r.body.getReader();
    let got = '';
    while (!got.includes('response.output_text.delta')) got += new TextDecoder().decode((await reader.read()).value);
    ac.abort();
    const rec = await simFinalState(gw.sim, sid, 10000);
    assert.equal(rec?.state, 'cancelled', `simulator says ${JSON.stringify(rec)}`);
    const ev = await ledgerEvent(rid);
    assert.equal(ev.status, '499');
    assert.ok(Number(ev.output_tokens) > 0 && Number(ev.output_tokens) < 400, `partial output billed: ${ev.output_tokens}`);
});

// ---- a provider marked `responses: native` ----

it('native provider: the request passes through, the answer keeps its items, gets the gateway id, usage and cost', async () => {
    const { data, response } = await oa.responses
        .create({ model: NATIVE, input: 'Say hello.', tools: [{ type: 'web_search' }] })
        .withResponse();
    assert.equal(response.headers.get('x-tollgate-provider'), 'nativeai');
    assert.equal(response.headers.get('x-tollgate-model'), 'nv-1');
    const rid = response.headers.get('x-tollgate-request-id');
    assert.equal(data.id, `resp_${rid}`, 'the response id is the gateway\'s');
    assert.equal(data.status, 'completed');
    const msg = data.output.find((o) => o.type === 'message');
    assert.match(msg.id, /_sim_/, 'the vendor\'s own output items, not a translation');
    assert.ok(data.output_text.length > 0);
    const u = data.usage;
    const cached = u.input_tokens_details?.cached_tokens ?? 0;
    const cost = (u.input_tokens - cached) * NATIVE_PRICE.input + cached * NATIVE_PRICE.cached_input + u.output_tokens * NATIVE_PRICE.output;
    assert.ok(Math.abs(Number(response.headers.get('x-tollgate-cost-usd')) - cost / 1e6) < 1e-9, 'cost from the Responses usage');
    const ev = await ledgerEvent(rid);
    assert.equal(ev.provider, 'nativeai');
    assert.equal(Number(ev.input_tokens), u.input_tokens);
    assert.equal(Number(ev.output_tokens), u.output_tokens);
    assert.equal((await oa.responses.retrieve(data.id)).output_text, data.output_text, 'stored like any other');
});

it('native provider stream: the vendor\'s events in sequence, response.completed with the gateway id and usage', async () => {
    const s = oa.responses.stream({ model: NATIVE, input: 'Say hello.' }, { headers: { 'x-sim-cached-tokens': '3', 'x-sim-reasoning-tokens': '2' } });
    const events = [];
    for await (const e of s) events.push(e);
    const final = await s.finalResponse();
    assert.equal(events[0].type, 'response.created');
    assert.equal(events.at(-1).type, 'response.completed');
    events.forEach((e, i) => assert.equal(e.sequence_number, i));
    assert.equal(events.at(-1).response.id, events[0].response.id);
    assert.match(final.id, /^resp_[0-9a-f]{16}$/);
    assert.equal(final.usage.input_tokens_details.cached_tokens, 3);
    assert.equal(final.usage.output_tokens_details.reasoning_tokens, 2);
    assert.equal((await oa.responses.retrieve(final.id)).id, final.id);
});

it('previous_response_id crosses between translated and native providers, both ways', async () => {
    const first = await oa.responses.create({ model: MINI, input: 'My name is Ada. Remember it, please.' });
    const q = 'What is my name?';
    const alone = await oa.responses.create({ model: NATIVE, input: q });
    const second = await oa.responses.create({ model: NATIVE, input: q, previous_response_id: first.id });
    assert.ok(second.usage.input_tokens > alone.usage.input_tokens, 'the native vendor got the first turn in its input');
    const third = await oa.responses.create({ model: CLAUDE, input: 'And again?', previous_response_id: second.id });
    assert.equal(third.status, 'completed');
    assert.equal(third.previous_response_id, second.id);
});

// ---- the response store with Redis away ----

it('Redis away: requests are served, a stored response cannot be read (503), nothing pretends it was found', async () => {
    const g2 = await startGateway({ ...clientsConfig(), redisUrl: 'redis://127.0.0.1:9/0' });
    try {
        const c = new OpenAI({ baseURL: g2.base, apiKey: KEY, maxRetries: 0 });
        const made = await c.responses.create({ model: MINI, input: 'Say hello.' });
        assert.equal(made.status, 'completed', 'served without Redis');
        await assert.rejects(c.responses.retrieve(made.id), (e) => e.status === 503 && /Redis/.test(e.message));
        await assert.rejects(c.responses.delete(made.id), (e) => e.status === 503);
        await assert.rejects(c.responses.create({ model: MINI, input: 'hi', previous_response_id: made.id }), (e) => e.status === 503);
    } finally {
        await g2.stop();
    }
});
