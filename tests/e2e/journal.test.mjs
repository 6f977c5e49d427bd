// journal.test.mjs — every journal file is replayed, whatever the worker count, and none twice
// (gateway/journal.c). A gateway with three workers serves while Redis is away, so each
// worker journals its usage to <journal>.<worker>; it stops. A restart with one worker and
// Redis up replays all three files: the report is exact. Then two gateway processes started
// at once on one journal directory full of leftovers: each file is replayed by exactly one of
// them (their `replayed` counters add up to the records), and the report is exact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { existsSync, readFileSync, readdirSync, writeFileSync, openSync, closeSync } from 'node:fs';
import path from 'node:path';
import { BIN, KEY, startGateway, freePort, until, metric, gatewayEnv } from './harness.mjs';
import { dbUrl, rcli, reportJson, micro, simBilled } from './money.mjs';

const MODELS = { deepseek: 'deepseek-flash', qwen: 'qwen-plus', openai: 'gpt-4o-mini' };
const TARGETS = Object.entries(MODELS).map(([p, m]) => `${p}/${m}`);
const DB = dbUrl(12);

/** POST /v1/chat/completions on a connection of its own, so SO_REUSEPORT spreads them over the workers. */
function freshPost(port, body) {
    return new Promise((resolve, reject) => {
        const req = http.request({
            host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', agent: false,
            headers: {
                authorization: `Bearer ${KEY}`, 'content-type': 'application/json',
                'content-length': Buffer.byteLength(body), connection: 'close',
            },
        }, (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d) => (text += d));
            res.on('end', () => resolve({ status: res.statusCode, text }));
        });
        req.on('error', reject);
        req.end(body);
    });
}

/** n requests over the targets, one connection each; every one must succeed. */
async function serve(port, n, tag) {
    for (let i = 0; i < n; i++) {
        const body = JSON.stringify({ model: TARGETS[i % 3], max_tokens: 4 + (i % 5),
            messages: [{ role: 'user', content: `${tag} ${i}` }] });
        const r = await freshPost(port, body);
        assert.equal(r.status, 200, r.text);
    }
}

/** Lines in each journal file of dir: { 'journal.0': 12, ... }. */
function journalLines(dir) {
    const out = {};
    for (const f of readdirSync(dir).filter((f) => /^journal\.\d[\d.]*$/.test(f)).sort())
        out[f] = readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean).length;
    return out;
}

/** Asserts the report of DB (by provider) holds n requests and what the simulator billed. */
async function assertExact(sim, n) {
    const billed = await simBilled(sim, MODELS);
    const json = await reportJson(DB, 'provider');
    assert.equal(json.total.requests, n, 'every served request counted exactly once');
    for (const [p, b] of Object.entries(billed)) {
        const row = json.rows.find((r) => r.provider === p);
        assert.deepEqual(
            { input: row.input_tokens, cached: row.cached_input_tokens, output: row.output_tokens, cost: micro(row.cost_usd) },
            { input: b.input, cached: b.cached, output: b.output, cost: b.cost }, `${p}: report against billed`);
    }
}

/** A gateway with three workers and no Redis serves n requests and stops: its journals stay. */
async function journaledRun(n) {
    const g = await startGateway({ workers: 3, redisUrl: `redis://127.0.0.1:${await freePort()}/0` });
    await serve(g.port, n, 'journaled');
    await g.gw.stop();
    return g;
}

/** `tollgate serve -c config` of our own (the harness starts one gateway per directory). */
function spawnServe(dir, config, name) {
    const fd = openSync(path.join(dir, `${name}.log`), 'a');
    const child = spawn(BIN, ['serve', '-c', config], { cwd: dir, env: gatewayEnv(), stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const exited = new Promise((resolve) => child.on('exit', resolve));
    return {
        child,
        async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            await exited;
        },
    };
}

test('journals of three workers replayed by a restart with one worker: every record once, the report exact', async () => {
    await rcli(DB, 'FLUSHDB');
    const N = 45;
    const g = await journaledRun(N);
    try {
        const before = journalLines(g.dir);
        assert.deepEqual(Object.keys(before), ['journal.0', 'journal.1', 'journal.2']);
        for (const [f, k] of Object.entries(before)) assert.ok(k > 0, `${f} holds records (${k})`);
        assert.equal(Object.values(before).reduce((a, b) => a + b, 0), N);

        await g.restart({ workers: 1, redisUrl: DB });
        await until(async () => (await reportJson(DB)).total.requests >= N, 15000, 200);
        await until(async () => (await metric(g, 'tollgate_ledger_backlog', {})) === 0, 5000);
        await assertExact(g.sim, N);
        assert.equal(await metric(g, 'tollgate_ledger_records_total', { fate: 'replayed' }), N);
        assert.ok(!existsSync(path.join(g.dir, 'journal.1')) && !existsSync(path.join(g.dir, 'journal.2')),
            `the files of workers that no longer exist are taken over and removed: ${JSON.stringify(journalLines(g.dir))}`);
        assert.match(g.gw.log(), /journal .*journal\.[12] \(\d+ lines, left by a worker or process that is gone\) taken over/);
    } finally {
        await g.stop();
    }
});

test('two gateway processes started at once on one journal directory replay each leftover file once', async () => {
    await rcli(DB, 'FLUSHDB');
    const N = 45;
    const g = await journaledRun(N);
    const procs = [];
    try {
        // Both with Redis up and two workers: the first to lock journal.0 and journal.1 keeps
        // them (the other gets journal.0.1 and journal.1.1); journal.2 is nobody's.
        const base = readFileSync(g.config, 'utf8').replace(/^redis: .*$/m, `redis: ${DB}`).replace(/^workers: .*$/m, 'workers: 2');
        const ports = [await freePort(), await freePort()];
        const configs = ports.map((p, i) => {
            const f = path.join(g.dir, `tollgate-${i}.yaml`);
            writeFileSync(f, base.replace(/^listen: .*$/m, `listen: 127.0.0.1:${p}`));
            return f;
        });
        procs.push(...configs.map((c, i) => spawnServe(g.dir, c, `gateway-${i}`)));
        const gws = ports.map((p) => ({ url: `http://127.0.0.1:${p}`, port: p }));
        for (const gw of gws) assert.ok(await until(async () => (await fetch(gw.url + '/healthz')).status === 200, 20000));

        await until(async () => (await reportJson(DB)).total.requests >= N, 15000, 200);
        const replayed = async () => {
            let sum = 0;
            for (const gw of gws) sum += (await metric(gw, 'tollgate_ledger_records_total', { fate: 'replayed' })) ?? 0;
            return sum;
        };
        await until(async () => (await replayed()) >= N, 5000);
        await new Promise((r) => setTimeout(r, 500)); // a second replay of a file would show by now
        assert.equal(await replayed(), N, 'each journal record was replayed by one process');
        await assertExact(g.sim, N);
        const left = journalLines(g.dir);
        assert.equal(Object.values(left).reduce((a, b) => a + b, 0), 0, `journals are empty: ${JSON.stringify(left)}`);
        assert.ok(!existsSync(path.join(g.dir, 'journal.2')), 'the file of no running worker was taken over');
        assert.ok(existsSync(path.join(g.dir, 'journal.0.1')), 'the second process journals to a file of its own');

        // Both serve, and their usage adds up.
        await serve(ports[0], 6, 'after-a');
        await serve(ports[1], 6, 'after-b');
        await until(async () => (await reportJson(DB)).total.requests >= N + 12, 10000, 200);
        await assertExact(g.sim, N + 12);
    } finally {
        await Promise.all(procs.map((p) => p.stop()));
        await g.stop();
    }
});
