// errors.test.mjs — bad input and misbehaving providers: each gets the right
// status and an error a person can act on, in the shape of the API called
// (Anthropic's on /v1/messages, OpenAI's elsewhere), streams that break
// end with an error event (never a clean [DONE]), and the gateway keeps serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startGateway, KEY, post, chatBody, readAllText, sseParse, rawConnect, rawRequest, parseResponses } from './harness.mjs';

let gw, client;
before(async () => {
    gw = await startGateway({ limits: { idle_ms: 1500 } });
    client = new OpenAI({ baseURL: gw.base, apiKey: KEY, maxRetries: 0 });
});
after(async () => {
    await gw?.stop();
});

function assertOpenAIError(r, status, re) {
    assert.equal(r.status, status, `status ${r.status}: ${r.text}`);
    assert.ok(r.json && r.json.error, `OpenAI error shape: ${r.text}`);
    assert.equal(typeof r.json.error.message, 'string');
    assert.equal(typeof r.json.error.type, 'string');
    assert.ok('code' in r.json.error, 'error.code present');
    if (re) assert.match(r.json.error.message, re);
}

async function stillServes() {
    const data = await client.chat.completions.create({ model: 'deepseek/deepseek-flash', messages: [{ role: 'user', content: 'ok?' }] });
    assert.equal(data.object, 'chat.completion');
}

test('malformed JSON: 400', async () => {
    for (const body of ['{"model":', 'not json', '{"model":"deepseek","messages":[]]}', '', '[1,2]', '{"a":1} {"b":2}']) {
        assertOpenAIError(await post(gw, body), 400);
    }
    await stillServes();
});

test('wrong types: 400 naming the field', async () => {
    assertOpenAIError(await post(gw, chatBody('deepseek/deepseek-flash', { stream: 'yes' })), 400, /stream/);
    assertOpenAIError(await post(gw, JSON.stringify({ model: 5, messages: [{ role: 'user', content: 'hi' }] })), 400, /model/);
    assertOpenAIError(await post(gw, JSON.stringify({ model: 'deepseek', messages: 'hi' })), 400, /messages/);
    assertOpenAIError(await post(gw, chatBody('deepseek', { max_tokens: -3 })), 400, /max_tokens/);
    assertOpenAIError(await post(gw, JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] })), 400, /model/);
    await stillServes();
});

test('JSON nested deeper than the limit: 400, no crash', async () => {
    const deep = '{"model":"deepseek","messages":[{"role":"user","content":"hi"}],"x":' + '['.repeat(5000) + ']'.repeat(5000) + '}';
    assertOpenAIError(await post(gw, deep), 400);
    await stillServes();
});

test('unknown model: 404 through the SDK', async () => {
    await assert.rejects(
        client.chat.completions.create({ model: 'nope/never', messages: [{ role: 'user', content: 'hi' }] }),
        (e) => e.status === 404 && /nope\/never/.test(e.message),
    );
    assertOpenAIError(await post(gw, chatBody('no-such-alias')), 404);
    await stillServes();
});

test('unknown path: 404', async () => {
    assertOpenAIError(await post(gw, chatBody('deepseek'), {}, '/v1/nothing-here'), 404);
    const r = await fetch(gw.url + '/definitely/not/here');
    assert.equal(r.status, 404);
    await r.arrayBuffer();
});

test('10 MB body: 413', async () => {
    const big = chatBody('deepseek', { pad: 'x'.repeat(10 * 1024 * 1024) });
    let status;
    try {
        status = (await post(gw, big)).status;
    } catch (e) {
        // The gateway may answer 413 and close before the whole body is sent;
        // fall back to a raw socket that reads the answer without finishing the upload.
        status = null;
    }
    if (status === null) {
        const s = await rawConnect(gw.port);
        s.write(rawRequest('POST', '/v1/chat/completions', { headers: { 'content-length': big.length } }));
        s.write(big.slice(0, 65536));
        await s.waitFor((b) => parseResponses(b).length > 0);
        status = parseResponses(s.buf)[0].status;
        s.destroy();
    }
    assert.equal(status, 413);
    await stillServes();
});

test('413 is decided from Content-Length, before the body is read', async () => {
    const s = await rawConnect(gw.port);
    s.write(rawRequest('POST', '/v1/chat/completions', { headers: { 'content-length': 10 * 1024 * 1024 } }));
    await s.waitFor((b) => parseResponses(b).length > 0);
    const [res] = parseResponses(s.buf);
    assert.equal(res.status, 413);
    assert.ok(JSON.parse(res.text).error);
    s.destroy();
});

// What the HTTP server answers by itself comes in the dialect of the path:
// an Anthropic SDK on /v1/messages must be able to read it.
async function ownAnswer(path, headers) {
    const s = await rawConnect(gw.port);
    s.write(rawRequest('POST', path, { headers }));
    await s.waitFor((b) => parseResponses(b).length > 0 || s.gone);
    const [res] = parseResponses(s.buf);
    s.destroy();
    assert.ok(res, `an answer on ${path}`);
    return { status: res.status, type: res.headers['content-type'], body: JSON.parse(res.text) };
}

test('oversized body on /v1/messages: Anthropic-shaped 413', async () => {
    const r = await ownAnswer('/v1/messages?beta=true', { 'content-length': 10 * 1024 * 1024, 'x-api-key': KEY });
    assert.equal(r.status, 413);
    assert.equal(r.type, 'application/json');
    assert.equal(r.body.type, 'error');
    assert.equal(r.body.error.type, 'request_too_large');
    assert.match(r.body.error.message, /larger than this server accepts/);
});

test('oversized body on /v1/chat/completions and /v1/responses: OpenAI-shaped 413', async () => {
    for (const path of ['/v1/chat/completions', '/v1/responses']) {
        const r = await ownAnswer(path, { 'content-length': 10 * 1024 * 1024 });
        assert.equal(r.status, 413, path);
        assert.equal(r.body.type, undefined, path);
        assert.equal(r.body.error.type, 'invalid_request_error', path);
        assert.equal(r.body.error.code, 'request_too_large', path);
        assert.match(r.body.error.message, /larger than this server accepts/, path);
    }
});

test('headers too large on /v1/messages: Anthropic-shaped 431', async () => {
    const r = await ownAnswer('/v1/messages', { 'x-filler': 'a'.repeat(64 * 1024) });
    assert.equal(r.status, 431);
    assert.deepEqual(Object.keys(r.body).sort(), ['error', 'type']);
    assert.equal(r.body.error.type, 'invalid_request_error');
    assert.match(r.body.error.message, /headers are too large/);
});

test('a chunked body past the limit: 413', async () => {
    const s = await rawConnect(gw.port);
    s.write(rawRequest('POST', '/v1/chat/completions', { headers: { 'transfer-encoding': 'chunked' } }));
    const chunk = 'x'.repeat(256 * 1024);
    for (let i = 0; i < 8 && !s.gone && parseResponses(s.buf).length === 0; i++) {
        s.write(chunk.length.toString(16) + '\r\n' + chunk + '\r\n');
        await new Promise((r) => setTimeout(r, 20));
    }
    await s.waitFor((b) => parseResponses(b).length > 0);
    assert.equal(parseResponses(s.buf)[0].status, 413);
    s.destroy();
    await stillServes();
});

test('upstream 500 on every attempt: 502 listing the attempt', async () => {
    const r = await post(gw, chatBody('deepseek/deepseek-flash'), { 'x-sim-status': '500' });
    assertOpenAIError(r, 502, /deepseek/);
    assert.match(r.json.error.message, /500/);
    assert.equal(r.headers.get('x-tollgate-attempts'), '1');
    assert.equal(r.headers.get('x-tollgate-route'), 'direct');
    assert.match(r.headers.get('x-tollgate-request-id') ?? '', /^[0-9a-f]{16}$/);
    await stillServes();
});

test('upstream 400 is passed through as 400', async () => {
    const r = await post(gw, chatBody('deepseek/deepseek-flash'), { 'x-sim-status': '400' });
    assertOpenAIError(r, 400);
    await stillServes();
});

async function brokenStream(headers) {
    const r = await fetch(gw.url + '/v1/chat/completions', {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
        body: chatBody('deepseek/deepseek-flash', { stream: true, max_tokens: 50 }),
    });
    assert.equal(r.status, 200, 'the stream had started before it broke');
    return sseParse(await readAllText(r));
}

function assertErrorEnd({ data }) {
    assert.ok(data.length >= 2, 'some chunks were relayed before the break');
    assert.ok(!data.includes('[DONE]'), 'no [DONE] after a broken upstream');
    const last = JSON.parse(data.at(-1));
    assert.equal(last.error?.type, 'upstream_error');
    assert.equal(typeof last.error.message, 'string');
    assert.ok('code' in last.error);
}

test('upstream reset mid-stream: error event, no [DONE]', async () => {
    assertErrorEnd(await brokenStream({ 'x-sim-reset-after': '3' }));
    await stillServes();
});

test('upstream stall mid-stream: error event after the idle timeout', async () => {
    assertErrorEnd(await brokenStream({ 'x-sim-stall-after': '3' }));
    await stillServes();
});

test('the SDK sees a broken stream as an error, not a clean end', async () => {
    const stream = await client.chat.completions.create(
        { model: 'deepseek/deepseek-flash', messages: [{ role: 'user', content: 'hi' }], stream: true, max_tokens: 50 },
        { headers: { 'x-sim-reset-after': '3' } },
    );
    await assert.rejects(async () => {
        for await (const _ of stream);
    });
    await stillServes();
});

test('missing auth: 401 in OpenAI shape', async () => {
    const r = await fetch(gw.url + '/v1/chat/completions', { method: 'POST', body: chatBody('deepseek') });
    assert.equal(r.status, 401);
    assert.ok((await r.json()).error);
    await stillServes();
});
