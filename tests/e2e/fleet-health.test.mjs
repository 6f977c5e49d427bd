// fleet-health.test.mjs — provider health across gateway instances on one Redis
// (gateway/healthsync.c): a 429 with `retry-after: 30`, or a circuit opened by failures, that
// one gateway process saw keeps every other process away from that provider within a second,
// with no Redis round trip on the request path. Two gateways, each with its own simulator:
// only the first one's simulator fails, so any call the second sends to openai reaches its
// own simulator, whose per-provider stats show it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGateway, simConfig, simStats, chatBody, post, metric } from './harness.mjs';
import { dbUrl, rcli } from './money.mjs';

const DB = dbUrl(13);
const FIELD = 'openai/gpt-4o-mini';

const routeOf = (r) => [r.status, r.headers.get('x-tollgate-provider'), r.headers.get('x-tollgate-attempts')];

/** Calls a simulator booked for openai, answered or refused. */
async function openaiCalls(sim) {
    const p = (await simStats(sim)).providers.openai;
    return p ? p.requests + p.errors : 0;
}

async function twoGateways(extraConfig = '') {
    await rcli(DB, 'FLUSHDB');
    return Promise.all([startGateway({ redisUrl: DB, extraConfig }), startGateway({ redisUrl: DB, extraConfig })]);
}

/** After the first gateway learned to avoid openai: within a second the second one routes
 * e2e-route (openai first, deepseek second) straight to deepseek and sends openai nothing. */
async function assertSecondAvoidsOpenai(g2) {
    await sleep(1000);
    const calls = await openaiCalls(g2.sim);
    for (let i = 0; i < 8; i++) {
        const r = await post(g2, chatBody('e2e-route', { max_tokens: 4 }));
        assert.deepEqual(routeOf(r), [200, 'deepseek', '1'], r.text);
    }
    assert.equal(await openaiCalls(g2.sim), calls, 'the second gateway sent nothing to openai');
    assert.ok((await metric(g2, 'tollgate_healthsync_marks_total', { dir: 'imported' })) >= 1);
}

test('a retry-after one gateway saw keeps the other gateway away from that provider within a second', async () => {
    const [g1, g2] = await twoGateways();
    try {
        for (const g of [g1, g2]) {
            const r = await post(g, chatBody('e2e-route', { max_tokens: 4 }));
            assert.deepEqual(routeOf(r), [200, 'openai', '1'], r.text);
        }
        await simConfig(g1.sim, { provider: 'openai', fault_status: 429, retry_after: 30 });
        const first = await post(g1, chatBody('e2e-route', { max_tokens: 4 }));
        assert.deepEqual(routeOf(first), [200, 'deepseek', '2'], first.text);
        const seenAt = Date.now();

        await assertSecondAvoidsOpenai(g2);
        assert.ok((await metric(g1, 'tollgate_healthsync_marks_total', { dir: 'published' })) >= 1);
        // What Redis holds: no open circuit, a retry deadline about 30 s after the 429.
        const [open, retry] = (await rcli(DB, 'HGET', 'tg:health', FIELD)).split(' ').map(Number);
        assert.equal(open, 0);
        assert.ok(retry > seenAt + 27000 && retry < seenAt + 31000, `retry deadline ${retry - seenAt} ms ahead`);
        const ttl = Number(await rcli(DB, 'PTTL', 'tg:health'));
        assert.ok(ttl > 25000 && ttl <= 31000, `the key expires with its last deadline (pttl ${ttl})`);
        // A success on the second gateway's own path does not lift the block: its simulator
        // would answer, yet it still skips openai.
        const direct = await post(g2, chatBody('openai/gpt-4o-mini', { max_tokens: 4 }));
        assert.equal(direct.status, 503, direct.text);
        assert.match(direct.text, /another instance/);
    } finally {
        await Promise.all([g1.stop(), g2.stop()]);
    }
});

test('a circuit one gateway opened keeps the other gateway away until its cool-down ends', async () => {
    const [g1, g2] = await twoGateways('circuit: { failures: 3, cooldown_ms: 4000 }\n');
    try {
        await simConfig(g1.sim, { provider: 'openai', fault_status: 500 });
        for (let i = 0; i < 3; i++) {
            const r = await post(g1, chatBody('e2e-route', { max_tokens: 4 }));
            assert.deepEqual(routeOf(r), [200, 'deepseek', '2'], r.text);
        }
        assert.equal(await metric(g1, 'tollgate_circuit_state', { provider: 'openai', model: 'gpt-4o-mini' }), 1);
        const openedAt = Date.now();
        await assertSecondAvoidsOpenai(g2);
        const [open] = (await rcli(DB, 'HGET', 'tg:health', FIELD)).split(' ').map(Number);
        assert.ok(open > openedAt + 2500 && open < openedAt + 4500, `open deadline ${open - openedAt} ms ahead`);
        // Its own circuit stays closed: the block is the other's, and ends with it.
        assert.equal(await metric(g2, 'tollgate_circuit_state', { provider: 'openai', model: 'gpt-4o-mini' }), 0);
        await sleep(Math.max(0, open - Date.now()) + 200);
        const r = await post(g2, chatBody('e2e-route', { max_tokens: 4 }));
        assert.deepEqual(routeOf(r), [200, 'openai', '1'], r.text);
    } finally {
        await Promise.all([g1.stop(), g2.stop()]);
    }
});
