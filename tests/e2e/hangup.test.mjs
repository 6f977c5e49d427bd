// hangup.test.mjs — clients that go away or read slowly. A hang-up while
// waiting for the first token, or mid-stream, cancels the upstream transfer
// (the simulator reports the request "cancelled"); a slow reader in front of
// a fast stream costs the gateway bounded memory, and the stream completes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGateway, KEY, chatBody, rawConnect, rawRequest, simFinalState, simRequest, simId, rssKb, until } from './harness.mjs';

let gw;
before(async () => {
    gw = await startGateway();
});
after(async () => {
    await gw?.stop();
});

const streamReq = (headers, extra = {}) =>
    rawRequest('POST', '/v1/chat/completions', { headers, body: chatBody('deepseek/deepseek-flash', { stream: true, ...extra }) });

test('hang-up while waiting for the first token cancels the upstream', async () => {
    const id = simId('ttft');
    const s = await rawConnect(gw.port);
    // Long enough that a gateway which does not notice would let it complete instead.
    s.write(streamReq({ 'x-sim-ttft-ms': '20000', 'x-sim-id': id }));
    await until(async () => (await simRequest(gw.sim, id))?.state === 'open', 5000);
    await sleep(200);
    s.destroy();
    const rec = await simFinalState(gw.sim, id, 10000);
    assert.equal(rec?.state, 'cancelled', `simulator says ${JSON.stringify(rec)}`);
});

test('hang-up mid-stream cancels the upstream', async () => {
    const id = simId('mid');
    const s = await rawConnect(gw.port);
    s.write(streamReq({ 'x-sim-tps': '5', 'x-sim-id': id, 'x-sim-output-tokens': '1000' }));
    // Wait until content is flowing to the client, then go away.
    await s.waitFor((b) => b.toString('latin1').includes('"delta"'));
    s.destroy();
    const rec = await simFinalState(gw.sim, id, 10000);
    assert.equal(rec?.state, 'cancelled', `simulator says ${JSON.stringify(rec)}`);
});

test('hang-up on a non-stream request also cancels the upstream', async () => {
    const id = simId('nonstream');
    const s = await rawConnect(gw.port);
    s.write(rawRequest('POST', '/v1/chat/completions', {
        headers: { 'x-sim-ttft-ms': '20000', 'x-sim-id': id },
        body: chatBody('deepseek/deepseek-flash'),
    }));
    await until(async () => (await simRequest(gw.sim, id))?.state === 'open', 5000);
    s.destroy();
    const rec = await simFinalState(gw.sim, id, 10000);
    assert.equal(rec?.state, 'cancelled', `simulator says ${JSON.stringify(rec)}`);
});

test('the gateway still serves after hang-ups', async () => {
    const r = await fetch(gw.url + '/v1/chat/completions', {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}` },
        body: chatBody('deepseek/deepseek-flash'),
    });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
});

// A stream of this many tokens is ~100 MB of SSE: far more than the socket
// buffers of the kernel hold, so a gateway that buffered for a slow reader
// would grow by tens of MB while the reader sleeps.
const SLOW_TOKENS = 500000;
const RSS_BOUND_KB = 32 * 1024;

test('slow reader: gateway memory stays bounded, then the stream completes', async () => {
    // Warm up both workers so their one-off allocations are in the baseline.
    for (let i = 0; i < 4; i++) {
        const r = await fetch(gw.url + '/healthz');
        await r.arrayBuffer();
    }
    const base = rssKb(gw.gw.pid);
    const id = simId('slow');
    const sock = net.connect(gw.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    let bytes = 0;
    let tail = '';
    let headerSeen = false;
    let closed = false;
    sock.on('close', () => (closed = true));
    sock.on('data', (d) => {
        bytes += d.length;
        if (!headerSeen) headerSeen = d.toString('latin1').startsWith('HTTP/1.1 200');
        tail = (tail + d.toString('latin1')).slice(-4096);
        if (tail.endsWith('0\r\n\r\n') && tail.includes('[DONE]')) sock.end();
    });
    sock.write(streamReq({ 'x-sim-id': id, 'x-sim-tps': '0', 'x-sim-output-tokens': String(SLOW_TOKENS) }, { max_tokens: SLOW_TOKENS }));
    // Read the first bytes, then stop reading: the kernel buffers fill and the
    // gateway must stop pulling from upstream.
    await until(() => bytes > 0, 10000);
    sock.pause();
    let peak = base;
    for (let i = 0; i < 20; i++) {
        await sleep(200);
        peak = Math.max(peak, rssKb(gw.gw.pid));
    }
    const held = bytes;
    const state = (await simRequest(gw.sim, id))?.state;
    assert.ok(peak - base < RSS_BOUND_KB, `gateway RSS grew ${peak - base} kB (from ${base} kB) with a stalled reader`);
    assert.equal(state, 'open', 'the upstream is held back (paused), not drained into memory');

    sock.resume();
    await until(() => closed, 120000);
    assert.ok(headerSeen, 'a 200 stream');
    assert.ok(bytes > held, 'reading resumed');
    assert.ok(tail.includes('data: [DONE]'), `the stream completed; tail: ${tail.slice(-300)}`);
    const rec = await simFinalState(gw.sim, id, 10000);
    assert.equal(rec?.state, 'completed');
});
