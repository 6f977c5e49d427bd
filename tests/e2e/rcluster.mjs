// rcluster.mjs — a real Redis Cluster of a test's own on free loopback ports: N masters with R
// replicas each (redis-server --cluster-enabled, joined by `redis-cli --cluster create`), in a
// temp dir; helpers to look at it (slot owners, CLUSTER KEYSLOT, keys per master), to fail a
// master over (gracefully through its replica, or by SIGKILL), and to stop every process.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, until } from './harness.mjs';

const execFileP = promisify(execFile);

/** redis-cli ARGS (raw output, trimmed); throws on a non-zero exit. */
export async function rcli(port, ...args) {
    const { stdout } = await execFileP('redis-cli', ['-h', '127.0.0.1', '-p', String(port), '--raw', ...args],
        { timeout: 5000 });
    return stdout.trim();
}

/** Several commands on one connection (redis-cli reading stdin); resolves its raw output, trimmed. */
export function rcliScript(port, commands) {
    return new Promise((resolve, reject) => {
        const child = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(port), '--raw'], { stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.on('error', reject);
        child.on('close', () => {
            clearTimeout(t);
            resolve(out.trim());
        });
        child.stdin.end(commands.map((c) => c.join(' ') + '\n').join(''));
    });
}

/** Why this machine cannot make a cluster (redis-cli without --cluster, no redis-server), or null. */
export async function clusterUnsupported() {
    try {
        await execFileP('redis-server', ['--version']);
    } catch {
        return 'redis-server is not installed';
    }
    try {
        const { stdout, stderr } = await execFileP('redis-cli', ['--cluster', 'help'], { timeout: 5000 });
        if (!/create/.test(stdout + stderr)) return 'redis-cli has no --cluster (redis-cli 5 or later needed)';
    } catch (e) {
        if (!/create/.test(`${e.stdout}${e.stderr}`)) return 'redis-cli has no --cluster (redis-cli 5 or later needed)';
    }
    return null;
}

/** The major version of redis-server. */
async function serverMajor() {
    const { stdout } = await execFileP('redis-server', ['--version']);
    return Number(stdout.match(/v=(\d+)/)?.[1] ?? 0);
}

/** Whether nothing listens on loopback port `port` now. */
function portFree(port) {
    return new Promise((resolve) => {
        const s = net.createServer();
        s.once('error', () => resolve(false));
        s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
}

/** The CLUSTER NODES lines of the node at `port`, parsed. */
export async function clusterNodes(port) {
    return (await rcli(port, 'CLUSTER', 'NODES')).split('\n').filter(Boolean).map((l) => {
        const f = l.split(' ');
        return {
            id: f[0], port: Number(f[1].split(':')[1].split('@')[0]), flags: f[2].split(','), master: f[3],
            state: f[7], slots: f.slice(8),
        };
    });
}

/**
 * Starts a cluster: `masters` masters, `replicas` replicas of each, node timeout `nodeTimeout`
 * ms, no persistence, each node in a directory of its own under one temp dir (its log beside
 * them). Resolves once every node says cluster_state:ok and agrees on the same masters, and every
 * master's replicas take its writes (waitHealthy). Returns { ports, dir, seeds(k), cli(port, ...),
 * masters(), replicasOf(port), ownerOf(slot), keyslot(name), keyOn(port), kill(port, sig),
 * start(port), freeze(port), thaw(port), alive(), healthy(n), streaming(), waitHealthy(n), stop() }.
 */
export async function startCluster({ masters = 3, replicas = 1, nodeTimeout = 1000 } = {}) {
    const n = masters * (1 + replicas);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-e2e-cluster-'));
    const ports = [];
    const bus = [];
    // Each node's cluster bus port: one of its own (cluster-port, Redis 7), else the fixed port +
    // 10000, which must then be free and at most 65535.
    const ownBus = (await serverMajor()) >= 7;
    while (ports.length < n) {
        const p = await freePort();
        const b = ownBus ? await freePort() : p + 10000;
        if (p === b || [...ports, ...bus].some((x) => x === p || x === b)) continue;
        if (!ownBus && (b > 65535 || !(await portFree(b)))) continue;
        ports.push(p);
        bus.push(b);
    }
    const procs = new Map();
    const c = { ports, dir };
    c.start = async (port) => {
        const i = ports.indexOf(port);
        const nd = path.join(dir, String(port));
        const args = ['--bind', '127.0.0.1', '--port', String(port), '--cluster-enabled', 'yes',
            ...(ownBus ? ['--cluster-port', String(bus[i])] : []), '--cluster-config-file', 'nodes.conf',
            '--cluster-node-timeout', String(nodeTimeout), '--appendonly', 'no', '--save', '',
            '--repl-diskless-sync-delay', '0',
            '--dir', nd, '--logfile', path.join(dir, `redis-${port}.log`), '--daemonize', 'no'];
        await execFileP('mkdir', ['-p', nd]);
        const proc = spawn('redis-server', args, { stdio: 'ignore' });
        const exited = new Promise((res) => proc.on('exit', res));
        procs.set(port, { proc, exited });
        const ok = await until(async () => (await rcli(port, 'PING')) === 'PONG', 10000);
        if (!ok) throw new Error(`redis-server on ${port} did not start`);
    };
    /** SIGKILL (or `sig`, then SIGKILL after 5 s) of the node on `port`, waiting for it to exit. */
    c.kill = async (port, sig = 'SIGKILL') => {
        const p = procs.get(port);
        if (p && p.proc.exitCode === null && p.proc.signalCode === null) {
            p.proc.kill(sig);
            if (sig !== 'SIGKILL') p.proc.kill('SIGCONT'); // a frozen node acts on SIGTERM once thawed
            const t = setTimeout(() => p.proc.kill('SIGKILL'), 5000);
            await p.exited;
            clearTimeout(t);
        }
        procs.delete(port);
    };
    c.alive = () => [...procs.keys()];
    /** SIGSTOP / SIGCONT of the node on `port`: frozen, it neither answers nor replicates. */
    c.freeze = (port) => procs.get(port).proc.kill('SIGSTOP');
    c.thaw = (port) => procs.get(port).proc.kill('SIGCONT');
    c.cli = rcli;
    c.stop = async () => {
        for (const port of [...procs.keys()]) await c.kill(port, 'SIGTERM');
        if (!process.env.TG_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
    };
    try {
        await Promise.all(ports.map((p) => c.start(p)));
        await execFileP('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`),
            '--cluster-replicas', String(replicas), '--cluster-yes'], { timeout: 60000 });
    } catch (e) {
        await c.stop();
        throw new Error(`could not make the cluster: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }

    /** The live masters as the node on `via` sees them: [{ port, id, ranges: [[lo, hi]…] }]. */
    c.masters = async (via = c.alive()[0]) => (await clusterNodes(via))
        .filter((x) => x.flags.includes('master') && !x.flags.includes('fail') && x.slots.length)
        .map((x) => ({
            port: x.port, id: x.id,
            ranges: x.slots.filter((s) => !s.startsWith('[')).map((s) => s.split('-').map(Number))
                .map(([lo, hi]) => [lo, hi ?? lo]),
        }));
    /** The port of the master serving `slot`. */
    c.ownerOf = async (slot, via) => (await c.masters(via)).find((m) => m.ranges.some(([lo, hi]) => slot >= lo && slot <= hi))?.port;
    /** The ports of the replicas of the master on `port`. */
    c.replicasOf = async (port, via = c.alive()[0]) => {
        const nodes = await clusterNodes(via);
        const m = nodes.find((x) => x.port === port);
        return nodes.filter((x) => x.master === m?.id && !x.flags.includes('fail')).map((x) => x.port);
    };
    c.keyslot = async (name) => Number(await rcli(c.alive()[0], 'CLUSTER', 'KEYSLOT', name));
    /**
     * Healthy: every live node says cluster_state:ok and names the same masters, which cover the
     * 16384 slots, and every live replica's link to its master is up, as both ends see it
     * (`replicasPerMaster` replicas each, when given). See also streaming().
     */
    c.healthy = async (replicasPerMaster) => {
        const views = [];
        for (const port of c.alive()) {
            if (!/cluster_state:ok/.test(await rcli(port, 'CLUSTER', 'INFO'))) return false;
            const info = await rcli(port, 'INFO', 'replication');
            if (/role:slave/.test(info) && !/master_link_status:up/.test(info)) return false;
            if (/role:master/.test(info) && /^slave\d+:/m.test(info) && /^slave\d+:.*state=(?!online)/m.test(info)) return false;
            views.push((await c.masters(port)).map((m) => `${m.port}:${m.ranges.join(';')}`).sort().join(' '));
        }
        if (new Set(views).size !== 1) return false;
        const ms = await c.masters();
        const covered = ms.flatMap((m) => m.ranges).reduce((s, [lo, hi]) => s + hi - lo + 1, 0);
        if (covered !== 16384) return false;
        if (replicasPerMaster !== undefined) {
            for (const m of ms) if ((await c.replicasOf(m.port)).length !== replicasPerMaster) return false;
        }
        return true;
    };
    /**
     * True once every live master's replicas have acknowledged a write made on it now (WAIT): a
     * replica that just finished a full sync is "online" at once, but its master streams writes
     * to it only from the replica's first REPLCONF ACK (up to a second later), and a write made
     * before that is on the master alone.
     */
    c.streaming = async () => {
        for (const m of await c.masters()) {
            const n = (await c.replicasOf(m.port)).length;
            if (!n) continue;
            const probe = await c.keyOn(m.port);
            const out = await rcliScript(m.port, [['SET', probe, String(Date.now())], ['WAIT', String(n), '1000']]);
            if (Number(out.split('\n').at(-1)) !== n) return false;
        }
        return true;
    };
    const probes = new Map();
    /** A key name (with its own hash tag) in a slot the master on `port` serves. */
    c.keyOn = async (port) => {
        const known = probes.get(port);
        if (known && (await c.ownerOf(await c.keyslot(known))) === port) return known;
        for (let i = 0; i < 1000; i++) {
            const name = `{tg-e2e-probe-${i}}`;
            if ((await c.ownerOf(await c.keyslot(name))) === port) {
                probes.set(port, name);
                return name;
            }
        }
        throw new Error(`no key name found for the master on ${port}`);
    };
    c.waitHealthy = async (replicasPerMaster, ms = 30000) => {
        if (!(await until(async () => (await c.healthy(replicasPerMaster)) && (await c.streaming()), ms, 200))) {
            const state = [];
            for (const port of c.alive()) state.push(`${port}: ${await rcli(port, 'CLUSTER', 'NODES').catch((e) => e.message)}`);
            throw new Error(`the cluster did not become healthy within ${ms} ms:\n${state.join('\n')}`);
        }
    };
    /** Seed list of the first `k` ports, for a redis+cluster:// URL. */
    c.seeds = (k = 2) => ports.slice(0, k).map((p) => `127.0.0.1:${p}`).join(',');
    try {
        await c.waitHealthy(replicas);
    } catch (e) {
        await c.stop();
        throw e;
    }
    return c;
}

/** Every key matching `pattern` on the node at `port` (SCAN, so it never blocks the node). */
export async function scanKeys(port, pattern) {
    const out = [];
    let cursor = '0';
    do {
        const lines = (await rcli(port, 'SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000')).split('\n');
        cursor = lines[0];
        out.push(...lines.slice(1).filter(Boolean));
    } while (cursor !== '0');
    return out;
}
