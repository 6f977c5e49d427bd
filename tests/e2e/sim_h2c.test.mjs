// sim_h2c.test.mjs — the simulator's h2c listener (`tollgate simulate
// --h2c-port`, sim/h2.c): streamed and whole answers over HTTP/2 in clear
// text with prior knowledge, many streams multiplexed on one connection,
// each answered exactly as over HTTP/1.1 (the same counts in /_sim/stats),
// a stream the client resets counted as cancelled, and the connection
// closing with streams open.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';

import { BIN, freePort, until, sseParse } from './harness.mjs';

const dir = mkdtempSync(path.join(tmpdir(), 'tg-sim-h2c-'));
const port = await freePort(), h2port = await freePort();
const sim = spawn(BIN, ['simulate', '--port', String(port), '--h2c-port', String(h2port)], { cwd: dir, stdio: 'ignore' });
after(() => sim.kill('SIGTERM'));
const stats = async () => (await fetch(`http://127.0.0.1:${port}/_sim/stats`)).json();
await until(async () => (await stats()).requests === 0, 10000);

/** One request on session s: { status, headers, body }; `cancelAfter` resets the stream after that many bytes. */
function request(s, { path: p = '/deepseek/v1/chat/completions', headers = {}, body, cancelAfter } = {}) {
    return new Promise((resolve, reject) => {
        const st = s.request({ ':method': body ? 'POST' : 'GET', ':path': p, authorization: 'Bearer sim',
            'content-type': 'application/json', ...headers });
        let status = 0, hdrs = {}, text = '';
        st.on('response', (h) => { status = h[':status']; hdrs = h; });
        st.setEncoding('utf8');
        st.on('data', (d) => {
            text += d;
            if (cancelAfter && text.length >= cancelAfter) st.close(http2.constants.NGHTTP2_CANCEL);
        });
        st.on('close', () => resolve({ status, headers: hdrs, body: text }));
        st.on('error', (e) => (cancelAfter ? resolve({ status, body: text }) : reject(e)));
        if (body) st.end(JSON.stringify(body));
        else st.end();
    });
}

const chat = (extra = {}) => ({ model: 'deepseek-chat', messages: [{ role: 'user', content: 'hello there' }], ...extra });

test('50 streams multiplexed on one h2c connection, each complete and counted as over HTTP/1.1', async () => {
    const before = await stats();
    const s = http2.connect(`http://127.0.0.1:${h2port}`);
    const rs = await Promise.all(Array.from({ length: 50 }, () => request(s, {
        headers: { 'x-sim-output-tokens': '20', 'x-sim-tps': '200' },
        body: chat({ stream: true, stream_options: { include_usage: true } }),
    })));
    s.close();
    for (const r of rs) {
        assert.equal(r.status, 200);
        assert.match(r.headers['content-type'], /text\/event-stream/);
        const { data } = sseParse(r.body);
        assert.equal(data.at(-1), '[DONE]');
        const usage = JSON.parse(data.at(-2)).usage;
        assert.equal(usage.completion_tokens, 20);
    }
    const after1 = await stats();
    assert.equal(after1.completed - before.completed, 50);
    assert.equal(after1.completion_tokens - before.completion_tokens, 50 * 20);
    assert.equal(after1.streams_open, 0);
});

test('whole answers, an error status and the control endpoints over h2c', async () => {
    const s = http2.connect(`http://127.0.0.1:${h2port}`);
    const ok = await request(s, { body: chat({ max_tokens: 5 }) });
    assert.equal(ok.status, 200);
    assert.equal(JSON.parse(ok.body).usage.completion_tokens, 5);
    const e = await request(s, { headers: { 'x-sim-status': '429' }, body: chat() });
    assert.equal(e.status, 429);
    assert.ok(e.headers['retry-after']);
    const st = await request(s, { path: '/_sim/stats' });
    assert.equal(st.status, 200);
    assert.ok(JSON.parse(st.body).requests > 0);
    s.close();
});

test('a stream the client resets is cancelled; a connection that closes ends its streams', async () => {
    const before = await stats();
    const s = http2.connect(`http://127.0.0.1:${h2port}`);
    await request(s, { headers: { 'x-sim-output-tokens': '1000', 'x-sim-tps': '100' }, body: chat({ stream: true }), cancelAfter: 500 });
    const open = request(s, { headers: { 'x-sim-output-tokens': '1000', 'x-sim-tps': '100' }, body: chat({ stream: true }), cancelAfter: 1e9 });
    await until(async () => (await stats()).streams_open === 1, 5000);
    s.destroy();
    await open;
    const end = await until(async () => { const x = await stats(); return x.cancelled - before.cancelled === 2 && x.streams_open === 0 && x; }, 5000);
    assert.ok(end, 'both streams counted as cancelled');
});
