#!/usr/bin/env node
// fastest.mjs — the `fastest` strategy's figure for the notes (not a test):
// two simulated providers, one answering its first token after 50 ms and one
// after 400 ms, behind a route with `strategy: fastest`. Prints the split of
// 1,000 requests, then swaps the two speeds and prints the split second by
// second while the traffic moves.
//   node bench/fastest.mjs [path/to/tollgate]   (default ./tollgate)
// Options by environment: CONCURRENCY (default 8), WORKERS (default 2).
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const BIN = path.resolve(process.argv[2] || './tollgate');
const CONCURRENCY = Number(process.env.CONCURRENCY || 8);
const WORKERS = Number(process.env.WORKERS || 2);
const KEY = 'bench-fastest-key';

const freePort = () =>
    new Promise((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });

async function waitOk(url) {
    for (let i = 0; i < 200; i++) {
        try {
            if ((await fetch(url)).status === 200) return;
        } catch {}
        await sleep(50);
    }
    throw new Error(`no answer from ${url}`);
}

const simPort = await freePort();
const gwPort = await freePort();
const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-fastest-'));
const sha = (await import('node:crypto')).createHash('sha256').update(KEY).digest('hex');
writeFileSync(path.join(dir, 'tollgate.yaml'), `listen: 127.0.0.1:${gwPort}
workers: ${WORKERS}
redis: null
log_level: warn
simulator: { url: "http://127.0.0.1:${simPort}", when_no_key: true, embedded: false }
providers:
  fast: { dialect: openai, base_url: https://fast.invalid/v1, api_key_env: BENCH_UNSET_FAST_KEY, models: [m] }
  slow: { dialect: openai, base_url: https://slow.invalid/v1, api_key_env: BENCH_UNSET_SLOW_KEY, models: [m] }
keys: [{ name: bench, sha256: "${sha}" }]
routes:
  - { name: quick, match: { model: quick }, strategy: fastest, candidates: [fast/m, slow/m] }
`);
const env = { ...process.env };
delete env.BENCH_UNSET_FAST_KEY;
delete env.BENCH_UNSET_SLOW_KEY;
const sim = spawn(BIN, ['simulate', '--port', String(simPort)], { stdio: 'ignore' });
const gw = spawn(BIN, ['serve', '-c', path.join(dir, 'tollgate.yaml')], { stdio: ['ignore', 'ignore', 'inherit'], env });
const stopAll = () => {
    gw.kill('SIGTERM');
    sim.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
};
process.on('exit', stopAll);

const speeds = (fast, slow) =>
    Promise.all(
        Object.entries({ fast, slow }).map(([provider, ttft_ms]) =>
            fetch(`http://127.0.0.1:${simPort}/_sim/config`, { method: 'POST', body: JSON.stringify({ provider, ttft_ms }) })
        )
    );

async function one() {
    const r = await fetch(`http://127.0.0.1:${gwPort}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'quick', messages: [{ role: 'user', content: 'hi' }], max_tokens: 16 }),
    });
    await r.arrayBuffer();
    if (r.status !== 200) throw new Error(`status ${r.status}`);
    return r.headers.get('x-tollgate-provider');
}

/** Runs requests with CONCURRENCY in flight until `n` are done or `ms` passed; returns {fast, slow}. */
async function run({ n = Infinity, ms = Infinity }) {
    const count = { fast: 0, slow: 0 };
    let started = 0;
    const end = Date.now() + ms;
    const lane = async () => {
        while (started < n && Date.now() < end) {
            started++;
            count[await one()]++;
        }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, lane));
    return count;
}

const pct = (c) => ((100 * c.fast) / (c.fast + c.slow)).toFixed(1);
try {
    await waitOk(`http://127.0.0.1:${simPort}/_sim/stats`);
    await waitOk(`http://127.0.0.1:${gwPort}/healthz`);
    await speeds(50, 400);
    const t0 = Date.now();
    const a = { fast: 0, slow: 0 };
    for (let k = 0; k < 10; k++) {
        const c = await run({ n: 100 });
        a.fast += c.fast;
        a.slow += c.slow;
        if (process.env.VERBOSE) console.log(`  requests ${k * 100 + 1}-${k * 100 + 100}: fast ${c.fast}, slow ${c.slow}, ${Date.now() - t0} ms`);
    }
    console.log(`fastest, ${WORKERS} workers, ${CONCURRENCY} in flight; "fast" answers after 50 ms, "slow" after 400 ms`);
    console.log(`1,000 requests in ${((Date.now() - t0) / 1000).toFixed(1)} s: fast ${a.fast}, slow ${a.slow} (${pct(a)}% to the 50 ms one)`);
    await speeds(400, 50);
    console.log('speeds swapped: "fast" now 400 ms, "slow" now 50 ms; split per second:');
    for (let s = 1; s <= 8; s++) {
        const c = await run({ ms: 1000 });
        console.log(`  second ${s}: fast ${c.fast}, slow ${c.slow} (${(100 - pct(c)).toFixed(1)}% to the now-50 ms one)`);
    }
} finally {
    stopAll();
}
