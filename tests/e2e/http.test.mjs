// http.test.mjs — the HTTP/1.1 server as a raw client sees it: keep-alive,
// pipelining answered in order, chunked request bodies, Expect: 100-continue,
// header limits.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, chatBody, rawConnect, rawRequest, parseResponses } from './harness.mjs';

let gw;
before(async () => {
    gw = await startGateway();
});
after(async () => {
    await gw?.stop();
});

const post = (model, headers = {}) => rawRequest('POST', '/v1/chat/completions', { headers, body: chatBody(model) });

test('keep-alive: several requests on one connection', async () => {
    const s = await rawConnect(gw.port);
    for (let i = 1; i <= 3; i++) {
        s.write(post('deepseek/deepseek-flash'));
        await s.waitFor((b) => parseResponses(b).length >= i);
    }
    const rs = parseResponses(s.buf);
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 200]);
    assert.ok(!s.gone);
    s.destroy();
});

test('two pipelined requests are answered in order', async () => {
    const s = await rawConnect(gw.port);
    // The first is slower upstream, so an out-of-order server would answer the second first.
    s.write(post('deepseek/deepseek-flash', { 'x-sim-ttft-ms': '300' }) + post('openai/gpt-4o-mini') +
        rawRequest('GET', '/healthz'));
    await s.waitFor((b) => parseResponses(b).length >= 3);
    const [a, b, c] = parseResponses(s.buf);
    assert.equal(a.status, 200);
    assert.equal(a.headers['x-tollgate-provider'], 'deepseek');
    assert.equal(JSON.parse(a.text).object, 'chat.completion');
    assert.equal(b.status, 200);
    assert.equal(b.headers['x-tollgate-provider'], 'openai');
    assert.equal(c.status, 200);
    s.destroy();
});

test('a chunked request body', async () => {
    const body = chatBody('deepseek/deepseek-flash');
    const s = await rawConnect(gw.port);
    s.write(rawRequest('POST', '/v1/chat/completions', { headers: { 'transfer-encoding': 'chunked', 'content-type': 'application/json' } }));
    // Split at odd places, across several writes, with a chunk extension for good measure.
    const parts = [body.slice(0, 7), body.slice(7, 30), body.slice(30)];
    for (const [i, p] of parts.entries()) {
        s.write(p.length.toString(16) + (i === 1 ? ';ext=1' : '') + '\r\n' + p + '\r\n');
        await new Promise((r) => setTimeout(r, 10));
    }
    s.write('0\r\n\r\n');
    await s.waitFor((b) => parseResponses(b).length >= 1);
    const [r] = parseResponses(s.buf);
    assert.equal(r.status, 200, r.text);
    assert.equal(JSON.parse(r.text).object, 'chat.completion');
    s.destroy();
});

test('Expect: 100-continue gets 100 before the body is sent', async () => {
    const body = chatBody('deepseek/deepseek-flash');
    const s = await rawConnect(gw.port);
    s.write(rawRequest('POST', '/v1/chat/completions', { headers: { expect: '100-continue', 'content-length': Buffer.byteLength(body) } }));
    await s.waitFor((b) => b.toString('latin1').includes('\r\n\r\n'));
    assert.match(s.buf.toString('latin1'), /^HTTP\/1\.1 100 /);
    s.write(body);
    await s.waitFor((b) => parseResponses(b).filter((r) => r.status !== 100).length >= 1);
    const final = parseResponses(s.buf).filter((r) => r.status !== 100);
    assert.equal(final[0].status, 200);
    s.destroy();
});

test('Expect: 100-continue with a body too large: 413 instead of 100', async () => {
    const s = await rawConnect(gw.port);
    s.write(rawRequest('POST', '/v1/chat/completions', { headers: { expect: '100-continue', 'content-length': 50 * 1024 * 1024 } }));
    await s.waitFor((b) => parseResponses(b).length >= 1);
    assert.equal(parseResponses(s.buf)[0].status, 413);
    s.destroy();
});

test('headers too large: 431', async () => {
    const s = await rawConnect(gw.port);
    s.write(rawRequest('GET', '/healthz', { headers: { 'x-filler': 'a'.repeat(64 * 1024) } }));
    await s.waitFor((b) => parseResponses(b).length >= 1 || s.gone);
    const rs = parseResponses(s.buf);
    assert.equal(rs[0]?.status, 431);
    s.destroy();
});

test('too many headers: 431', async () => {
    const s = await rawConnect(gw.port);
    const headers = {};
    for (let i = 0; i < 300; i++) headers[`x-h${i}`] = 'v';
    s.write(rawRequest('GET', '/healthz', { headers }));
    await s.waitFor((b) => parseResponses(b).length >= 1 || s.gone);
    assert.equal(parseResponses(s.buf)[0]?.status, 431);
    s.destroy();
});

test('garbage instead of HTTP: 400, and the server keeps serving', async () => {
    const s = await rawConnect(gw.port);
    s.write('\x16\x03\x01 this is not http\r\n\r\n');
    await s.waitFor((b) => parseResponses(b).length >= 1 || s.gone);
    const rs = parseResponses(s.buf);
    if (rs.length) assert.equal(rs[0].status, 400);
    s.destroy();
    const r = await fetch(gw.url + '/healthz');
    assert.equal(r.status, 200);
});

test('Connection: close is honoured', async () => {
    const s = await rawConnect(gw.port);
    s.write(rawRequest('GET', '/healthz', { headers: { connection: 'close' } }));
    await s.waitFor(() => s.gone);
    assert.equal(parseResponses(s.buf)[0].status, 200);
});
