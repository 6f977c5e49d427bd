// redis.test.mjs — the gateway's Redis connection against Redis deployments of this test's own,
// each on free loopback ports: TLS (rediss:// with a CA made here by openssl, checked against the
// certificate's name), Sentinel (a master, a replica and three sentinels; the master is killed
// while requests flow and a replica is promoted), and a Redis that is not there when the gateway
// starts. Each time every request sent must be in the ledger exactly once, equal to what the
// simulated providers billed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { BIN, startGateway, freePort, until, post, chatBody } from './harness.mjs';
import { dayUtc, simBilled, report } from './money.mjs';

const execFileP = promisify(execFile);
const MODELS = { deepseek: 'deepseek-flash', qwen: 'qwen-plus', openai: 'gpt-4o-mini' };
const TARGETS = Object.entries(MODELS).map(([p, m]) => `${p}/${m}`);

/** A redis-server (or sentinel) of this test's own; stop() kills it and waits. */
function spawnRedis(args) {
    const proc = spawn('redis-server', args, { stdio: 'ignore' });
    const exited = new Promise((res) => proc.on('exit', res));
    return {
        proc,
        async stop(sig = 'SIGTERM') {
            if (proc.exitCode === null && proc.signalCode === null) {
                proc.kill(sig);
                await exited;
            }
        },
    };
}

async function cli(args) {
    const { stdout } = await execFileP('redis-cli', ['--raw', ...args]);
    return stdout.trim();
}

async function waitPong(args) {
    const ok = await until(async () => (await cli([...args, 'PING'])) === 'PONG', 10000);
    assert.ok(ok, `redis at ${args.join(' ')} did not answer`);
}

/** Sums of tg:usage:{day} over yesterday and today (a run may cross midnight), through redis-cli args. */
async function ledgerTotals(args) {
    const t = { requests: 0, input: 0, cached: 0, output: 0, cost: 0 };
    const names = { requests: 'requests', input_tokens: 'input', cached_input_tokens: 'cached', output_tokens: 'output', cost_micro_usd: 'cost' };
    for (const day of new Set([dayUtc(-1), dayUtc(0)])) {
        const lines = (await cli([...args, 'HGETALL', `tg:usage:${day}`])).split('\n').filter((l) => l !== '');
        for (let i = 0; i + 1 < lines.length; i += 2) {
            const name = names[lines[i].split('|').pop()];
            if (name) t[name] += Number(lines[i + 1]);
        }
    }
    return t;
}

/** What the simulator billed, summed over providers, in the shape of ledgerTotals (requests aside). */
async function billed(sim) {
    const t = { input: 0, cached: 0, output: 0, cost: 0 };
    for (const b of Object.values(await simBilled(sim, MODELS))) {
        t.input += b.input, t.cached += b.cached, t.output += b.output, t.cost += b.cost;
    }
    return t;
}

/** Sends n chat requests, `conc` at a time; returns the statuses that were not 200. */
async function send(g, n, tag, conc = 4) {
    let next = 0;
    const bad = [];
    const worker = async () => {
        while (next < n) {
            const i = next++;
            const r = await post(g, chatBody(TARGETS[i % TARGETS.length], { max_tokens: 5, messages: [{ role: 'user', content: `${tag} ${i}` }] }));
            if (r.status !== 200) bad.push(`${i}: ${r.status} ${r.text.slice(0, 200)}`);
        }
    };
    await Promise.all(Array.from({ length: conc }, worker));
    return bad;
}

/** Waits for the ledger to hold n requests, then checks it stays there and matches the bill. */
async function assertExact(args, g, n) {
    let t;
    await until(async () => (t = await ledgerTotals(args)).requests >= n, 30000, 200);
    await sleep(300); // a late duplicate would show up here
    t = await ledgerTotals(args);
    assert.equal(t.requests, n, 'every request sent is in the ledger once');
    const { requests, ...tokens } = t;
    assert.deepEqual(tokens, await billed(g.sim), 'ledger tokens and cost equal what the providers billed');
}

test('rediss:// with redis_tls.ca_file: the certificate and its name are checked, and the ledger is exact', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-e2e-redis-tls-'));
    // A CA, and a server certificate it signs for localhost and 127.0.0.1.
    await execFileP('bash', ['-c', `set -e; cd ${dir}
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=tollgate-e2e-ca
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile ext`]);
    const port = await freePort();
    const ca = path.join(dir, 'ca.pem');
    const redis = spawnRedis(['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
        '--dir', dir, '--tls-cert-file', path.join(dir, 'server.pem'), '--tls-key-file', path.join(dir, 'server.key'),
        '--tls-ca-cert-file', ca, '--tls-auth-clients', 'no']);
    const args = ['--tls', '--cacert', ca, '-h', '127.0.0.1', '-p', String(port), '-n', '0'];
    let g;
    try {
        await waitPong(args);
        // A name, looked up without blocking, that the certificate carries.
        g = await startGateway({ redisUrl: `rediss://localhost:${port}/0`, extraConfig: `redis_tls: { ca_file: ${ca} }\n` });
        const N = 30;
        assert.deepEqual(await send(g, N, 'tls'), []);
        await assertExact(args, g, N);
        assert.doesNotMatch(g.gw.log(), /unavailable/, 'the ledger never lost its TLS link');
        // `tollgate report` reads the same URL and redis_tls from the config.
        const r = await report('-c', g.config, '--from', dayUtc(-1), '--to', dayUtc(0), '--format', 'json');
        assert.equal(r.code, 0, r.stderr);
        assert.equal(JSON.parse(r.stdout).total.requests, N);
    } finally {
        await g?.stop();
        await redis.stop();
        rmSync(dir, { recursive: true, force: true });
    }
});

test('Sentinel: the master is killed while requests flow, a replica is promoted, and no record is lost', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-e2e-redis-sentinel-'));
    const [mport, rport, ...sports] = await Promise.all(Array.from({ length: 5 }, () => freePort()));
    const common = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    const master = spawnRedis(['--port', String(mport), '--dir', dir, ...common]);
    const replica = spawnRedis(['--port', String(rport), '--dir', dir, ...common, '--replicaof', '127.0.0.1', String(mport)]);
    const sentinels = sports.map((p, i) => {
        const conf = path.join(dir, `sentinel-${i}.conf`);
        writeFileSync(conf, [`port ${p}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor tgm 127.0.0.1 ${mport} 2`,
            'sentinel down-after-milliseconds tgm 1000', 'sentinel failover-timeout tgm 3000', 'sentinel parallel-syncs tgm 1', ''].join('\n'));
        return spawnRedis([conf, '--sentinel']);
    });
    let g;
    try {
        await waitPong(['-p', String(mport)]);
        await waitPong(['-p', String(rport)]);
        for (const p of sports) await waitPong(['-p', String(p)]);
        // Ready for a failover: the replica in sync, every sentinel knowing it and the two others.
        assert.ok(await until(async () => /master_link_status:up/.test(await cli(['-p', String(rport), 'INFO', 'replication'])), 15000));
        for (const p of sports) {
            assert.ok(await until(async () =>
                (await cli(['-p', String(p), 'SENTINEL', 'replicas', 'tgm'])).includes(String(rport)) &&
                (await cli(['-p', String(p), 'SENTINEL', 'sentinels', 'tgm'])).split('\n').filter((l) => l === 'name').length === 2, 15000, 200),
            `sentinel ${p} sees the replica and the other sentinels`);
        }
        const url = `redis+sentinel://${sports.map((p) => `127.0.0.1:${p}`).join(',')}/tgm/0`;
        g = await startGateway({ redisUrl: url });
        assert.ok(await until(() => /ledger: connected to redis/.test(g.gw.log()), 10000), 'the ledger found the master');

        const N = 150;
        const load = send(g, N, 'failover', 3);
        await until(async () => (await ledgerTotals(['-p', String(mport)])).requests >= 40, 20000, 20);
        await master.stop('SIGKILL'); // while requests flow
        const bad = await load;
        assert.deepEqual(bad, [], 'no request failed during the failover');
        // The replica is promoted; the gateway asks the sentinels again and replays its journal there.
        assert.ok(await until(async () => /role:master/.test(await cli(['-p', String(rport), 'INFO', 'replication'])), 30000, 200),
            'the sentinels promoted the replica');
        const M = 30;
        assert.deepEqual(await send(g, M, 'after'), []);
        await assertExact(['-p', String(rport)], g, N + M);
        const r = await report('--redis', url, '--from', dayUtc(-1), '--to', dayUtc(0), '--format', 'json');
        assert.equal(r.code, 0, r.stderr);
        assert.equal(JSON.parse(r.stdout).total.requests, N + M, '`tollgate report` through the sentinels');
        const connects = g.gw.log().match(/ledger: connected to redis/g) ?? [];
        assert.ok(connects.length >= 4, `each worker's ledger connected twice: ${connects.length}`);
    } finally {
        await g?.stop();
        for (const s of sentinels) await s.stop();
        await replica.stop();
        await master.stop();
        rmSync(dir, { recursive: true, force: true });
    }
});

test('Redis absent when the gateway starts: requests are served, and once it starts every record lands once', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-e2e-redis-late-'));
    const port = await freePort(); // nothing listens there yet
    let g, redis;
    try {
        g = await startGateway({ redisUrl: `redis://localhost:${port}/0` });
        const N1 = 40;
        assert.deepEqual(await send(g, N1, 'early'), [], 'served without Redis');
        assert.match(g.gw.log(), /unavailable/, 'the ledger says Redis is away');
        redis = spawnRedis(['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]);
        await waitPong(['-p', String(port)]);
        const N2 = 20;
        assert.deepEqual(await send(g, N2, 'late'), []);
        await assertExact(['-p', String(port)], g, N1 + N2);

        // The same config with a TLS key and no cert: refused by check.
        const base = readFileSync(g.config, 'utf8');
        for (const [change, want] of [
            [(y) => y + 'redis_tls: { key: client.key }\n', /redis_tls key needs a cert/],
        ]) {
            const file = path.join(g.dir, 'bad.yaml');
            writeFileSync(file, change(base));
            const r = await execFileP(BIN, ['check', '-c', file]).then(() => ({ code: 0, stdout: '', stderr: '' }), (e) => e);
            assert.equal(r.code, 1);
            assert.match(r.stdout + r.stderr, want);
        }
    } finally {
        await g?.stop();
        await redis?.stop();
        rmSync(dir, { recursive: true, force: true });
    }
});
