// Memory per stream: a long stream of large chunks must not grow the gateway's memory with
// its length. Per-event scratch (token arrays of big chunks, formatted events, event types)
// is reused or freed per event, so the gateway's RSS after a 20,000-chunk stream with 60
// logprobs per chunk (about 90 MB relayed) is what it was before, within 2 MB; the same for
// long translated streams (OpenAI client <- Claude, Anthropic client <- OpenAI dialect),
// where each event is parsed and written anew. The simulator answers as fast as it can
// (x-sim-ttft-ms 0, x-sim-tps 0) and the client reads every stream to its end. A small
// Claude of this file's own (`fakeclaude`) sends what the simulator never does: events
// without an `event:` line whose data spans several data: lines, which the gateway relays
// to an Anthropic client as several data: lines again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { startGateway, KEY, rssKb } from './harness.mjs';

const FAKE_EVENTS = 100000;

/** The Claude stream of fakeclaude: data-only events, each JSON text cut over two data: lines;
 * x-fake-events: N content_block_delta events (default FAKE_EVENTS). */
function fakeClaude(req, res) {
    const n = Number(req.headers['x-fake-events'] || FAKE_EVENTS);
    req.resume();
    req.on('end', async () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const ev = (a, b) => `data: ${a}\ndata: ${b}\n\n`;
        res.write(ev('{"type":"message_start",', '"message":{"id":"msg_fake","type":"message","role":"assistant",' +
            '"model":"claude-fake","content":[],"stop_reason":null,"stop_sequence":null,' +
            '"usage":{"input_tokens":7,"output_tokens":1}}}'));
        res.write(ev('{"type":"content_block_start",', '"index":0,"content_block":{"type":"text","text":""}}'));
        for (let i = 0; i < n;) {
            let batch = '';
            for (const end = Math.min(n, i + 1000); i < end; i++)
                batch += ev('{"type":"content_block_delta","index":0,', `"delta":{"type":"text_delta","text":" w${i % 10}"}}`);
            if (!res.write(batch)) await once(res, 'drain');
        }
        res.write(ev('{"type":"content_block_stop",', '"index":0}'));
        res.write(ev('{"type":"message_delta",', `"delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":${n}}}`));
        res.end(ev('{"type":"message_stop"', '}'));
    });
}

let gw, fake;
before(async () => {
    fake = http.createServer(fakeClaude);
    fake.listen(0, '127.0.0.1');
    await once(fake, 'listening');
    const url = `http://127.0.0.1:${fake.address().port}`;
    gw = await startGateway({
        extraProviders: `  fakeclaude: { dialect: anthropic, base_url: ${url}, api_key_env: TG_E2E_ANTHROPIC_KEY, region: us }`,
        extraPrices: { 'fakeclaude/claude-fake': { input: 1, cached_input: 1, output: 1 } },
    });
});
after(async () => {
    await gw?.stop();
    fake?.close();
});

const MSGS = [{ role: 'user', content: 'hello there' }];
const FAST = { 'x-sim-ttft-ms': '0', 'x-sim-tps': '0' };
const SANITIZED = process.env.TOLLGATE_SANITIZED === '1';
const LIMIT_KB = 2048;

/** Sends a streamed request and reads it to the end without keeping it: the byte count,
 * the number of SSE events, the last 8 kB, and the gateway's highest RSS seen while the
 * stream was being read (the request's memory is gone once it ends, so it is sampled at
 * every read, up to the last). */
async function stream(pathName, headers, body) {
    const r = await fetch(gw.url + pathName, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers, ...FAST },
        body: JSON.stringify(body),
    });
    assert.equal(r.status, 200, await (r.status === 200 ? '' : r.text()));
    const dec = new TextDecoder();
    let bytes = 0, events = 0, carry = '', tail = '', peak = 0;
    for await (const chunk of r.body) {
        peak = Math.max(peak, rssKb(gw.gw.pid));
        bytes += chunk.length;
        // Events end with a blank line; count them across the cuts between reads.
        const text = carry + dec.decode(chunk, { stream: true });
        let at = 0;
        for (let i; (i = text.indexOf('\n\n', at)) >= 0; at = i + 2) events++;
        carry = text.slice(at);
        tail = (tail + text).slice(-8192);
    }
    return { bytes, events, tail, peak };
}

/** RSS before one stream and its peak while the stream ran (after a shorter stream of the
 * same kind, so that the buffers a stream of that kind keeps reach their size first). */
async function measure(t, what, run) {
    await run(0.05);
    const rss0 = rssKb(gw.gw.pid);
    const s = await run(1);
    const grown = s.peak - rss0;
    t.diagnostic(`${what}: ${s.events} events, ${(s.bytes / 1e6).toFixed(1)} MB relayed; RSS ${rss0} kB -> +${grown} kB at the peak, ${rssKb(gw.gw.pid)} kB after`);
    // ASan's allocator keeps what was freed (quarantine), so the bound holds for the normal
    // build only; under `make asan` the path still runs.
    if (!SANITIZED) assert.ok(grown < LIMIT_KB, `${what}: RSS grew by ${grown} kB`);
    return s;
}

const openai = (model, n, extra = {}) => (scale) =>
    stream('/v1/chat/completions', { authorization: `Bearer ${KEY}`, 'x-sim-output-tokens': String(Math.round(n * scale)), ...extra },
        { model, max_tokens: 100000, messages: MSGS, stream: true });

test('OpenAI client <- OpenAI dialect: 20,000 chunks with 60 logprobs each, RSS flat', async (t) => {
    const s = await measure(t, 'logprobs', openai('openai/gpt-4o-mini', 20000, { 'x-sim-logprobs': '60' }));
    // role, 20,000 tokens, finish, [DONE]; then the gateway's cost comment.
    assert.ok(s.events >= 20003, `${s.events} events`);
    assert.ok(s.bytes > 20000 * 60 * 40, `${s.bytes} bytes: the chunks carry their logprobs`);
    assert.match(s.tail, /data: \[DONE\]\n\n/);
    assert.match(s.tail, /"top_logprobs":\[/, 'the last chunks still carry logprobs');
});

test('OpenAI client <- Claude (translated): a long stream, RSS flat', async (t) => {
    const s = await measure(t, 'claude->openai', openai('anthropic/claude-haiku-4-5', 40000));
    assert.ok(s.events >= 40000, `${s.events} events`);
    assert.match(s.tail, /data: \[DONE\]\n\n/);
});

test('Anthropic client <- OpenAI dialect (translated): a long stream, RSS flat', async (t) => {
    const run = (scale) =>
        stream('/v1/messages', { 'x-api-key': KEY, 'anthropic-version': '2023-06-01', 'x-sim-output-tokens': String(Math.round(40000 * scale)) },
            { model: 'openai/gpt-4o-mini', max_tokens: 100000, messages: MSGS, stream: true });
    const s = await measure(t, 'openai->anthropic', run);
    assert.ok(s.events >= 40000, `${s.events} events`);
    assert.match(s.tail, /event: message_stop\n/);
});

test('Anthropic client <- Claude sending data-only events over several data: lines: RSS flat', async (t) => {
    const run = (scale) =>
        stream('/v1/messages', { 'x-api-key': KEY, 'anthropic-version': '2023-06-01', 'x-fake-events': String(Math.round(FAKE_EVENTS * scale)) },
            { model: 'fakeclaude/claude-fake', max_tokens: 1000, messages: MSGS, stream: true });
    const s = await measure(t, 'fakeclaude passthrough', run);
    assert.ok(s.events >= FAKE_EVENTS, `${s.events} events`);
    // Relayed as it came: no event: line was invented, the data is still on two lines.
    assert.match(s.tail, /data: \{"type":"content_block_delta","index":0,\ndata: "delta":/);
    assert.match(s.tail, /data: \{"type":"message_stop"\ndata: \}\n\n/);
});

test('OpenAI client <- the same Claude (translated): RSS flat', async (t) => {
    const run = (scale) =>
        stream('/v1/chat/completions', { authorization: `Bearer ${KEY}`, 'x-fake-events': String(Math.round(FAKE_EVENTS * scale)) },
            { model: 'fakeclaude/claude-fake', messages: MSGS, stream: true });
    const s = await measure(t, 'fakeclaude->openai', run);
    assert.ok(s.events >= FAKE_EVENTS, `${s.events} events`);
    assert.match(s.tail, /data: \[DONE\]\n\n/);
});
