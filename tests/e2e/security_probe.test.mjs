// security_probe.test.mjs — one test per item of the second security probe
// (docs/operations.md, "What the gateway refuses and why"): admin requests
// are refused on their headers, so 25 connections sending 4 MiB bodies
// without the token cost no body memory; body and header timeouts are
// deadlines, and a body below the minimum rate is cut; a GET with a body,
// bare LF line endings and bytes after chunk data that are not CRLF are 400s
// that close the connection; an upstream failure names the provider and the
// class of failure, never the address; a provider error that echoes its key
// is masked in every spelling, even across the 512-byte cut; `tollgate check`
// never prints a password written in a URL; an admin 400 quoting its query
// is valid JSON. Timings are asserted loosely (seconds), never tightly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
    BIN, ADMIN_TOKEN, VENDOR_SECRET, startGateway, chatBody, post, rawConnect, rawRequest, parseResponses, rssKb,
    freePort, until,
} from './harness.mjs';

let gw, spy, deadPort;
let spyMode = 'exact';

// A provider with a key that echoes it back in its errors, spelt as spyMode says.
function echoMessage(key) {
    switch (spyMode) {
    case 'exact':
        return `Incorrect API key provided: ${key}`;
    case 'prefix': // a provider that shows the first part only
        return `Incorrect API key provided: ${key.slice(0, 20)}...`;
    case 'straddle': // the key across the 512th byte of the message
        return 'x'.repeat(512 - 10) + ` ${key} rest`;
    default:
        return `Incorrect API key provided: ${key}`;
    }
}

function startSpy() {
    return new Promise((resolve) => {
        const s = http.createServer((req, res) => {
            req.resume();
            req.on('end', () => {
                const key = (req.headers.authorization || '').replace(/^Bearer /, '');
                const status = spyMode === 'retryable' ? 401 : 400;
                let body = JSON.stringify({ error: { message: echoMessage(key), type: 'invalid_request_error' } });
                if (spyMode === 'uescaped') {
                    // Every character of the key \u-escaped: JSON.parse gives the key back.
                    const esc = [...key].map((ch) => '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0')).join('');
                    body = `{"error":{"message":"Incorrect API key provided: ${esc}","type":"invalid_request_error"}}`;
                }
                res.writeHead(status, { 'content-type': 'application/json' });
                res.end(body);
            });
        });
        s.listen(0, '127.0.0.1', () => resolve(s));
    });
}

before(async () => {
    spy = await startSpy();
    deadPort = await freePort(); // nothing listens there
    gw = await startGateway({
        limits: { max_body_bytes: 4 * 1024 * 1024 },
        extraProviders: [
            `  spy: { dialect: openai, base_url: http://127.0.0.1:${spy.address().port}/v1, api_key_env: TG_E2E_VENDOR_KEY, region: eu }`,
            `  dead: { dialect: openai, base_url: http://127.0.0.1:${deadPort}/v1, api_key_env: TG_E2E_VENDOR_KEY, region: eu }`,
        ].join('\n'),
        extraPrices: {
            'spy/spy-1': { input: 1, cached_input: 1, output: 1 },
            'dead/dead-1': { input: 1, cached_input: 1, output: 1 },
        },
    });
});
after(async () => {
    await gw?.stop();
    spy?.close();
});

/** Sends raw bytes on a new connection; resolves with the first response and whether the server closed. */
async function rawOnce(bytes, port = gw.port) {
    const s = await rawConnect(port);
    s.write(bytes);
    await s.waitFor((b) => parseResponses(b).length > 0, 15000);
    const res = parseResponses(s.buf)[0];
    const closed = await s.waitFor(() => false, 5000).then(() => s.gone, () => false);
    s.destroy();
    return { ...res, closed };
}

/** Whether any run of 8 characters of `secret` appears in `text`. */
function leaks(text, secret = VENDOR_SECRET) {
    for (let i = 0; i + 8 <= secret.length; i++) if (text.includes(secret.slice(i, i + 8))) return secret.slice(i, i + 8);
    return null;
}

test('25 connections sending 4 MiB bodies to admin paths without the token: 401 from the headers, RSS bounded', async (t) => {
    const body = Buffer.alloc(4 * 1024 * 1024, 'a');
    const rss0 = rssKb(gw.gw.pid);
    const socks = [];
    for (let i = 0; i < 25; i++) {
        const s = await rawConnect(gw.port);
        const p = i % 2 ? '/dashboard' : '/admin/spend';
        s.write(`GET ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`);
        s.write(body);
        socks.push(s);
    }
    for (const s of socks) await s.waitFor((b) => parseResponses(b).length > 0, 15000);
    const peak = rssKb(gw.gw.pid);
    for (const s of socks) {
        const r = parseResponses(s.buf)[0];
        assert.equal(r.status, 401, r.text);
        assert.equal(r.headers.connection, 'close', 'a body follows: the connection is closed, not read');
        s.destroy();
    }
    t.diagnostic(`RSS ${rss0} kB -> ${peak} kB with 25 x 4 MiB admin bodies`);
    // Buffered, they would add 100 MB; refused on the headers, nothing like it.
    assert.ok(peak - rss0 < 20 * 1024, `RSS grew by ${peak - rss0} kB`);
    // POST to an admin path: 405 from the headers, connection closed.
    const r = await rawOnce(`POST /admin/spend HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n` + 'a'.repeat(1000));
    assert.equal(r.status, 405);
    assert.ok(r.closed, 'the connection closed rather than read the body');
    // With the token, a body on the GET is refused all the same.
    const g = await rawOnce(`GET /admin/spend HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nContent-Length: 5\r\n\r\nhello`);
    assert.equal(g.status, 400, g.text);
});

test('a 1 byte/s body is cut at body_timeout_ms (a deadline), and below the minimum rate before it', async (t) => {
    // body_timeout_ms 3000 is inside the 5 s grace: the deadline cuts.
    const g2 = await startGateway({ limits: { body_timeout_ms: 3000 } });
    try {
        const slow = async (port, headBytes) => {
            const s = await rawConnect(port);
            const t0 = Date.now();
            s.write(rawRequest('POST', '/v1/chat/completions', { headers: { 'content-length': 1000 } }));
            s.write(headBytes);
            const timer = setInterval(() => s.gone || s.write('x'), 1000);
            try {
                await s.waitFor((b) => parseResponses(b).length > 0, 40000);
            } finally {
                clearInterval(timer);
            }
            const res = parseResponses(s.buf)[0];
            s.destroy();
            return { res, secs: (Date.now() - t0) / 1000 };
        };
        const [a, b] = await Promise.all([slow(g2.port, '{'), slow(gw.port, '{')]);
        t.diagnostic(`deadline: 408 after ${a.secs} s; rate: 408 after ${b.secs} s`);
        assert.equal(a.res.status, 408, a.res.text);
        assert.match(a.res.text, /did not arrive in time/);
        assert.ok(a.secs >= 2 && a.secs < 8, `cut after ${a.secs} s (body_timeout_ms 3000)`);
        // body_timeout_ms 30000 here: the minimum rate (1024 B/s after 5 s) cuts first.
        assert.equal(b.res.status, 408, b.res.text);
        assert.match(b.res.text, /too slowly/);
        assert.ok(b.secs >= 4 && b.secs < 15, `cut after ${b.secs} s, well before the 30 s deadline`);
    } finally {
        await g2.stop();
    }
});

test('a GET or HEAD with a body is refused with 400 and the connection closed', async () => {
    for (const req of [
        'GET /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
        'GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    ]) {
        const r = await rawOnce(req);
        assert.equal(r.status, 400, req);
        assert.ok(r.closed, `the connection closed: ${req.split('\r\n')[0]}`);
    }
    // HEAD: the answer has no body whatever its Content-Length says.
    const s = await rawConnect(gw.port);
    s.write('HEAD /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc');
    await s.waitFor(() => false, 5000).catch(() => {});
    assert.match(s.buf.toString('latin1'), /^HTTP\/1\.1 400 /);
    assert.ok(s.gone, 'the connection closed');
    s.destroy();
    // Content-Length: 0 is no body.
    const ok = await rawOnce('GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    assert.equal(ok.status, 200);
});

test('an upstream connect failure names the provider and the class, never the address', async () => {
    const r = await post(gw, chatBody('dead/dead-1'));
    assert.ok([502, 503].includes(r.status), r.text);
    assert.match(r.text, /dead\/dead-1: connection failed \(connection refused\)/);
    assert.ok(!r.text.includes('127.0.0.1'), r.text);
    assert.ok(!r.text.includes(String(deadPort)), r.text);
    // The address is in the server's own log, for its operator.
    assert.ok(await until(() => gw.gw.log().includes(`127.0.0.1:${deadPort}`), 5000), 'the log names the address');
});

test('a provider error that echoes its key is masked: exact, \\u-escaped, a prefix, across the 512-byte cut', async () => {
    try {
        for (const mode of ['exact', 'uescaped', 'prefix', 'straddle', 'retryable']) {
            spyMode = mode;
            const r = await post(gw, chatBody('spy/spy-1'));
            assert.ok(r.status >= 400, `${mode}: ${r.status}`);
            assert.ok(r.json, `${mode}: JSON answer`);
            const msg = r.json.error.message;
            assert.match(msg, mode === 'retryable' ? /spy\/spy-1: HTTP 401/ : /spy\/spy-1 rejected the request/);
            assert.equal(leaks(r.text), null, `${mode}: part of the key in the raw answer: ${leaks(r.text)}`);
            assert.equal(leaks(msg), null, `${mode}: part of the key in the decoded message: ${leaks(msg)}`);
            // Escapes a lenient decoder left behind ("u0073u006b...") must not spell it either.
            const unescaped = msg.replace(/\\?u([0-9a-fA-F]{4})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
            assert.equal(leaks(unescaped), null, `${mode}: the key once escapes are read: ${leaks(unescaped)}`);
            if (mode === 'exact' || mode === 'uescaped') assert.match(msg, /Incorrect API key provided: \*{8,}/);
            if (mode === 'straddle') assert.match(msg, /x \*+/, 'the masked run is where the key was, cut at 512');
        }
    } finally {
        spyMode = 'exact';
    }
    assert.equal(leaks(gw.gw.log()), null, 'no part of the key in the gateway log');
});

test('`tollgate check` never prints a password written in a URL', async () => {
    const bad = path.join(gw.dir, 'secret.yaml');
    writeFileSync(bad, [
        'listen: 127.0.0.1:1',
        'redis: "http://:redis-pw-secret@localhost:6379"',
        'providers:',
        '  p1: { dialect: openai, base_url: "ftp://admin:hunter2-secret-pw@example.com/v1" }',
        '  p2: { dialect: openai, base_url: "gopher://sk-token-secret@example.com" }',
        '',
    ].join('\n'));
    const r = await promisify(execFile)(BIN, ['check', '-c', bad]).then(() => ({ code: 0, stdout: '', stderr: '' }), (e) => e);
    const out = r.stdout + r.stderr;
    assert.equal(r.code, 1, out);
    assert.match(out, /secret\.yaml:4:\d+: base_url 'ftp:\/\/admin:\*\*\*@example\.com\/v1'/);
    assert.match(out, /'http:\/\/:\*\*\*@localhost:6379'/);
    assert.match(out, /'gopher:\/\/\*\*\*@example\.com'/);
    for (const s of ['hunter2', 'redis-pw-secret', 'sk-token-secret']) assert.ok(!out.includes(s), `${s} printed: ${out}`);
});

test('an admin 400 that quotes its query (a quote, a control byte) is valid JSON', async () => {
    for (const q of ['from=2026-01-01%22%7D%2C%22x', 'from=%01%0a%5c', 'by=%22%00']) {
        const r = await fetch(`${gw.url}/admin/spend?${q}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
        const text = await r.text();
        assert.equal(r.status, 400, text);
        const j = JSON.parse(text); // throws on broken JSON
        assert.equal(j.error.code, 'invalid_range');
        assert.deepEqual(Object.keys(j.error).sort(), ['code', 'message', 'type']);
    }
});

test('bytes after chunk data must be CRLF: garbage there is a 400 and the connection closes', async () => {
    const head = rawRequest('POST', '/v1/chat/completions', { headers: { 'transfer-encoding': 'chunked' } });
    const body = chatBody('deepseek/deepseek-flash');
    const hex = Buffer.byteLength(body).toString(16);
    for (const framing of [
        `${hex}\r\n${body}XX0\r\n\r\n`, // any two bytes passed as CRLF in Debian's non-strict build
        `${hex};ext\rX${body}\r\n0\r\n\r\n`, // a size line ended by CR and any byte
        `${hex}\r\n${body}\n0\r\n\r\n`, // a bare LF
    ]) {
        const r = await rawOnce(head + framing);
        assert.equal(r.status, 400, `${JSON.stringify(framing.slice(0, 12))}: ${r.text}`);
        assert.ok(r.closed);
    }
    const ok = await rawOnce(head.replace('\r\n\r\n', '\r\nconnection: close\r\n\r\n') + `${hex};a=b\r\n${body}\r\n0\r\n\r\n`);
    assert.equal(ok.status, 200, ok.text);
});

test('bare LF line endings in the request line or headers are a 400 and the connection closes', async () => {
    for (const req of [
        'GET /healthz HTTP/1.1\nHost: x\n\n',
        'GET /healthz HTTP/1.1\r\nHost: x\n\r\n',
        'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rX-B: b\r\n\r\n',
    ]) {
        const r = await rawOnce(req);
        assert.equal(r.status, 400, JSON.stringify(req));
        assert.ok(r.closed);
    }
    await sleep(10);
    const ok = await rawOnce('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(ok.status, 200);
});
