// harness.mjs — starts what an end-to-end test drives: the simulated providers
// (`tollgate simulate`), and a gateway (`tollgate serve`) on a private config
// written to a temp dir, with a private Redis started by tools/run-e2e.sh
// (TG_REDIS_URL). Everything listens on free loopback ports. Also small
// clients the SDKs cannot be: raw HTTP over a socket, SSE text, Redis.
import { spawn, execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, openSync, closeSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

export const BIN = process.env.TOLLGATE_BIN;
if (!BIN) throw new Error('TOLLGATE_BIN is not set: run the suite with `make e2e`');
export const REDIS_URL = process.env.TG_REDIS_URL || 'redis://127.0.0.1:6379/0';
export const REDIS_PORT = Number(process.env.TG_REDIS_PORT || 6379);
export const REPO = process.env.TG_REPO_ROOT || path.resolve(import.meta.dirname ?? '.', '../..');

// Secrets the gateway must never write to its logs (tests grep for them).
export const KEY = 'tg-e2e-' + randomBytes(12).toString('hex');
export const LEDGER_KEY = 'tg-e2e-ledger-' + randomBytes(12).toString('hex');
export const ADMIN_TOKEN = 'tg-e2e-admin-' + randomBytes(12).toString('hex');
export const VENDOR_SECRET = 'sk-e2e-vendor-' + randomBytes(12).toString('hex');
const sha256 = (s) => createHash('sha256').update(s).digest('hex');

// Prices of the test config, USD per 1M tokens. Whole micro-dollars per
// token and no time windows, so an expected cost is exact at any hour.
export const PRICES = {
    'deepseek/deepseek-flash': { input: 2, cached_input: 1, output: 3 },
    'qwen/qwen-plus': { input: 1, cached_input: 1, output: 2 },
    'openai/gpt-4o-mini': { input: 4, cached_input: 1, output: 8 },
    'anthropic/claude-haiku-4-5': { input: 1, cached_input: 1, output: 5 },
    'vendorx/vx-1': { input: 1, cached_input: 1, output: 1 },
};

/**
 * Expected cost in micro-USD of `usage` for target "provider/model", by the
 * billing rule of core/money.h: uncached input, cached input and output, each
 * at its own rate (the test prices are whole USD per 1M tokens, so a token
 * costs whole micro-USD and nothing is rounded).
 */
export function costMicro(target, { input, cached = 0, output }) {
    const p = PRICES[target];
    return (input - cached) * p.input + cached * p.cached_input + output * p.output;
}

/** A port nobody listens on right now (the kernel picks it). */
export function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

/** Polls fn() until it returns a truthy value or `ms` passes; returns the last value. */
export async function until(fn, ms = 10000, every = 50) {
    const end = Date.now() + ms;
    let v;
    for (;;) {
        try {
            v = await fn();
        } catch {
            v = undefined;
        }
        if (v || Date.now() > end) return v;
        await sleep(every);
    }
}

async function status(url) {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await r.arrayBuffer();
    return r.status;
}

// A child process whose output goes to a file; stop() sends SIGTERM and waits.
class Proc {
    constructor(name, args, opts, logFile) {
        this.logFile = logFile;
        const fd = openSync(logFile, 'a');
        this.child = spawn(BIN, args, { ...opts, stdio: ['ignore', fd, fd] });
        closeSync(fd);
        this.name = name;
        this.exited = new Promise((resolve) => this.child.on('exit', (code, sig) => resolve({ code, sig })));
        this.exitInfo = null;
        this.exited.then((e) => (this.exitInfo = e));
    }
    get pid() {
        return this.child.pid;
    }
    log() {
        try {
            return readFileSync(this.logFile, 'utf8');
        } catch {
            return '';
        }
    }
    async waitReady(url, ms = 20000) {
        const ok = await until(async () => this.exitInfo || (await status(url)) === 200, ms);
        if (ok !== true) {
            await this.stop();
            throw new Error(`${this.name} did not answer 200 on ${url}` +
                (this.exitInfo ? ` (exited ${JSON.stringify(this.exitInfo)})` : '') + `; log:\n${this.log().slice(-4000)}`);
        }
    }
    /** SIGTERM, then waits for exit (SIGKILL after `ms`). Returns {code, sig}. */
    async stop(ms = 10000) {
        if (this.exitInfo) return this.exitInfo;
        this.child.kill('SIGTERM');
        const t = setTimeout(() => this.child.kill('SIGKILL'), ms);
        const e = await this.exited;
        clearTimeout(t);
        return e;
    }
}

/** Starts `tollgate simulate --port P`. */
export async function startSimulator(dir) {
    const port = await freePort();
    const p = new Proc('simulator', ['simulate', '--port', String(port)], { cwd: dir }, path.join(dir, 'simulator.log'));
    p.port = port;
    p.url = `http://127.0.0.1:${port}`;
    await p.waitReady(`${p.url}/_sim/stats`);
    return p;
}

// Dummy keys of the standard providers: set in the gateway's environment, so those providers
// are "real" ones (never marked simulated) whose base_url is the simulator.
export const PROVIDER_KEYS = {
    TG_E2E_DEEPSEEK_KEY: 'sk-e2e-deepseek-dummy',
    TG_E2E_DASHSCOPE_KEY: 'sk-e2e-dashscope-dummy',
    TG_E2E_OPENAI_KEY: 'sk-e2e-openai-dummy',
    TG_E2E_ANTHROPIC_KEY: 'sk-e2e-anthropic-dummy',
};

function configYaml({ port, simUrl, dir, limits, redisUrl = REDIS_URL, extraProviders = '', keys = [], extraConfig = '', workers = 2, whenNoKey = true }) {
    const lim = { max_body_bytes: 1048576, upstream_connect_ms: 2000, first_byte_ms: 10000, idle_ms: 1500, ...limits };
    const prov = (name, dialect, url, env, region) =>
        `  ${name}: { dialect: ${dialect}, base_url: ${url}, api_key_env: ${env}, region: ${region} }`;
    return `# Written by tests/e2e/harness.mjs for one test file.
listen: 127.0.0.1:${port}
workers: ${workers}
redis: ${redisUrl}
admin_token_env: TOLLGATE_ADMIN_TOKEN
journal: ${path.join(dir, 'journal')}
limits: { ${Object.entries(lim).map(([k, v]) => `${k}: ${v}`).join(', ')} }
simulator: { url: "${simUrl}", when_no_key: ${whenNoKey}, embedded: false }
include: [routes.yaml, prices.yaml]
providers:
  # Providers with a (dummy) key whose base_url is the simulator: real providers as far as the
  # gateway knows (their spend is real spend), and x-sim-* headers reach them because their
  # URL is the simulator's. A provider whose key is unset is simulated only in demo mode
  # (when_no_key above, or serve --demo); else it is unusable.
${prov('deepseek', 'openai', `${simUrl}/deepseek/v1`, 'TG_E2E_DEEPSEEK_KEY', 'cn')}
${prov('qwen', 'openai', `${simUrl}/qwen/v1`, 'TG_E2E_DASHSCOPE_KEY', 'sg')}
${prov('openai', 'openai', `${simUrl}/openai/v1`, 'TG_E2E_OPENAI_KEY', 'us')}
${prov('anthropic', 'anthropic', `${simUrl}/anthropic`, 'TG_E2E_ANTHROPIC_KEY', 'us')}
  # A "real" OpenAI-compatible vendor with a key, which happens to be the simulator.
${prov('vendorx', 'openai', `${simUrl}/openai/v1`, 'TG_E2E_VENDOR_KEY', 'eu')}
${extraProviders}
keys:
  - { name: test, sha256: "${sha256(KEY)}" }
  - { name: ledger, sha256: "${sha256(LEDGER_KEY)}" }
${keys.map((k) => `  - { name: ${k.name}, sha256: "${sha256(k.secret)}", tags: [${(k.tags || []).join(', ')}] }\n`).join('')}${extraConfig}`;
}

const ROUTES = `routes:
  - name: e2e-route
    match: { model: e2e-route }
    strategy: ordered
    candidates: [openai/gpt-4o-mini, deepseek/deepseek-flash]
aliases: { deepseek: deepseek/deepseek-flash, mini: openai/gpt-4o-mini }
`;

function pricesYaml(extra = {}) {
    let s = 'prices:\n';
    for (const [id, p] of Object.entries({ ...PRICES, ...extra })) {
        s += `  ${id}: { input: ${p.input}, cached_input: ${p.cached_input}, output: ${p.output}, ` +
            `context: 131072, source: e2e test, as_of: ${todayUtc()} }\n`;
    }
    return s;
}

/** Environment of the gateway: no real provider keys, the admin token, the vendor key, the
 * standard providers' dummy keys, then `extra` (a value of undefined unsets a variable). */
export function gatewayEnv(extra = {}) {
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (/_API_KEY$|^TG_E2E_UNSET_/.test(k)) delete env[k];
    env.TOLLGATE_ADMIN_TOKEN = ADMIN_TOKEN;
    env.TG_E2E_VENDOR_KEY = VENDOR_SECRET;
    Object.assign(env, PROVIDER_KEYS);
    for (const [k, v] of Object.entries(extra)) {
        if (v === undefined) delete env[k];
        else env[k] = v;
    }
    return env;
}

/**
 * Starts a simulator and a gateway in front of it. Options: limits (merged
 * into the config's limits); redisUrl (default the suite's Redis);
 * extraProviders (YAML lines appended under providers:, two-space indent);
 * extraPrices (more PRICES entries); workers (default 2); keys (more
 * gateway keys: [{name, secret, tags}]); extraConfig (YAML appended at the
 * top level of tollgate.yaml); routes (replaces routes.yaml); extraPricesYaml
 * (YAML lines appended under prices:, e.g. entries with windows); whenNoKey (simulator.when_no_key,
 * default true); demo (start `serve --demo`); env (more environment variables, undefined to
 * unset one); ready (the path waited for, default /healthz). `config` is
 * the path of tollgate.yaml. Returns { port, url, base, sim, gw, dir,
 * stop(), restart(opts) }; restart starts a new gateway process on the same
 * port, directory and journal (opts as above, e.g. another redisUrl) after
 * the old one has exited.
 */
export async function startGateway(opts = {}) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-e2e-'));
    const sim = await startSimulator(dir);
    const port = await freePort();
    const writeConfig = (o) => {
        writeFileSync(path.join(dir, 'tollgate.yaml'), configYaml({ ...o, port, simUrl: sim.url, dir }));
        writeFileSync(path.join(dir, 'routes.yaml'), o.routes ?? ROUTES);
        writeFileSync(path.join(dir, 'prices.yaml'), pricesYaml(o.extraPrices) + (o.extraPricesYaml ?? ''));
    };
    const spawnGateway = async () => {
        const o = cur;
        const args = ['serve', '-c', path.join(dir, 'tollgate.yaml'), ...(o.demo ? ['--demo'] : [])];
        const p = new Proc('gateway', args, { cwd: dir, env: gatewayEnv(o.env) }, path.join(dir, 'gateway.log'));
        await p.waitReady(`${url}${o.ready ?? '/healthz'}`);
        return p;
    };
    const url = `http://127.0.0.1:${port}`;
    let cur = opts;
    writeConfig(opts);
    let gw;
    try {
        gw = await spawnGateway();
    } catch (e) {
        await sim.stop();
        throw e;
    }
    const g = {
        port, url, base: `${url}/v1`, sim, gw, dir, config: path.join(dir, 'tollgate.yaml'),
        async stop() {
            const e = await g.gw.stop();
            await sim.stop();
            if (!process.env.TG_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
            return e;
        },
        async restart(o = {}) {
            await g.gw.stop();
            cur = { ...opts, ...o };
            writeConfig(cur);
            g.gw = await spawnGateway();
            return g.gw;
        },
    };
    return g;
}

// ---- the simulator's own API ----

export async function simStats(sim) {
    const r = await fetch(`${sim.url}/_sim/stats`);
    return r.json();
}

/** GET /_sim/requests/ID -> {"state": "completed"|"cancelled"|"open", ...}, or null when unknown. */
export async function simRequest(sim, id) {
    const r = await fetch(`${sim.url}/_sim/requests/${encodeURIComponent(id)}`);
    if (r.status !== 200) return null;
    return r.json();
}

/** Polls the simulator until request `id` is no longer open; returns its last record. */
export async function simFinalState(sim, id, ms = 10000) {
    let last = null;
    await until(async () => {
        last = await simRequest(sim, id);
        return last && last.state !== 'open';
    }, ms);
    return last;
}

/** POST /_sim/config: per-provider knobs ({provider, ttft_ms, tps, fault_status, fault_percent, retry_after}). */
export async function simConfig(sim, knobs) {
    const r = await fetch(`${sim.url}/_sim/config`, { method: 'POST', body: JSON.stringify(knobs) });
    if (r.status !== 200) throw new Error(`/_sim/config ${JSON.stringify(knobs)}: ${r.status} ${await r.text()}`);
    return r.json();
}

/** `tollgate explain -c CONFIG [--key NAME]` of a request body (object): the decision as JSON. */
export async function explain(configPath, body, keyName) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-explain-'));
    const file = path.join(dir, 'request.json');
    writeFileSync(file, JSON.stringify(body));
    try {
        const args = ['explain', '-c', configPath, ...(keyName ? ['--key', keyName] : []), file];
        const { stdout } = await execFileP(BIN, args, { env: gatewayEnv() });
        return JSON.parse(stdout);
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}

/** The value of one Prometheus sample line of GET /metrics, or undefined. */
export async function metric(gw, name, labels) {
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    const want = `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}} `;
    const line = text.split('\n').find((l) => l.startsWith(want));
    return line === undefined ? undefined : Number(line.slice(want.length));
}

export function simId(tag) {
    return `${tag}-${Date.now()}-${randomBytes(4).toString('hex')}`;
}

// ---- plain HTTP helpers ----

export const chatBody = (model, extra = {}) =>
    JSON.stringify({ model, messages: [{ role: 'user', content: 'hello there' }], ...extra });

/** POST /v1/chat/completions with fetch; returns { status, headers, text, json }. */
export async function post(gw, body, headers = {}, pathName = '/v1/chat/completions') {
    const r = await fetch(gw.url + pathName, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
        body,
    });
    const text = await r.text();
    let json = null;
    try {
        json = JSON.parse(text);
    } catch {}
    return { status: r.status, headers: r.headers, text, json };
}

/** Reads a streamed body as text; a connection cut mid-body ends the text rather than throwing. */
export async function readAllText(response) {
    const dec = new TextDecoder();
    let text = '';
    try {
        for await (const chunk of response.body) text += dec.decode(chunk, { stream: true });
    } catch {
        // The gateway may close the connection after an error event; what arrived is what we assert on.
    }
    return text;
}

/** The data: payloads of an SSE text, in order, and its comment lines. */
export function sseParse(text) {
    const data = [];
    const comments = [];
    for (const block of text.split(/\r?\n\r?\n/)) {
        const lines = block.split(/\r?\n/);
        const d = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
        if (d.length) data.push(d.join('\n'));
        for (const l of lines) if (l.startsWith(':')) comments.push(l);
    }
    return { data, comments };
}

// ---- raw HTTP/1.1 over a socket ----

/** A socket to the gateway with a growing receive buffer and helpers to wait for bytes. */
export function rawConnect(port) {
    return new Promise((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1');
        sock.buf = Buffer.alloc(0);
        sock.gone = false;
        const waiters = new Set();
        const wake = () => {
            for (const w of waiters) w();
        };
        sock.on('data', (d) => {
            sock.buf = Buffer.concat([sock.buf, d]);
            wake();
        });
        sock.on('close', () => {
            sock.gone = true;
            wake();
        });
        sock.on('error', () => {});
        /** Resolves when pred(buf) is truthy or the socket closed, or rejects after ms. */
        sock.waitFor = (pred, ms = 10000) =>
            new Promise((res, rej) => {
                const check = () => {
                    const v = pred(sock.buf);
                    if (v || sock.gone) {
                        waiters.delete(check);
                        clearTimeout(t);
                        res(v);
                    }
                };
                const t = setTimeout(() => {
                    waiters.delete(check);
                    rej(new Error(`timed out waiting; got ${sock.buf.length} bytes: ${sock.buf.toString('latin1').slice(0, 300)}`));
                }, ms);
                waiters.add(check);
                check();
            });
        sock.once('connect', () => resolve(sock));
        sock.once('error', reject);
    });
}

/** Parses as many complete HTTP/1.1 responses as `buf` holds (chunked bodies decoded). */
export function parseResponses(buf) {
    const out = [];
    let off = 0;
    for (;;) {
        const end = buf.indexOf('\r\n\r\n', off);
        if (end < 0) break;
        const head = buf.subarray(off, end).toString('latin1').split('\r\n');
        const status = Number(head[0].split(' ')[1]);
        const headers = {};
        for (const l of head.slice(1)) {
            const i = l.indexOf(':');
            headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        let p = end + 4;
        let body;
        if (status === 100 || status === 101) {
            out.push({ status, headers, body: Buffer.alloc(0) });
            off = p;
            continue;
        }
        if ((headers['transfer-encoding'] || '').toLowerCase().includes('chunked')) {
            const parts = [];
            let done = false;
            for (;;) {
                const le = buf.indexOf('\r\n', p);
                if (le < 0) break;
                const size = parseInt(buf.subarray(p, le).toString('latin1'), 16);
                if (buf.length < le + 2 + size + 2) break;
                parts.push(buf.subarray(le + 2, le + 2 + size));
                p = le + 2 + size + 2;
                if (size === 0) {
                    done = true;
                    break;
                }
            }
            if (!done) break;
            body = Buffer.concat(parts);
        } else {
            const n = Number(headers['content-length'] || 0);
            if (buf.length < p + n) break;
            body = buf.subarray(p, p + n);
            p += n;
        }
        out.push({ status, headers, body, text: body.toString('utf8') });
        off = p;
    }
    return out;
}

/** Request text for a raw socket. */
export function rawRequest(method, pathName, { headers = {}, body = '' } = {}) {
    const h = { host: '127.0.0.1', authorization: `Bearer ${KEY}`, ...headers };
    if (body && !h['transfer-encoding'] && !('content-length' in h)) h['content-length'] = Buffer.byteLength(body);
    if (body) h['content-type'] ??= 'application/json';
    return `${method} ${pathName} HTTP/1.1\r\n` + Object.entries(h).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n' + body;
}

// ---- process memory ----

/** Resident set size of a process in kB (Linux /proc). */
export function rssKb(pid) {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : NaN;
}

// ---- Redis (through redis-cli, which run-e2e.sh already needs) ----

const execFileP = promisify(execFile);

export async function redis(...args) {
    const { stdout } = await execFileP('redis-cli', ['-u', REDIS_URL, '--no-raw', ...args]);
    return stdout;
}

/** The tg:events entry the gateway wrote for one request id, as an object of strings, from the Redis
 * at `url` (the suite's by default); waits up to 10 s for it and throws when it never came. */
export async function ledgerEvent(requestId, url = REDIS_URL) {
    let ev;
    await until(async () => {
        const { stdout } = await execFileP('redis-cli', ['-u', url, '--raw', 'XREVRANGE', 'tg:events', '+', '-', 'COUNT', '500']);
        const lines = stdout.trim().split('\n');
        let cur = null;
        for (let i = 0; i < lines.length; i++) {
            if (/^\d+-\d+$/.test(lines[i])) {
                if (cur && cur.id === requestId) break;
                cur = {};
                continue;
            }
            if (cur) cur[lines[i]] = lines[++i];
        }
        ev = cur && cur.id === requestId ? cur : undefined;
        return ev;
    }, 10000);
    if (!ev) throw new Error(`no tg:events entry for request ${requestId} in ${url}`);
    return ev;
}

/** HGETALL as an object of numbers (counters). */
export async function hgetallNumbers(key) {
    const { stdout } = await execFileP('redis-cli', ['-u', REDIS_URL, '--raw', 'HGETALL', key]);
    const lines = stdout.split('\n').filter((l) => l !== '');
    const o = {};
    for (let i = 0; i + 1 < lines.length; i += 2) o[lines[i]] = Number(lines[i + 1]);
    return o;
}

export function todayUtc() {
    return new Date().toISOString().slice(0, 10);
}

// ---- real clients: Codex CLI and Claude Code, offline ----

const E2E_DIR = path.join(REPO, 'tests/e2e');
/** Path of a client's executable installed by npm under tests/e2e/node_modules/.bin. */
export const clientBin = (name) => path.join(E2E_DIR, 'node_modules/.bin', name);

/**
 * Environment for a CLI client that must stay offline and leave no trace:
 * HOME and the XDG dirs inside `dir`; every proxy variable pointed at
 * `proxy` (default a loopback port nobody serves, so any attempt to reach
 * the internet fails at once; loopback is exempt); telemetry, error
 * reporting, update checks and nonessential traffic off. Only PATH is kept
 * from the test's own environment, so no real API key can leak in.
 */
export function offlineEnv(dir, extra = {}, proxy = 'http://127.0.0.1:9') {
    const d = (p) => {
        const full = path.join(dir, p);
        mkdirSync(full, { recursive: true });
        return full;
    };
    return {
        PATH: process.env.PATH,
        HOME: d('home'),
        XDG_CONFIG_HOME: d('xdg/config'),
        XDG_CACHE_HOME: d('xdg/cache'),
        XDG_DATA_HOME: d('xdg/data'),
        XDG_STATE_HOME: d('xdg/state'),
        TMPDIR: d('tmp'),
        HTTPS_PROXY: proxy, HTTP_PROXY: proxy, ALL_PROXY: proxy,
        https_proxy: proxy, http_proxy: proxy, all_proxy: proxy,
        NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost',
        DISABLE_TELEMETRY: '1', DISABLE_ERROR_REPORTING: '1', DISABLE_AUTOUPDATER: '1', DISABLE_BUG_COMMAND: '1',
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY: '1',
        DO_NOT_TRACK: '1', NO_COLOR: '1',
        ...extra,
    };
}

/** Runs `bin args` with stdin closed; resolves { code, signal, stdout, stderr } (kills it after ms). */
export function runClient(bin, args, { cwd, env, ms = 90000 }) {
    return new Promise((resolve) => {
        const child = spawn(bin, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        const t = setTimeout(() => child.kill('SIGKILL'), ms);
        child.on('close', (code, signal) => {
            clearTimeout(t);
            resolve({ code, signal, stdout, stderr });
        });
    });
}

/**
 * The config.toml of a Codex CLI whose only model provider is the gateway
 * at `baseUrl` (…/v1) over the Responses API, key in $TOLLGATE_KEY, model
 * `model`; no analytics, feedback, OpenTelemetry, update check or plugin
 * sync; never asks for approval; no retries (a failure shows at once).
 */
export function codexConfig(baseUrl, model, extra = '') {
    return `model = ${JSON.stringify(model)}
model_provider = "tollgate"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false
${extra}
[features]
plugins = false

[model_providers.tollgate]
name = "Tollgate"
base_url = ${JSON.stringify(baseUrl)}
env_key = "TOLLGATE_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 20000

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
log_user_prompt = false
`;
}

/**
 * `codex exec PROMPT` against `baseUrl` in a fresh CODEX_HOME and HOME under
 * a temp dir (removed afterwards unless TG_E2E_KEEP). Options: model,
 * extraConfig (TOML lines at the top level), args (more CLI arguments),
 * proxy. Resolves { code, stdout, stderr, dir }: stdout is the agent's last
 * message.
 */
export async function runCodex(baseUrl, key, prompt, { model = 'mini', extraConfig = '', args = [], proxy, ms } = {}) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-codex-'));
    try {
        const codexHome = path.join(dir, 'codex');
        const work = path.join(dir, 'work');
        mkdirSync(codexHome, { recursive: true });
        mkdirSync(work, { recursive: true });
        writeFileSync(path.join(codexHome, 'config.toml'), codexConfig(baseUrl, model, extraConfig));
        const env = offlineEnv(dir, { CODEX_HOME: codexHome, TOLLGATE_KEY: key, RUST_LOG: 'warn' }, proxy);
        const argv = ['exec', '--strict-config', '--skip-git-repo-check', '--ephemeral', '--color', 'never', ...args, prompt];
        return { ...(await runClient(clientBin('codex'), argv, { cwd: work, env, ms })), dir };
    } finally {
        if (!process.env.TG_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
    }
}

/**
 * `claude -p PROMPT` (Claude Code, no --model: its default models) against
 * `baseUrl` (the gateway root, no /v1) with ANTHROPIC_API_KEY = key, in a
 * fresh HOME. Resolves { code, stdout, stderr }.
 */
export async function runClaude(baseUrl, key, prompt, { args = [], proxy, ms, env: more = {} } = {}) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-claude-'));
    try {
        const work = path.join(dir, 'work');
        mkdirSync(work, { recursive: true });
        const env = offlineEnv(dir, { ANTHROPIC_BASE_URL: baseUrl, ANTHROPIC_API_KEY: key, ...more }, proxy);
        return await runClient(clientBin('claude'), ['-p', ...args, prompt], { cwd: work, env, ms });
    } finally {
        if (!process.env.TG_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
    }
}

/**
 * startGateway options for the client tests: the test routes plus the
 * "claude-*" alias (Claude Code asks for its own default model ids), a price
 * covering every anthropic/claude-* model, and (embeddings: true) an
 * embedding model, openai/text-embedding-3-small, priced by input only.
 */
export function clientsConfig({ embeddings = false } = {}) {
    return {
        routes: ROUTES.replace('aliases: {', 'aliases: { "claude-*": "anthropic/claude-*",'),
        extraPricesYaml:
            `  anthropic/claude-*: { input: 3, cached_input: 1, output: 15, context: 200000, source: e2e test, as_of: ${todayUtc()} }\n` +
            (!embeddings ? '' : `  openai/text-embedding-3-small: { input: 2, context: 8192, source: e2e test, as_of: ${todayUtc()} }\n`),
    };
}
