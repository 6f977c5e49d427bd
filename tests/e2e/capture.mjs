// capture.mjs — a tiny HTTP server that records what a real client sends
// (method, path, headers without credentials, body) and answers each endpoint
// with the smallest valid reply that lets the client go one step further:
// OpenAI Responses (JSON or SSE), Chat Completions, Embeddings, Models, and
// Anthropic Messages (JSON or SSE) and count_tokens. The fixtures under
// fixtures/clients/ were recorded with it; tests may import startCapture().
//   node capture.mjs [--port N] [--out requests.jsonl] [--drop EVENT,EVENT]
import http from 'node:http';
import { appendFileSync } from 'node:fs';

const SECRET_HEADERS = new Set(['authorization', 'x-api-key', 'api-key', 'proxy-authorization', 'cookie']);

/** Headers with credentials masked (their presence and scheme kept, never their value). */
export function maskHeaders(h) {
    const o = {};
    for (const [k, v] of Object.entries(h)) {
        if (!SECRET_HEADERS.has(k)) o[k] = v;
        else if (/^bearer /i.test(String(v))) o[k] = 'Bearer ***';
        else o[k] = '***';
    }
    return o;
}

const now = () => Math.floor(Date.now() / 1000);
let seq = 0;
const nextId = (p) => `${p}_cap${Date.now().toString(36)}${(++seq).toString(36)}`;

const REPLY_TEXT = 'hi';

/** The events of a one-message Responses stream, in order (each has its type). */
export function responsesEvents(req, text = REPLY_TEXT) {
    const id = nextId('resp');
    const msgId = nextId('msg');
    const base = {
        id, object: 'response', created_at: now(), status: 'in_progress', model: req.model ?? 'unknown',
        output: [], parallel_tool_calls: true, tool_choice: req.tool_choice ?? 'auto', tools: req.tools ?? [],
        instructions: req.instructions ?? null, previous_response_id: req.previous_response_id ?? null,
        store: req.store ?? true, temperature: 1, top_p: 1, text: { format: { type: 'text' } },
        reasoning: { effort: req.reasoning?.effort ?? null, summary: null }, truncation: 'disabled',
        usage: null, error: null, incomplete_details: null, metadata: {},
    };
    const part = { type: 'output_text', text: '', annotations: [] };
    const item = { id: msgId, type: 'message', status: 'in_progress', role: 'assistant', content: [] };
    const doneItem = { ...item, status: 'completed', content: [{ ...part, text }] };
    const usage = { input_tokens: 10, input_tokens_details: { cached_tokens: 0 }, output_tokens: 1,
        output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 11 };
    const ev = [
        { type: 'response.created', response: base },
        { type: 'response.in_progress', response: base },
        { type: 'response.output_item.added', output_index: 0, item },
        { type: 'response.content_part.added', item_id: msgId, output_index: 0, content_index: 0, part },
        { type: 'response.output_text.delta', item_id: msgId, output_index: 0, content_index: 0, delta: text, logprobs: [] },
        { type: 'response.output_text.done', item_id: msgId, output_index: 0, content_index: 0, text, logprobs: [] },
        { type: 'response.content_part.done', item_id: msgId, output_index: 0, content_index: 0, part: { ...part, text } },
        { type: 'response.output_item.done', output_index: 0, item: doneItem },
        { type: 'response.completed', response: { ...base, status: 'completed', output: [doneItem], usage } },
    ];
    ev.forEach((e, i) => (e.sequence_number = i));
    return ev;
}

function anthropicMessage(req, text = REPLY_TEXT) {
    return {
        id: nextId('msg'), type: 'message', role: 'assistant', model: req.model ?? 'unknown',
        content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null,
        usage: { input_tokens: 10, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    };
}

function anthropicEvents(req, text = REPLY_TEXT) {
    const m = anthropicMessage(req, text);
    return [
        ['message_start', { type: 'message_start', message: { ...m, content: [], stop_reason: null, usage: { ...m.usage, output_tokens: 0 } } }],
        ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
        ['ping', { type: 'ping' }],
        ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } }],
        ['content_block_stop', { type: 'content_block_stop', index: 0 }],
        ['message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 1 } }],
        ['message_stop', { type: 'message_stop' }],
    ];
}

/** A deterministic unit-ish vector for a string (what an embedding stand-in needs). */
function vector(s, n = 8) {
    const v = [];
    for (let i = 0; i < n; i++) {
        let h = 2166136261 ^ i;
        for (const c of Buffer.from(s)) h = Math.imul(h ^ c, 16777619);
        v.push(((h >>> 0) % 2000) / 1000 - 1);
    }
    return v;
}

function embeddings(req) {
    const inputs = Array.isArray(req.input) ? req.input : [req.input];
    const data = inputs.map((s, index) => {
        const v = vector(typeof s === 'string' ? s : JSON.stringify(s), req.dimensions ?? 8);
        const embedding = req.encoding_format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v;
        return { object: 'embedding', index, embedding };
    });
    return { object: 'list', data, model: req.model, usage: { prompt_tokens: 2 * inputs.length, total_tokens: 2 * inputs.length } };
}

function sse(res, events) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    for (const [name, data] of events) res.write((name ? `event: ${name}\n` : '') + `data: ${JSON.stringify(data)}\n\n`);
    res.end();
}

function json(res, status, body) {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
}

/**
 * Starts the capture server on 127.0.0.1. Options: port (0 = any), out (a
 * JSONL file each record is appended to), filterResponsesEvents(events, req)
 * (to study what a client needs: return the events to send). Returns
 * { url, port, requests, close() }.
 */
export function startCapture({ port = 0, out, filterResponsesEvents } = {}) {
    const requests = [];
    const server = http.createServer((req, res) => {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
            const raw = Buffer.concat(chunks).toString('utf8');
            let body = raw;
            try {
                body = raw ? JSON.parse(raw) : null;
            } catch {}
            const rec = { method: req.method, path: req.url, headers: maskHeaders(req.headers), body };
            requests.push(rec);
            if (out) appendFileSync(out, JSON.stringify(rec) + '\n');
            const p = req.url.replace(/\?.*$/, '').replace(/^\/v1(?=\/)/, '');
            const b = body && typeof body === 'object' ? body : {};
            if (req.method === 'POST' && p === '/responses') {
                let ev = responsesEvents(b);
                if (filterResponsesEvents) ev = filterResponsesEvents(ev, b);
                if (b.stream) return sse(res, ev.map((e) => [e.type, e]));
                return json(res, 200, ev.at(-1).response);
            }
            if (req.method === 'POST' && p === '/messages/count_tokens') return json(res, 200, { input_tokens: 42 });
            if (req.method === 'POST' && p === '/messages') {
                if (b.stream) return sse(res, anthropicEvents(b));
                return json(res, 200, anthropicMessage(b));
            }
            if (req.method === 'POST' && p === '/embeddings') return json(res, 200, embeddings(b));
            if (req.method === 'POST' && p === '/chat/completions') {
                const c = { id: nextId('chatcmpl'), object: 'chat.completion', created: now(), model: b.model,
                    choices: [{ index: 0, message: { role: 'assistant', content: REPLY_TEXT }, finish_reason: 'stop' }],
                    usage: { prompt_tokens: 10, completion_tokens: 1, total_tokens: 11 } };
                return json(res, 200, c);
            }
            if (req.method === 'GET' && p === '/models') {
                return json(res, 200, { object: 'list', data: [{ id: 'capture-model', object: 'model', created: now(), owned_by: 'capture' }] });
            }
            json(res, 404, { error: { message: `capture: no reply for ${req.method} ${req.url}`, type: 'invalid_request_error', code: null } });
        });
    });
    // A client that tries the internet through HTTPS_PROXY pointed here is
    // recorded (CONNECT host:port) and refused, so nothing leaves the machine.
    server.on('connect', (req, socket) => {
        const rec = { method: 'CONNECT', path: req.url, headers: maskHeaders(req.headers), body: null };
        requests.push(rec);
        if (out) appendFileSync(out, JSON.stringify(rec) + '\n');
        socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n');
    });
    return new Promise((resolve) => {
        server.listen(port, '127.0.0.1', () => {
            const p = server.address().port;
            resolve({
                url: `http://127.0.0.1:${p}`, port: p, requests,
                close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
            });
        });
    });
}

if (import.meta.url === `file://${process.argv[1]}`) {
    const arg = (n) => {
        const i = process.argv.indexOf(n);
        return i > 0 ? process.argv[i + 1] : undefined;
    };
    // --drop a,b leaves those Responses event types out of every stream (to learn what a client needs).
    const drop = new Set((arg('--drop') ?? '').split(',').filter(Boolean));
    const c = await startCapture({
        port: Number(arg('--port') ?? 0), out: arg('--out'),
        filterResponsesEvents: drop.size ? (ev) => ev.filter((e) => !drop.has(e.type)) : undefined,
    });
    console.log(`capture listening on ${c.url}`);
}
