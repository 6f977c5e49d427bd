// security.test.mjs — what must never happen whatever a client sends: a
// provider key in a log or a response, an admin endpoint answering without
// the token, the gateway calling a URL the client chose or carrying a header
// the client smuggled in. A spy provider (a node HTTP server with a key)
// records every call the gateway makes. Key comparison is constant time by
// construction: tg_config_key (config.c) hashes the presented secret and runs
// CRYPTO_memcmp over every configured key without an early exit, and the
// admin token is hashed then CRYPTO_memcmp'd (admin.c token_ok); see
// tests/unit/test_config.c for the lookup's unit tests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
    startGateway, KEY, LEDGER_KEY, ADMIN_TOKEN, VENDOR_SECRET, chatBody, post, rawConnect, rawRequest, parseResponses,
} from './harness.mjs';

let gw, spy;
const calls = []; // { method, url, headers } of every request the spy received
let spyMode = 'ok';

function startSpy() {
    return new Promise((resolve) => {
        const s = http.createServer((req, res) => {
            let body = '';
            req.on('data', (d) => (body += d));
            req.on('end', () => {
                calls.push({ method: req.method, url: req.url, headers: req.headers, body });
                if (spyMode === 'echo-key') {
                    // A provider that echoes the credential it was given in its error.
                    res.writeHead(401, { 'content-type': 'application/json', 'x-echo': req.headers.authorization || '' });
                    res.end(JSON.stringify({ error: { message: `Incorrect API key provided: ${req.headers.authorization}`, type: 'invalid_request_error' } }));
                    return;
                }
                res.writeHead(200, { 'content-type': 'application/json' });
                res.end(JSON.stringify({
                    id: 'chatcmpl-spy', object: 'chat.completion', created: 1, model: 'spy-1',
                    choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
                    usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
                }));
            });
        });
        s.listen(0, '127.0.0.1', () => resolve(s));
    });
}

before(async () => {
    spy = await startSpy();
    gw = await startGateway({
        extraProviders: `  spy: { dialect: openai, base_url: http://127.0.0.1:${spy.address().port}/v1, api_key_env: TG_E2E_VENDOR_KEY, region: eu }`,
        extraPrices: { 'spy/spy-1': { input: 1, cached_input: 1, output: 1 } },
    });
});
after(async () => {
    await gw?.stop();
    spy?.close();
});

const responses = []; // every status line, header block and body the gateway sent us
async function send(body, headers = {}, pathName) {
    const r = await post(gw, body, headers, pathName);
    responses.push(JSON.stringify([...r.headers]) + r.text);
    return r;
}

test('the spy provider is called with its key, and only with its key', async () => {
    const before = calls.length;
    const r = await send(chatBody('spy/spy-1'));
    assert.equal(r.status, 200, r.text);
    const c = calls.slice(before);
    assert.equal(c.length, 1);
    assert.equal(c[0].url, '/v1/chat/completions');
    assert.equal(c[0].headers.authorization, `Bearer ${VENDOR_SECRET}`);
    assert.ok(!JSON.stringify(c[0]).includes(KEY), "the client's gateway key is not forwarded to the provider");
});

test('a client cannot choose the URL the gateway calls', async () => {
    const before = calls.length;
    const models = [
        'spy/../../x', 'spy/../admin', 'spy/http://evil.example/x', 'http://evil.example/v1', '../../x',
        'spy/spy-1?x=1', 'spy/spy-1#frag', 'spy%2F..%2Fx', 'spy/a/b/c', 'sp/y/spy-1', '/spy/spy-1', 'spy//spy-1',
        'spy/spy-1 HTTP/1.1\r\nHost: evil', 'spy/spy-1\r\nX-Injected: 1', 'spy/spy-1\nX-Injected: 1', 'spy/\u0000x',
    ];
    for (const model of models) {
        const r = await send(chatBody(model));
        assert.ok(r.status < 500, `${JSON.stringify(model)}: ${r.status} ${r.text.slice(0, 200)}`);
        assert.equal(r.headers.get('x-injected'), null, `${JSON.stringify(model)} injected a response header`);
    }
    // Client headers that might steer a proxy.
    await send(chatBody('spy/spy-1'), {
        host: 'evil.example', 'x-forwarded-host': 'evil.example', 'x-original-url': '/x', 'x-rewrite-url': '/x',
        'x-http-method-override': 'DELETE',
    });
    const c = calls.slice(before);
    assert.ok(c.length >= 1, 'some calls reached the spy');
    for (const call of c) {
        assert.equal(call.method, 'POST');
        assert.equal(call.url, '/v1/chat/completions', `the gateway called ${call.url}`);
        assert.equal(call.headers['x-injected'], undefined, 'a header was smuggled to the provider');
        assert.equal(call.headers.authorization, `Bearer ${VENDOR_SECRET}`);
        assert.ok(!String(call.headers.host).includes('evil'), `Host ${call.headers.host} reached the provider`);
    }
});

test('a header injected through the raw request line or header values stays out of the upstream call', async () => {
    const before = calls.length;
    const s = await rawConnect(gw.port);
    s.write(rawRequest('POST', '/v1/chat/completions?x=%0d%0aX-Injected:%201', {
        headers: { 'x-sim-id': 'a\tb' }, body: chatBody('spy/spy-1'),
    }));
    await s.waitFor((b) => parseResponses(b).length > 0);
    s.destroy();
    const res = parseResponses(s.buf)[0];
    assert.ok(res.status < 500);
    responses.push(s.buf.toString('latin1'));
    for (const call of calls.slice(before)) {
        assert.equal(call.url, '/v1/chat/completions');
        assert.equal(call.headers['x-injected'], undefined);
    }
});

// A provider that echoes the credential in an error (a proxy or a local server may echo it
// whole) must not hand the provider key to the client: request.c masks it in provider texts.
test('a provider that echoes its key in an error does not leak it to the client', async () => {
    spyMode = 'echo-key';
    try {
        const r = await post(gw, chatBody('spy/spy-1'));
        assert.ok(r.status >= 400, `status ${r.status}`);
        assert.ok(!r.text.includes(VENDOR_SECRET), `the provider key reached the client: ${r.text.slice(0, 300)}`);
        assert.ok(![...r.headers.values()].some((v) => v.includes(VENDOR_SECRET)), 'the provider key is in a response header');
    } finally {
        spyMode = 'ok';
    }
});

test('/metrics is public; admin endpoints refuse without the token', async (t) => {
    const m = await fetch(gw.url + '/metrics');
    assert.equal(m.status, 200);
    responses.push(await m.text());
    const probe = await fetch(gw.url + '/admin/spend', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    responses.push(await probe.text());
    if (probe.status === 404) {
        t.skip('/admin/spend is not served by this build');
        return;
    }
    assert.equal(probe.status, 200, 'the admin token opens /admin/spend');
    for (const auth of [undefined, 'Bearer ', `Bearer ${ADMIN_TOKEN}x`, `Bearer ${ADMIN_TOKEN.slice(0, -1)}`, `Bearer ${KEY}`,
        `Basic ${Buffer.from('admin:' + ADMIN_TOKEN).toString('base64')}`, ADMIN_TOKEN]) {
        const r = await fetch(gw.url + '/admin/spend', { headers: auth === undefined ? {} : { authorization: auth } });
        const text = await r.text();
        responses.push(text);
        assert.equal(r.status, 401, `Authorization ${JSON.stringify(auth)} got ${r.status}`);
    }
    // A gateway key is not an admin token, not even through the query.
    const q = await fetch(`${gw.url}/admin/spend?token=${encodeURIComponent(ADMIN_TOKEN)}`);
    responses.push(await q.text());
    assert.equal(q.status, 401, 'the admin token in a query string opens /admin/spend');
});

test('no provider key, gateway key or admin token in any response or in the whole gateway log', async () => {
    // More paths that log: streams, upstream failure with the keyed vendor, bad auth.
    const s = await send(chatBody('vendorx/vx-1', { stream: true }));
    assert.equal(s.status, 200);
    await send(chatBody('vendorx/vx-1'), { 'x-sim-status': '401' });
    await send(chatBody('vendorx/vx-1'), { 'x-sim-status': '500' });
    await send(chatBody('spy/spy-1'), { authorization: `Bearer ${VENDOR_SECRET}` });
    await send(chatBody('spy/spy-1'), { authorization: `Bearer ${ADMIN_TOKEN}` });
    await sleep(1500); // the access log is flushed from a timer
    const log = readFileSync(gw.gw.logFile, 'utf8');
    assert.ok(log.length > 0, 'the gateway logs something');
    for (const [name, secret] of Object.entries({ VENDOR_SECRET, KEY, LEDGER_KEY, ADMIN_TOKEN })) {
        assert.ok(!log.includes(secret), `${name} appears in the gateway log`);
    }
    // The client may see its own key nowhere either; the provider key never.
    for (const text of responses) {
        assert.ok(!text.includes(VENDOR_SECRET), `the provider key appears in a response: ${text.slice(0, 200)}`);
        assert.ok(!text.includes(ADMIN_TOKEN), 'the admin token appears in a response');
    }
});
