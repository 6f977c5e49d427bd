// money.mjs — helpers for the spend, quota and outage tests: a Redis database of their own
// (so report totals are theirs alone), gateway keys with budgets and limits, `tollgate
// report`, a private redis-server that a test may kill, and the simulator's billed totals.
import { spawn, execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { BIN, REDIS_URL, PRICES, freePort, until, simStats } from './harness.mjs';

const execFileP = promisify(execFile);
const sha256 = (s) => createHash('sha256').update(s).digest('hex');

/** The suite's Redis, database `n` (each test file uses its own and flushes it first). */
export function dbUrl(n) {
    return REDIS_URL.replace(/\/\d*$/, '') + `/${n}`;
}

export async function rcli(url, ...args) {
    const { stdout } = await execFileP('redis-cli', ['-u', url, '--raw', ...args]);
    return stdout.trim();
}

/**
 * YAML lines for more gateway keys with limits, appended to the harness's `keys:` list through
 * its extraConfig (which follows that list directly). keys: [{name, secret, rpm, tpm, budget}].
 */
export function keyLines(keys) {
    return keys.map((k) => {
        const extra = [
            k.rpm ? `rpm: ${k.rpm}` : '', k.tpm ? `tpm: ${k.tpm}` : '', k.budget ? `budget_usd_month: ${k.budget}` : '',
        ].filter(Boolean).join(', ');
        return `  - { name: ${k.name}, sha256: "${sha256(k.secret)}"${extra ? ', ' + extra : ''} }\n`;
    }).join('');
}

/** Runs `tollgate report ARGS`; resolves { code, stdout, stderr } whatever the exit code. */
export async function report(...args) {
    try {
        const { stdout, stderr } = await execFileP(BIN, ['report', ...args]);
        return { code: 0, stdout, stderr };
    } catch (e) {
        return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
}

export function dayUtc(offsetDays = 0) {
    return new Date(Date.now() + offsetDays * 86400000).toISOString().slice(0, 10);
}

/** `tollgate report --format json` over yesterday..today (a run may cross midnight). */
export async function reportJson(url, by = 'provider') {
    const r = await report('--redis', url, '--from', dayUtc(-1), '--to', dayUtc(0), '--by', by, '--format', 'json');
    if (r.code !== 0) throw new Error(`tollgate report exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
}

/** Micro-USD from a cost_usd number printed with six decimals. */
export const micro = (usd) => Math.round(usd * 1e6);

/** The simulator's billed totals per gateway provider name, with their cost at the test prices. */
export async function simBilled(sim, models, prices = PRICES) {
    const st = await simStats(sim);
    const out = {};
    for (const [prov, model] of Object.entries(models)) {
        const c = st.providers[prov] ?? { prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0, reasoning_tokens: 0 };
        const p = prices[`${prov}/${model}`];
        out[prov] = {
            input: c.prompt_tokens, cached: c.cached_tokens, output: c.completion_tokens, reasoning: c.reasoning_tokens,
            cost: (c.prompt_tokens - c.cached_tokens) * p.input + c.cached_tokens * p.cached_input + c.completion_tokens * p.output,
        };
    }
    return out;
}

/** A redis-server of a test's own on a free port (append-only, fsync always: a SIGKILL loses no acknowledged write). */
export async function startRedis() {
    const port = await freePort();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-e2e-own-redis-'));
    const r = { port, dir, url: `redis://127.0.0.1:${port}/0`, proc: null };
    r.start = async () => {
        r.proc = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'yes',
            '--appendfsync', 'always', '--dir', dir, '--logfile', path.join(dir, 'redis.log')], { stdio: 'ignore' });
        r.exited = new Promise((res) => r.proc.on('exit', res));
        const ok = await until(async () => (await rcli(r.url, 'PING')) === 'PONG', 10000);
        if (!ok) throw new Error('own redis-server did not start');
    };
    r.kill = async () => {
        r.proc.kill('SIGKILL');
        await r.exited;
    };
    r.stop = async () => {
        if (r.proc && r.proc.exitCode === null && r.proc.signalCode === null) {
            r.proc.kill('SIGTERM');
            await r.exited;
        }
        rmSync(dir, { recursive: true, force: true });
    };
    await r.start();
    return r;
}
