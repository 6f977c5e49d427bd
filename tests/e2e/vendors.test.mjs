// vendors.test.mjs — the OpenAI-compatible vendors of the shipped
// config/tollgate.yaml (Qwen CN and US, Kimi, GLM, MiniMax, StepFun, Hunyuan,
// MiMo, OpenRouter) answer through the simulator in demo mode. The gateway
// runs on the shipped providers: section verbatim and includes the shipped
// routes.yaml and prices.yaml, with no price of its own: every priced vendor
// is reachable at the shipped price (a vendor whose models are not priced,
// Qwen US and Hunyuan, is a 404, never a $0 answer). It checks each vendor by
// direct provider/model, streamed or not, the cost header and the Redis
// ledger against the shipped prices.yaml figures, region rules, the shipped
// chinese-cheap rule with failover, and docs/policy.md's openrouter-backup.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync, readFileSync, openSync, closeSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import {
    BIN, REPO, REDIS_URL, KEY, startSimulator, freePort, until, explain, simStats, simConfig, hgetallNumbers,
    todayUtc, readAllText, sseParse,
} from './harness.mjs';

const SHIPPED = path.join(REPO, 'config');
const EU_KEY = 'tg-e2e-vendors-eu-' + randomBytes(8).toString('hex');
// A key name of this file only: the suite shares one Redis, so ledger deltas are ours.
const KEY_NAME = 'vendors-e2e';
const sha256 = (s) => createHash('sha256').update(s).digest('hex');

/**
 * The shipped price of `provider/model` in config/prices.yaml: { input, cached_input, output } in USD
 * per 1M tokens. Reads the two forms that file uses (a block of `field: value` lines, or one flow
 * mapping line under the key); a missing entry or field fails the test rather than guessing.
 */
function shippedPrice(id) {
    const lines = readFileSync(path.join(SHIPPED, 'prices.yaml'), 'utf8').split('\n');
    const at = lines.indexOf(`  ${id}:`);
    assert.ok(at >= 0, `config/prices.yaml prices ${id}`);
    let body = '';
    for (let i = at + 1; i < lines.length && /^ {4}/.test(lines[i]); i++) body += lines[i] + '\n';
    const num = (f) => {
        const m = body.match(new RegExp(`(?:^|[\\s{,])${f}: ([0-9.]+)`, 'm'));
        return m ? Number(m[1]) : undefined;
    };
    const input = num('input'), output = num('output');
    assert.ok(input > 0 && output > 0, `${id}: input and output prices in config/prices.yaml`);
    return { input, cached_input: num('cached_input') ?? input, output };
}

// One model per vendor the shipped prices.yaml prices, at that price.
const MODELS = Object.fromEntries(Object.entries({
    'qwen-cn': 'qwen-plus',
    kimi: 'kimi-k2.6',
    glm: 'glm-4.7',
    minimax: 'MiniMax-M2.7',
    stepfun: 'step-3.5-flash',
    mimo: 'mimo-v2-flash',
    openrouter: 'openai/gpt-4o-mini',
}).map(([v, model]) => [v, { model, ...shippedPrice(`${v}/${model}`) }]));
const VENDORS = Object.keys(MODELS);
// Configured vendors the shipped prices.yaml leaves unpriced, so unreachable.
const UNPRICED = { 'qwen-us': 'qwen-plus', hunyuan: 'hunyuan-turbos-latest' };

/** Expected cost in pico-USD (10^-12) of a usage: a price per 1M tokens is micro-USD per token. */
const costPico = (v, u) => {
    const cached = u.prompt_tokens_details?.cached_tokens ?? 0;
    const p = MODELS[v];
    return Math.round(((u.prompt_tokens - cached) * p.input + cached * p.cached_input + u.completion_tokens * p.output) * 1e6);
};
/** A cost in USD as the gateway shows it (whole micro-dollars) against an exact cost in pico-USD. */
const near = (usd, pico) => Math.abs(usd * 1e12 - pico) <= 0.5e6 + 1;

/** The providers: section of the shipped tollgate.yaml, verbatim (up to the next top-level key). */
function shippedProviders() {
    const lines = readFileSync(path.join(SHIPPED, 'tollgate.yaml'), 'utf8').split('\n');
    const start = lines.findIndex((l) => /^providers:/.test(l));
    assert.ok(start >= 0, 'config/tollgate.yaml has a providers: section');
    let end = start + 1;
    while (end < lines.length && !/^[A-Za-z_]/.test(lines[end])) end++;
    return lines.slice(start, end).join('\n') + '\n';
}

// Routes reached by name, from the cookbook; in a file of their own, included after routes.yaml.
const NAMED_ROUTES = `routes:
  - name: openrouter-backup
    match: { model: openrouter-backup }
    strategy: ordered
    candidates: [openai/gpt-4o-mini, openrouter/openai/gpt-4o-mini]
`;

/** Environment of the gateway: no provider key at all, so every provider is simulated. */
function gatewayEnv() {
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (/_API_KEY$/.test(k)) delete env[k];
    return env;
}

let dir, sim, gw, port, client, configPath;

before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-e2e-vendors-'));
    sim = await startSimulator(dir);
    port = await freePort();
    writeFileSync(path.join(dir, 'named-routes.yaml'), NAMED_ROUTES);
    configPath = path.join(dir, 'tollgate.yaml');
    writeFileSync(configPath, `# Written by tests/e2e/vendors.test.mjs: the shipped providers and prices.
listen: 127.0.0.1:${port}
workers: 1
redis: ${REDIS_URL}
journal: ${path.join(dir, 'journal')}
limits: { max_attempts: 4, first_byte_ms: 10000 }
simulator: { url: "${sim.url}", when_no_key: true, embedded: false }
include: [${path.join(SHIPPED, 'routes.yaml')}, named-routes.yaml, ${path.join(SHIPPED, 'prices.yaml')}]
keys:
  - { name: ${KEY_NAME}, sha256: "${sha256(KEY)}" }
  - { name: vendors-eu, sha256: "${sha256(EU_KEY)}", tags: [eu-only] }
${shippedProviders()}`);
    const fd = openSync(path.join(dir, 'gateway.log'), 'a');
    gw = spawn(BIN, ['serve', '-c', configPath], { cwd: dir, env: gatewayEnv(), stdio: ['ignore', fd, fd] });
    closeSync(fd);
    gw.exited = new Promise((resolve) => gw.on('exit', (code, sig) => resolve({ code, sig })));
    const up = await until(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200, 20000);
    assert.ok(up, `gateway did not start; log:\n${readFileSync(path.join(dir, 'gateway.log'), 'utf8').slice(-3000)}`);
    client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: KEY, maxRetries: 0 });
});

after(async () => {
    if (gw && gw.exitCode === null) {
        gw.kill('SIGTERM');
        assert.deepEqual(await gw.exited, { code: 0, sig: null }, 'gateway exits 0 on SIGTERM');
    }
    await sim?.stop();
    if (dir && !process.env.TG_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
});

test('the shipped config passes check and reaches every priced vendor, no unpriced one', async () => {
    const shipped = path.join(SHIPPED, 'tollgate.yaml');
    const { stdout, stderr } = await promisify(execFile)(BIN, ['check', '-c', shipped], { env: gatewayEnv() });
    assert.doesNotMatch(stdout + stderr, /:\d+:\d+: (?!warning:)/, 'no FILE:LINE:COL errors');
    assert.match(stdout, /: ok \(/);
    // Explained on this file's config: the shipped providers and prices in demo mode, since
    // outside it a vendor without its key is unusable and explain drops it.
    const ask = (v, model) => explain(configPath, { model: `${v}/${model}`, messages: [{ role: 'user', content: 'hi' }] });
    for (const v of [...VENDORS, ...Object.keys(UNPRICED)]) {
        // Every vendor is configured, and is unusable while its key is unset (the shipped config
        // does not simulate).
        assert.match(stderr + stdout, new RegExp(`provider '${v}': [A-Z_]+_API_KEY is not set; the provider is unusable`));
    }
    for (const v of VENDORS) {
        // A priced model is known, with a cost estimate from its shipped price.
        const ex = await ask(v, MODELS[v].model);
        assert.equal(ex.status, 200, `${v}: ${ex.error}`);
        assert.equal(ex.route, 'direct');
        assert.ok(ex.candidates[0].est_cost_micro_usd > 0, `${v}: estimated cost`);
    }
    for (const [v, model] of Object.entries(UNPRICED)) {
        // With no price entry no model of the vendor is known: 404, never a $0 answer.
        const ex = await ask(v, model);
        assert.equal(ex.status, 404, `${v}: ${ex.error}`);
        assert.match(ex.error, /has no such model in the configuration/);
    }
});

test('each vendor answers a non-streamed chat by provider/model, priced and recorded in Redis', async () => {
    // Every vendor is simulated here (demo mode): its usage goes to the simulated day hash.
    const day = `tg:usage-sim:${todayUtc()}`;
    const before = await hgetallNumbers(day);
    const field = (v, m) => `${v}|${MODELS[v].model}|${KEY_NAME}|${m}`;
    const want = {};
    for (const v of VENDORS) {
        const { data, response } = await client.chat.completions
            .create({ model: `${v}/${MODELS[v].model}`, messages: [{ role: 'user', content: `hello ${v}` }] })
            .withResponse();
        const h = response.headers;
        assert.equal(h.get('x-tollgate-provider'), v);
        assert.equal(h.get('x-tollgate-model'), MODELS[v].model);
        assert.equal(h.get('x-tollgate-route'), 'direct');
        assert.equal(h.get('x-tollgate-attempts'), '1');
        assert.equal(h.get('x-tollgate-simulated'), 'true');
        assert.equal(data.object, 'chat.completion');
        assert.equal(data.model, MODELS[v].model);
        assert.equal(data.choices[0].message.role, 'assistant');
        assert.ok(data.choices[0].message.content.length > 0);
        assert.equal(data.choices[0].finish_reason, 'stop');
        assert.ok(data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0);
        const cost = Number(h.get('x-tollgate-cost-usd'));
        const pico = costPico(v, data.usage);
        assert.ok(cost > 0, `${v}: cost header ${h.get('x-tollgate-cost-usd')}`);
        assert.ok(near(cost, pico), `${v}: cost ${cost}, expected ${pico / 1e12}`);
        want[v] = { pico, prompt: data.usage.prompt_tokens, output: data.usage.completion_tokens };
    }
    let now;
    await until(async () => {
        now = await hgetallNumbers(day);
        return VENDORS.every((v) => (now[field(v, 'requests')] ?? 0) >= (before[field(v, 'requests')] ?? 0) + 1);
    }, 10000);
    for (const v of VENDORS) {
        const d = (m) => (now[field(v, m)] ?? 0) - (before[field(v, m)] ?? 0);
        assert.equal(d('requests'), 1, `${v}: one request in the ledger`);
        assert.equal(d('input_tokens'), want[v].prompt);
        assert.equal(d('output_tokens'), want[v].output);
        assert.ok(d('cost_micro_usd') > 0, `${v}: ledger cost ${d('cost_micro_usd')}`);
        assert.ok(Math.abs(d('cost_micro_usd') - want[v].pico / 1e6) <= 1, `${v}: ledger ${d('cost_micro_usd')} µUSD`);
    }
    // The simulator was called under each vendor's own name, in its flavour.
    const p = (await simStats(sim)).providers;
    for (const v of VENDORS) assert.ok(p[v]?.requests >= 1, `simulator saw ${v}`);
});

test('each vendor streams, with usage on request and the cost comment', async () => {
    for (const v of VENDORS) {
        const r = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
            body: JSON.stringify({
                model: `${v}/${MODELS[v].model}`, stream: true, stream_options: { include_usage: true },
                messages: [{ role: 'user', content: `stream ${v}` }],
            }),
        });
        assert.equal(r.status, 200);
        assert.equal(r.headers.get('x-tollgate-provider'), v);
        assert.match(r.headers.get('content-type') ?? '', /text\/event-stream/);
        const { data, comments } = sseParse(await readAllText(r));
        assert.equal(data.at(-1), '[DONE]', `${v}: stream ends with [DONE]`);
        const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
        assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
        const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
        assert.ok(text.length > 0, `${v}: streamed text`);
        const usage = chunks.find((c) => c.usage)?.usage;
        assert.ok(usage && usage.completion_tokens > 0, `${v}: usage chunk`);
        const tail = comments.find((c) => c.startsWith(': tollgate '));
        assert.ok(tail, `${v}: cost comment`);
        const cost = JSON.parse(tail.slice(': tollgate '.length)).cost_usd;
        assert.ok(cost > 0 && near(cost, costPico(v, usage)), `${v}: stream cost ${cost}`);
    }
});

test('Chinese prompts: the shipped chinese-cheap rule takes the cheapest of DeepSeek, Qwen, GLM and Kimi', async () => {
    const body = { model: 'auto', messages: [{ role: 'user', content: '请把这段话翻译成英文：今天天气很好。' }] };
    const ex = await explain(configPath, body);
    assert.equal(ex.route, 'chinese-cheap');
    assert.equal(ex.status, 200);
    // At the shipped prices DeepSeek (even at its peak), Qwen, GLM and Kimi cost more in that order.
    assert.deepEqual(ex.candidates.map((c) => [c.target, c.order, c.kept]), [
        ['deepseek/deepseek-flash', 1, true], ['qwen/qwen-plus', 2, true], ['glm/glm-4.7', 3, true], ['kimi/kimi-k2.6', 4, true],
    ]);
    const est = ex.candidates.map((c) => c.est_cost_micro_usd);
    assert.ok(est.every((e, i) => i === 0 || e >= est[i - 1]), `ascending estimates ${est}`);
    const send = async (headers = {}) => {
        const { response } = await client.chat.completions.create(body, { headers }).withResponse();
        const h = response.headers;
        return [h.get('x-tollgate-route'), h.get('x-tollgate-provider'), h.get('x-tollgate-attempts'), Number(h.get('x-tollgate-cost-usd')) > 0];
    };
    assert.deepEqual(await send(), ['chinese-cheap', 'deepseek', '1', true]);
    // Each failing before the first byte: the next cheapest answers, down to Kimi.
    try {
        await simConfig(sim, { provider: 'deepseek', fault_status: 503 });
        assert.deepEqual(await send(), ['chinese-cheap', 'qwen', '2', true]);
        await simConfig(sim, { provider: 'qwen', fault_status: 500 });
        assert.deepEqual(await send(), ['chinese-cheap', 'glm', '3', true]);
        await simConfig(sim, { provider: 'glm', fault_status: 502 });
        assert.deepEqual(await send(), ['chinese-cheap', 'kimi', '4', true]);
    } finally {
        for (const provider of ['deepseek', 'qwen', 'glm']) await simConfig(sim, { provider, fault_status: 0 });
    }
});

test('an eu-only key meets eu-tenants first and reaches no cn or region-less vendor', async () => {
    const eu = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: EU_KEY, maxRetries: 0 });
    const { response } = await eu.chat.completions
        .create({ model: 'auto', messages: [{ role: 'user', content: '请用中文回答：你好吗？' }] })
        .withResponse();
    assert.equal(response.headers.get('x-tollgate-route'), 'eu-tenants');
    assert.ok(['openai', 'anthropic'].includes(response.headers.get('x-tollgate-provider')));
    for (const v of ['qwen-cn', 'kimi', 'openrouter']) {
        const err = await eu.chat.completions
            .create({ model: `${v}/${MODELS[v].model}`, messages: [{ role: 'user', content: 'hi' }] })
            .then(() => null, (e) => e);
        assert.equal(err?.status, 403, `${v} is refused to an eu-only key`);
        assert.match(err.message, v === 'qwen-cn' ? /region cn is not in \[eu, us\]/ : /region \(none\) is not in \[eu, us\]/);
    }
});

test('openrouter-backup: OpenAI first, the same model through OpenRouter when OpenAI fails', async () => {
    const body = { model: 'openrouter-backup', messages: [{ role: 'user', content: 'hello' }] };
    const send = async () => {
        const { data, response } = await client.chat.completions.create(body).withResponse();
        const h = response.headers;
        assert.equal(data.object, 'chat.completion');
        return [h.get('x-tollgate-route'), h.get('x-tollgate-provider'), h.get('x-tollgate-model'), h.get('x-tollgate-attempts')];
    };
    assert.deepEqual(await send(), ['openrouter-backup', 'openai', 'gpt-4o-mini', '1']);
    await simConfig(sim, { provider: 'openai', fault_status: 502 });
    try {
        assert.deepEqual(await send(), ['openrouter-backup', 'openrouter', 'openai/gpt-4o-mini', '2']);
    } finally {
        await simConfig(sim, { provider: 'openai', fault_status: 0 });
    }
});
