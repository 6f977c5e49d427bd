// health.test.mjs — the providers' health is one table per process, shared by
// its workers (policy/health.h): a 429 with `retry-after: 30` that one worker
// saw keeps that provider out of every worker's requests for 30 s. Two
// workers; each request goes on a connection of its own, which SO_REUSEPORT
// hands to either worker. Redis is unreachable on purpose, so each worker
// journals its usage records to <journal>.<worker>: that tells which worker
// served which request id.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { startGateway, freePort, simConfig, simStats, chatBody, KEY } from './harness.mjs';

const WORKERS = 2;

/** POST /v1/chat/completions on a new connection (no keep-alive agent). */
function freshPost(gw, body) {
    return new Promise((resolve, reject) => {
        const req = http.request({
            host: '127.0.0.1', port: gw.port, path: '/v1/chat/completions', method: 'POST', agent: false,
            headers: {
                authorization: `Bearer ${KEY}`, 'content-type': 'application/json',
                'content-length': Buffer.byteLength(body), connection: 'close',
            },
        }, (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d) => (text += d));
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
        });
        req.on('error', reject);
        req.end(body);
    });
}

/** request id -> the worker whose journal holds its usage record. */
function servedBy(dir) {
    const by = new Map();
    for (let w = 0; w < WORKERS; w++) {
        const f = path.join(dir, `journal.${w}`);
        if (!existsSync(f)) continue;
        for (const line of readFileSync(f, 'utf8').split('\n')) {
            if (line) by.set(JSON.parse(line).id, w);
        }
    }
    return by;
}

const routeOf = (r) => [r.status, r.headers['x-tollgate-provider'], r.headers['x-tollgate-attempts']];

/** Calls the simulator booked for openai, answered or refused. */
async function openaiCalls(sim) {
    const p = (await simStats(sim)).providers.openai;
    return p ? p.requests + p.errors : 0;
}

test('a 429 with retry-after: 30 seen by one worker keeps the provider out of every worker', async () => {
    // Nobody listens there: every usage record goes to its worker's journal.
    const g = await startGateway({ workers: WORKERS, redisUrl: `redis://127.0.0.1:${await freePort()}/0` });
    try {
        // e2e-route is ordered: openai/gpt-4o-mini first, deepseek/deepseek-flash second.
        const body = chatBody('e2e-route', { max_tokens: 4 });
        const N = 24;
        const warm = [];
        for (let i = 0; i < N; i++) warm.push(await freshPost(g, body));
        for (const r of warm) assert.deepEqual(routeOf(r), [200, 'openai', '1'], r.text);

        await simConfig(g.sim, { provider: 'openai', fault_status: 429, retry_after: 30 });
        const first = await freshPost(g, body);
        assert.deepEqual(routeOf(first), [200, 'deepseek', '2'], first.text);
        // openai would answer again now: a worker that sent to it would show it.
        await simConfig(g.sim, { provider: 'openai', fault_status: 0, retry_after: null });
        const calls = await openaiCalls(g.sim);

        const after = [];
        for (let i = 0; i < N; i++) after.push(await freshPost(g, body));
        for (const r of after) assert.deepEqual(routeOf(r), [200, 'deepseek', '1'], r.text);
        assert.equal(await openaiCalls(g.sim), calls, 'no call to openai inside its retry-after window');

        // The records say which worker served what: both served before the
        // 429, and the worker that did not see it served some requests after.
        await g.gw.stop();
        const by = servedBy(g.dir);
        const workerOf = (r) => by.get(r.headers['x-tollgate-request-id']);
        const warmWorkers = new Set(warm.map(workerOf));
        assert.deepEqual([...warmWorkers].sort(), [0, 1], 'fresh connections reached both workers');
        const saw = workerOf(first);
        assert.ok(saw === 0 || saw === 1, 'the 429 request has a usage record');
        const others = after.filter((r) => workerOf(r) === 1 - saw).length;
        assert.ok(others > 0, `the worker that did not see the 429 served ${others} of ${N} requests after it`);
        assert.equal(after.filter((r) => workerOf(r) === undefined).length, 0, 'every request has a usage record');
    } finally {
        await g.stop();
    }
});
