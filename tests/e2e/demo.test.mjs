// demo.test.mjs — no silent simulation. Outside demo mode a provider whose key variable is
// not set is unusable: a request only it could serve is a 503 naming the variable, failover
// skips it with the reason in the attempt log, and /readyz is 503 while nothing is usable.
// `serve --demo` lets the simulator answer for it instead, and every such answer is marked:
// the x-tollgate-simulated header (streams too), the access log, the tg:events entry, and
// its usage in tg:usage-sim:{day}, which `tollgate report`, /admin/spend and the dashboard
// show apart from real spend. Also: the /metrics bearer token (metrics_token_env), and the
// shipped config files in demo mode answering every key tag routes.yaml uses, in English
// and Chinese.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync, readFileSync, openSync, closeSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
    BIN, REPO, REDIS_URL, KEY, ADMIN_TOKEN, PROVIDER_KEYS, startGateway, startSimulator, freePort, until, post,
    chatBody, readAllText, simStats, gatewayEnv, ledgerEvent,
} from './harness.mjs';
import { dbUrl, rcli, keyLines, report, dayUtc, micro } from './money.mjs';

const execFileP = promisify(execFile);
const sha256 = (s) => createHash('sha256').update(s).digest('hex');
const GHOST_ENV = 'TG_E2E_UNSET_GHOST_KEY';
const GHOST = `  ghost: { dialect: openai, base_url: https://api.ghost.example/v1, api_key_env: ${GHOST_ENV}, region: us }`;
const GHOST_PRICE = { 'ghost/ghost-1': { input: 3, cached_input: 3, output: 7 } };
const ROUTES = `routes:
  - name: ghost-first
    match: { model: ghost-first }
    strategy: ordered
    candidates: [ghost/ghost-1, deepseek/deepseek-flash]
  - name: ghost-only
    match: { model: ghost-only }
    candidates: [ghost/ghost-1]
`;
// Every provider key of the harness unset: nothing has a key.
const NO_KEYS = Object.fromEntries([...Object.keys(PROVIDER_KEYS), 'TG_E2E_VENDOR_KEY'].map((k) => [k, undefined]));

const gateways = [];
after(async () => {
    for (const g of gateways) await g.stop();
});
async function gateway(opts) {
    const g = await startGateway(opts);
    gateways.push(g);
    return g;
}


/** The gateway's access-log line of request `id`, parsed. */
async function accessLine(g, id) {
    let line;
    await until(() => {
        line = g.gw.log().split('\n').find((l) => l.includes(`"id":"${id}"`) && l.includes('"status"'));
        return line;
    }, 5000);
    assert.ok(line, `access log line of ${id}`);
    return JSON.parse(line.slice(line.indexOf('{')));
}

test('without --demo a keyless provider is unusable: 503 naming the variable, skipped on failover', async () => {
    const g = await gateway({ whenNoKey: false, extraProviders: GHOST, extraPrices: GHOST_PRICE, routes: ROUTES });
    assert.match(g.gw.log(), new RegExp(`provider 'ghost': ${GHOST_ENV} is not set; the provider is unusable`));

    for (const model of ['ghost/ghost-1', 'ghost-only']) {
        const r = await post(g, chatBody(model));
        assert.equal(r.status, 503, `${model}: ${r.text}`);
        assert.equal(r.json.error.code, 'no_usable_provider');
        assert.match(r.json.error.message, new RegExp(`provider 'ghost' has no key: set ${GHOST_ENV}`));
        assert.equal(r.headers.get('x-tollgate-simulated'), null);
    }
    // The Anthropic shape says the same.
    const a = await post(g, JSON.stringify({ model: 'ghost/ghost-1', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
        { 'anthropic-version': '2023-06-01' }, '/v1/messages');
    assert.equal(a.status, 503);
    assert.equal(a.json.type, 'error');
    assert.match(a.json.error.message, new RegExp(`set ${GHOST_ENV}`));

    // Failover skips it like an open circuit: the next candidate answers, for real.
    const ok = await post(g, chatBody('ghost-first'));
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.headers.get('x-tollgate-provider'), 'deepseek');
    assert.equal(ok.headers.get('x-tollgate-attempts'), '1');
    assert.equal(ok.headers.get('x-tollgate-simulated'), null, 'a real provider is not marked');
    // When the rest fail too, the attempt log says why the keyless one was not tried.
    const bad = await post(g, chatBody('ghost-first'), { 'x-sim-status': '500' });
    assert.equal(bad.status, 502);
    assert.match(bad.json.error.message, new RegExp(`ghost/ghost-1: skipped: provider 'ghost' has no key: set ${GHOST_ENV}`));
    assert.match(bad.json.error.message, /deepseek\/deepseek-flash: HTTP 500/);

    // Nothing was simulated: the simulator never saw a ghost request.
    assert.equal((await simStats(g.sim)).providers?.ghost, undefined);
    assert.equal((await fetch(`${g.url}/readyz`)).status, 200, 'other providers are usable');
});

test('/readyz is 503 while no provider is usable; serve --demo makes the simulator answer, marked', async () => {
    const g = await gateway({ whenNoKey: false, env: NO_KEYS, ready: '/healthz' });
    const rz = await fetch(`${g.url}/readyz`);
    assert.equal(rz.status, 503);
    assert.match(await rz.text(), /no usable provider/);
    const r = await post(g, chatBody('deepseek/deepseek-flash'));
    assert.equal(r.status, 503);
    assert.match(r.json.error.message, /provider 'deepseek' has no key: set TG_E2E_DEEPSEEK_KEY/);

    await g.restart({ demo: true, ready: '/readyz' });
    assert.match(g.gw.log(), /DEMO MODE/);
    assert.match(g.gw.log(), /simulated: .*deepseek \(TG_E2E_DEEPSEEK_KEY\)/);
    const d = await post(g, chatBody('deepseek/deepseek-flash'));
    assert.equal(d.status, 200, d.text);
    assert.equal(d.headers.get('x-tollgate-simulated'), 'true');
    assert.equal(d.headers.get('x-tollgate-provider'), 'deepseek');
    assert.equal(d.json.object, 'chat.completion');
    const id = d.headers.get('x-tollgate-request-id');
    const ev = await ledgerEvent(id, REDIS_URL);
    assert.equal(ev.simulated, '1', 'the ledger record says simulated');
    assert.equal(ev.provider, 'deepseek');
    const line = await accessLine(g, id);
    assert.equal(line.simulated, true, 'the access log says simulated');

    // A stream says it in its headers, before the first byte of the answer.
    const s = await fetch(`${g.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: chatBody('openai/gpt-4o-mini', { stream: true }),
    });
    assert.equal(s.status, 200);
    assert.equal(s.headers.get('x-tollgate-simulated'), 'true');
    assert.match(await readAllText(s), /data: \[DONE\]/);

    // The Anthropic dialect too.
    const a = await post(g, JSON.stringify({ model: 'anthropic/claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
        { 'anthropic-version': '2023-06-01' }, '/v1/messages');
    assert.equal(a.status, 200, a.text);
    assert.equal(a.headers.get('x-tollgate-simulated'), 'true');
});

test('simulated spend is reported apart and never added to real totals (report, /admin/spend, dashboard)', async () => {
    const DB = dbUrl(11);
    await rcli(DB, 'FLUSHDB');
    const K = { name: 'demo-spend', secret: 'tg-e2e-demo-spend-' + randomBytes(8).toString('hex') };
    // deepseek has a (dummy) key and points at the simulator: real traffic. ghost has none:
    // in demo mode the simulator answers for it, and that is simulated traffic.
    const g = await gateway({ demo: true, whenNoKey: false, redisUrl: DB, extraProviders: GHOST, extraPrices: GHOST_PRICE,
        routes: ROUTES, extraConfig: keyLines([K]) });
    const ask = async (model, n) => {
        const r = await post(g, chatBody(model, { max_tokens: 8 }), { authorization: `Bearer ${K.secret}`, 'x-sim-output-tokens': String(n) });
        assert.equal(r.status, 200, r.text);
        return r;
    };
    const real = await ask('deepseek/deepseek-flash', 5);
    assert.equal(real.headers.get('x-tollgate-simulated'), null);
    const sim1 = await ask('ghost/ghost-1', 6);
    const sim2 = await ask('ghost-only', 7);
    assert.equal(sim1.headers.get('x-tollgate-simulated'), 'true');
    assert.equal(sim2.headers.get('x-tollgate-simulated'), 'true');
    const usd = (r) => micro(Number(r.headers.get('x-tollgate-cost-usd')));
    const realCost = usd(real), simCost = usd(sim1) + usd(sim2);
    assert.ok(realCost > 0 && simCost > 0);

    // The day hashes: real in tg:usage, simulated in tg:usage-sim, each alone.
    const field = (p, m, metric) => `${p}|${m}|${K.name}|${metric}`;
    await until(async () => Number(await rcli(DB, 'HGET', `tg:usage-sim:${dayUtc()}`, field('ghost', 'ghost-1', 'requests'))) === 2);
    assert.equal(await rcli(DB, 'HGET', `tg:usage:${dayUtc()}`, field('ghost', 'ghost-1', 'requests')), '');
    assert.equal(Number(await rcli(DB, 'HGET', `tg:usage:${dayUtc()}`, field('deepseek', 'deepseek-flash', 'cost_micro_usd'))), realCost);
    assert.equal(Number(await rcli(DB, 'HGET', `tg:usage-sim:${dayUtc()}`, field('ghost', 'ghost-1', 'cost_micro_usd'))), simCost);
    assert.equal(Number(await rcli(DB, 'GET', `tg:spend:{${K.name}}:${dayUtc().slice(0, 7)}`)), realCost, 'budgets see real spend only');

    const args = ['--redis', DB, '--from', dayUtc(-1), '--to', dayUtc(0)];
    const j = await report(...args, '--by', 'provider', '--format', 'json');
    assert.equal(j.code, 0, j.stderr);
    const json = JSON.parse(j.stdout);
    assert.deepEqual(json.rows.map((r) => r.provider), ['deepseek']);
    assert.equal(json.total.requests, 1);
    assert.equal(micro(json.total.cost_usd), realCost, 'the real total is exactly the real spend');
    assert.deepEqual(json.simulated.rows.map((r) => r.provider), ['ghost']);
    assert.equal(json.simulated.total.requests, 2);
    assert.equal(micro(json.simulated.total.cost_usd), simCost);

    const csv = (await report(...args, '--format', 'csv')).stdout.trim().split('\n');
    const total = csv.findIndex((l) => l.startsWith('TOTAL,'));
    assert.ok(total > 0);
    assert.match(csv[total], /^TOTAL,1,/);
    assert.match(csv.at(-2), /^simulated:ghost,2,/);
    assert.match(csv.at(-1), /^SIMULATED_TOTAL,2,/);
    const table = (await report(...args)).stdout;
    assert.match(table, /^TOTAL\s+1\s/m);
    assert.match(table, /^simulated \(demo mode/m);
    assert.match(table, /^SIMULATED\s+2\s/m);

    const admin = await fetch(`${g.url}/admin/spend?from=${dayUtc(-1)}&to=${dayUtc(0)}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(admin.status, 200);
    assert.deepEqual(await admin.json(), json, '/admin/spend is the report');

    const dash = await (await fetch(`${g.url}/dashboard?token=${ADMIN_TOKEN}`)).text();
    const totalUsd = dash.match(/id="total-usd">\$([0-9.]+)</)[1];
    assert.equal(micro(Number(totalUsd)), realCost, 'the dashboard headline is real spend');
    assert.match(dash, /<section id="simulated"><h2>Simulated \(demo mode\)/);
    const simTable = dash.slice(dash.indexOf('id="simulated-totals"'));
    assert.match(simTable, /<td>ghost<\/td><td>2<\/td>/);
    assert.doesNotMatch(dash.slice(0, dash.indexOf('id="simulated"')), /<td>ghost<\/td>/, 'no simulated row among the real ones');
});

test('metrics_token_env: /metrics wants the bearer token, compared whole', async () => {
    const token = 'tg-e2e-metrics-' + randomBytes(8).toString('hex');
    const g = await gateway({ extraConfig: 'metrics_token_env: TG_E2E_METRICS_TOKEN\n', env: { TG_E2E_METRICS_TOKEN: token } });
    const get = (auth) => fetch(`${g.url}/metrics`, { headers: auth === undefined ? {} : { authorization: auth } });
    for (const auth of [undefined, 'Bearer', 'Bearer wrong', `Bearer ${token}x`, `Bearer ${token.slice(0, -1)}`, token, `Basic ${token}`]) {
        const r = await get(auth);
        assert.equal(r.status, 401, `${auth}`);
        assert.match(r.headers.get('www-authenticate'), /^Bearer/);
        assert.equal((await r.json()).error.code, 'invalid_metrics_token');
    }
    const ok = await get(`Bearer ${token}`);
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /^# (HELP|TYPE) /m);
    assert.doesNotMatch(g.gw.log(), new RegExp(token), 'the token is never logged');

    // Named but not set: closed to everyone, with a warning at load.
    await g.restart({ env: {} });
    assert.match(g.gw.log(), /metrics_token_env: TG_E2E_METRICS_TOKEN is not set; GET \/metrics answers 401/);
    assert.equal((await get(`Bearer ${token}`)).status, 401);
    assert.equal((await get(undefined)).status, 401);
    // Not named: open, as before.
    await g.restart({ extraConfig: '' });
    assert.equal((await get(undefined)).status, 200);
});

// ---- the shipped config files ----

const SHIPPED = path.join(REPO, 'config');

/**
 * config/tollgate.yaml as shipped, with only what a test must change: the listen address,
 * workers, Redis, the journal, the simulator's URL (the test's own simulator, not started
 * in-process), the includes' paths (the shipped routes.yaml and prices.yaml), plus keys.
 */
function shippedConfig({ port, simUrl, dir, keys }) {
    const text = readFileSync(path.join(SHIPPED, 'tollgate.yaml'), 'utf8');
    const sub = (re, to) => {
        assert.match(text, re, `config/tollgate.yaml has ${re}`);
        return (t) => t.replace(re, to);
    };
    const edits = [
        sub(/^listen: .*$/m, `listen: 127.0.0.1:${port}`),
        sub(/^workers: .*$/m, 'workers: 1'),
        sub(/^redis: .*$/m, `redis: ${REDIS_URL}`),
        sub(/^journal: .*$/m, `journal: ${path.join(dir, 'journal')}`),
        sub(/^include: .*$/m, `include: [${path.join(SHIPPED, 'routes.yaml')}, ${path.join(SHIPPED, 'prices.yaml')}]`),
        sub(/^( {2}url: ).*$/m, `$1${simUrl}`),
        sub(/^( {2}embedded: )true/m, '$1false'),
    ];
    let out = edits.reduce((t, f) => f(t), text);
    out += keys.map((k) => `  - { name: ${k.name}, sha256: "${sha256(k.secret)}", tags: [${k.tags.join(', ')}] }\n`).join('');
    return out;
}

test('the shipped config is production-safe: when_no_key false, nothing simulated without --demo', async () => {
    const text = readFileSync(path.join(SHIPPED, 'tollgate.yaml'), 'utf8');
    assert.match(text, /^simulator:\n(?: {2}.*\n)*? {2}when_no_key: false\b/m, 'simulator.when_no_key: false');
    const env = gatewayEnv(NO_KEYS);
    const { stdout } = await execFileP(BIN, ['check', '-c', path.join(SHIPPED, 'tollgate.yaml')], { env });
    assert.match(stdout, /provider 'openai': OPENAI_API_KEY is not set; the provider is unusable/);
    assert.doesNotMatch(stdout, /calls go to the simulator/);
});

test('shipped routes in demo mode: every key tag routes.yaml uses gets a 200 for English and Chinese', async () => {
    const routes = readFileSync(path.join(SHIPPED, 'routes.yaml'), 'utf8');
    const tags = [...new Set([...routes.matchAll(/key_tag:\s*["']?([\w.-]+)/g)].map((m) => m[1]))];
    assert.ok(tags.length > 0, 'routes.yaml matches on key tags');
    // The residency rule binds before any rule a prompt could match.
    const first = routes.search(/^\s*- name:/m);
    assert.match(routes.slice(first), /^\s*- name: eu-tenants\s*\n\s*match: \{ key_tag: eu-only \}/, 'eu-tenants is the first rule');
    const keys = [...tags.map((t) => ({ name: `tag-${t}`, secret: `tg-e2e-tag-${t}-${randomBytes(6).toString('hex')}`, tags: [t] })),
        { name: 'untagged', secret: 'tg-e2e-untagged-' + randomBytes(6).toString('hex'), tags: [] }];

    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-e2e-demo-shipped-'));
    const sim = await startSimulator(dir);
    const port = await freePort();
    const config = path.join(dir, 'tollgate.yaml');
    writeFileSync(config, shippedConfig({ port, simUrl: sim.url, dir, keys }));
    const fd = openSync(path.join(dir, 'gateway.log'), 'a');
    const gw = spawn(BIN, ['serve', '--demo', '-c', config], { cwd: dir, env: gatewayEnv(NO_KEYS), stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const exited = new Promise((resolve) => gw.on('exit', (code, sig) => resolve({ code, sig })));
    const log = () => readFileSync(path.join(dir, 'gateway.log'), 'utf8');
    try {
        const up = await until(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, 20000);
        assert.ok(up, `gateway not ready; log:\n${log().slice(-3000)}`);
        const prompts = { en: 'Explain in three short sentences why the sky is blue.', zh: '请用三句话解释为什么天空是蓝色的。' };
        for (const k of keys) {
            for (const [lang, text] of Object.entries(prompts)) {
                const r = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
                    method: 'POST',
                    headers: { authorization: `Bearer ${k.secret}`, 'content-type': 'application/json' },
                    body: JSON.stringify({ model: 'auto', max_tokens: 16, messages: [{ role: 'user', content: text }] }),
                });
                const body = await r.text();
                assert.equal(r.status, 200, `${k.name} ${lang}: ${body}`);
                assert.equal(r.headers.get('x-tollgate-simulated'), 'true', `${k.name} ${lang}`);
                assert.equal(JSON.parse(body).object, 'chat.completion');
                if (k.tags.includes('eu-only')) {
                    assert.equal(r.headers.get('x-tollgate-route'), 'eu-tenants', `${k.name} ${lang}`);
                    assert.match(r.headers.get('x-tollgate-provider'), /^(openai|anthropic)$/, 'residency holds');
                }
                if (k.tags.length === 0)
                    assert.equal(r.headers.get('x-tollgate-route'), lang === 'zh' ? 'chinese-cheap' : 'default');
            }
        }
    } finally {
        gw.kill('SIGTERM');
        assert.deepEqual(await exited, { code: 0, sig: null });
        await sim.stop();
        if (!process.env.TG_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
    }
});
