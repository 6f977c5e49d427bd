// abuse.test.mjs — faults and abusive clients (issue 6): a provider that
// resets or stalls, clients that trickle headers, send huge headers, hold
// 10,000 idle connections, send invalid UTF-8, absurd nesting, wrong types or
// a thousand tools; SIGTERM during 100 streams (graceful drain) and SIGKILL
// with Redis down (the journal keeps every served request). After each, the
// gateway still serves. No timing assertions: deadlines only bound waits.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import {
    startGateway, KEY, LEDGER_KEY, REDIS_URL, chatBody, post, rawConnect, rawRequest, parseResponses, sseParse,
    simFinalState, simId, rssKb, until, hgetallNumbers, todayUtc,
} from './harness.mjs';

let gw;
before(async () => {
    gw = await startGateway({ limits: { first_byte_ms: 1500, idle_ms: 1000 } });
});
after(async () => {
    await gw?.stop();
});

async function stillServes(g = gw) {
    const r = await post(g, chatBody('deepseek/deepseek-flash'));
    assert.equal(r.status, 200, `the gateway still serves: ${r.text.slice(0, 200)}`);
    assert.equal(r.json.object, 'chat.completion');
}

/** Sends one raw request on a fresh socket and waits for its complete response (or the close). */
async function rawOnce(text, ms = 10000) {
    const s = await rawConnect(gw.port);
    s.write(text);
    await s.waitFor((b) => parseResponses(b).length > 0, ms);
    s.destroy();
    return parseResponses(s.buf)[0];
}

test('upstream reset before a non-stream answer: 502 in OpenAI shape', async () => {
    const id = simId('reset');
    const r = await post(gw, chatBody('deepseek/deepseek-flash'), { 'x-sim-reset-after': '0', 'x-sim-id': id });
    assert.equal(r.status, 502, r.text);
    assert.equal(r.json?.error?.type, 'upstream_error');
    await stillServes();
});

test('upstream reset mid-stream: the relayed part, then an error event, no [DONE]', async () => {
    const id = simId('reset-mid');
    const r = await fetch(gw.url + '/v1/chat/completions', {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'x-sim-reset-after': '4', 'x-sim-id': id },
        body: chatBody('deepseek/deepseek-flash', { stream: true }),
    });
    assert.equal(r.status, 200);
    const { data } = sseParse(await r.text());
    assert.ok(data.length >= 3, 'chunks before the reset reached the client');
    assert.ok(!data.includes('[DONE]'));
    assert.ok(JSON.parse(data.at(-1)).error, 'the stream ends with an error event');
    assert.equal((await simFinalState(gw.sim, id))?.state, 'reset');
    await stillServes();
});

test('upstream stalls past the first-byte timeout: 504', async () => {
    const r = await post(gw, chatBody('deepseek/deepseek-flash'), { 'x-sim-stall-after': '0' });
    assert.equal(r.status, 504, r.text);
    assert.ok(r.json?.error?.message);
    await stillServes();
});

test('slowloris: trickled headers are cut at the header timeout; others are served meanwhile', async () => {
    // A gateway of its own with a short header timeout (the others keep the default).
    const g = await startGateway({ limits: { header_timeout_ms: 1000 } });
    try {
        await slowloris(g);
    } finally {
        await g.stop();
    }
    await stillServes();
});

async function slowloris(g) {
    const socks = await Promise.all(Array.from({ length: 50 }, () => rawConnect(g.port)));
    const head = rawRequest('POST', '/v1/chat/completions', { body: chatBody('deepseek') });
    let i = 0;
    const drip = setInterval(() => {
        for (const s of socks) if (!s.gone) s.write(head[i % 40]);
        i++;
    }, 100);
    try {
        await stillServes(g);
        const closed = await until(() => socks.every((s) => s.gone), 10000);
        assert.ok(closed, `${socks.filter((s) => !s.gone).length} trickling connections are still open`);
        // Nothing was answered with a 200 to a request that never completed its headers.
        for (const s of socks) assert.ok(!s.buf.toString('latin1').includes(' 200 '));
    } finally {
        clearInterval(drip);
        for (const s of socks) s.destroy();
    }
    await stillServes(g);
}

test('64 KB of headers: 431, and the connection closes', async () => {
    const res = await rawOnce(rawRequest('POST', '/v1/chat/completions', {
        headers: { 'x-big': 'a'.repeat(64 * 1024) }, body: chatBody('deepseek'),
    }));
    assert.equal(res?.status, 431);
    await stillServes();
});

test('10,000 idle connections: the gateway keeps answering, memory bounded', async (t) => {
    const rss0 = rssKb(gw.gw.pid);
    const socks = [];
    try {
        for (let i = 0; i < 10000; i += 500) {
            socks.push(...await Promise.all(Array.from({ length: 500 }, () => rawConnect(gw.port))));
        }
        // Every connection is accepted (the kernel backlog alone holds far fewer).
        const open = await until(() => socks.filter((s) => !s.gone).length === 10000 && rssKb(gw.gw.pid) > rss0, 5000);
        assert.ok(open, 'all 10,000 connections are open');
        await stillServes();
        const grown = rssKb(gw.gw.pid) - rss0;
        t.diagnostic(`RSS ${rss0} kB -> +${grown} kB for 10,000 idle connections (${Math.round(grown * 1024 / 10000)} B each)`);
        assert.ok(grown < 200 * 1024, `idle connections cost ${grown} kB`);
    } finally {
        for (const s of socks) s.destroy();
    }
    await stillServes();
});

test('invalid UTF-8 in content: answered (bytes passed through) or refused with 400, never a crash', async () => {
    const body = Buffer.concat([
        Buffer.from('{"model":"deepseek/deepseek-flash","messages":[{"role":"user","content":"bad '),
        Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82]),
        Buffer.from(' end"}]}'),
    ]);
    const r = await post(gw, body);
    assert.ok(r.status === 200 || r.status === 400, `status ${r.status}: ${r.text.slice(0, 200)}`);
    assert.ok(r.json, 'the answer is JSON');
    if (r.status === 400) assert.ok(r.json.error.message);
    await stillServes();
});

test('JSON nested 10,000 deep: 400', async () => {
    const deep = '['.repeat(10000) + ']'.repeat(10000);
    const r = await post(gw, `{"model":"deepseek","messages":[{"role":"user","content":"x"}],"x":${deep}}`);
    assert.equal(r.status, 400, r.text.slice(0, 200));
    assert.equal(r.json?.error?.type, 'invalid_request_error');
    await stillServes();
});

test('`stream` given as a string: 400 naming the field', async () => {
    const r = await post(gw, chatBody('deepseek', { stream: 'true' }));
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error.message, /stream/);
    await stillServes();
});

test('1,000 tools: served', async () => {
    const tools = Array.from({ length: 1000 }, (_, i) => ({
        type: 'function',
        function: { name: `tool_${i}`, description: 'a tool', parameters: { type: 'object', properties: { a: { type: 'string' } } } },
    }));
    const r = await post(gw, chatBody('deepseek/deepseek-flash', { tools }));
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.equal(r.json.object, 'chat.completion');
});

test('SIGTERM during 100 streams: accepts stop, every stream finishes, exit 0', async () => {
    const g = await startGateway();
    try {
        const req = rawRequest('POST', '/v1/chat/completions', {
            headers: { 'x-sim-tps': '20', 'x-sim-output-tokens': '30' },
            body: chatBody('deepseek/deepseek-flash', { stream: true }),
        });
        const socks = await Promise.all(Array.from({ length: 100 }, () => rawConnect(g.port)));
        for (const s of socks) s.write(req);
        // All streams are under way (content is flowing) before the signal.
        await Promise.all(socks.map((s) => s.waitFor((b) => b.includes('"delta"'))));
        g.gw.child.kill('SIGTERM');
        // A new client during the drain is not served.
        await sleep(200);
        const late = await fetch(g.url + '/healthz', { signal: AbortSignal.timeout(3000) }).then((r) => r.status, () => 'refused');
        assert.notEqual(late, 200, 'a connection opened during the drain was served');
        await Promise.all(socks.map((s) => s.waitFor((b) => b.includes('0\r\n\r\n'), 20000)));
        for (const s of socks) {
            const res = parseResponses(s.buf)[0];
            assert.equal(res?.status, 200);
            const { data } = sseParse(res.text);
            assert.equal(data.at(-1), '[DONE]', 'each stream finished cleanly');
            assert.equal(data.filter((d) => d !== '[DONE]' && JSON.parse(d).choices?.[0]?.delta?.content).length, 30);
        }
        const e = await until(() => g.gw.exitInfo, 20000);
        assert.deepEqual(e, { code: 0, sig: null }, 'the gateway exits 0 after the drain');
    } finally {
        await g.stop();
    }
});

// ledger.c writes each journal line at once (3f419c0): a SIGKILL loses none.
test('SIGKILL with Redis down, restart with Redis up: every served request is counted', async (t) => {
    const g = await startGateway({ redisUrl: 'redis://127.0.0.1:1/0' });
    try {
        const field = `openai|gpt-4o-mini|ledger|requests`;
        const count = async () => (await hgetallNumbers(`tg:usage:${todayUtc()}`))[field] ?? 0;
        const before = await count();
        let started = 0, served = 0, stop = false;
        const loop = async () => {
            while (!stop) {
                started++;
                try {
                    const r = await fetch(g.url + '/v1/chat/completions', {
                        method: 'POST',
                        headers: { authorization: `Bearer ${LEDGER_KEY}`, 'content-type': 'application/json' },
                        body: chatBody('openai/gpt-4o-mini', { max_tokens: 3 }),
                    });
                    const j = await r.json();
                    if (r.status === 200 && j.usage) served++;
                } catch {
                    return; // the gateway is gone
                }
            }
        };
        const loops = Array.from({ length: 8 }, loop);
        await until(() => served >= 300, 20000);
        g.gw.child.kill('SIGKILL');
        stop = true;
        await Promise.all(loops);
        assert.ok(served >= 300);
        await g.restart({ redisUrl: REDIS_URL });
        let now = before;
        await until(async () => (now = await count()) - before >= served, 15000);
        t.diagnostic(`served ${served}, started ${started}, counted ${now - before}`);
        assert.ok(now - before >= served, `Redis counts ${now - before} of ${served} served requests`);
        assert.ok(now - before <= started, `Redis counts ${now - before} but only ${started} were sent`);
        await stillServes(g);
    } finally {
        await g.stop();
    }
});
