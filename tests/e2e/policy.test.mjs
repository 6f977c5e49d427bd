// policy.test.mjs — the routing cookbook of docs/policy.md against the
// simulator: Chinese prompts to the cheaper of DeepSeek and Qwen, tools-capable
// models only, DeepSeek's discount window, cheapest with a fallback to Claude,
// EU residency; failover on 500/429/529/timeouts with x-tollgate-attempts, and
// the circuit breaker opening and recovering. One worker, so that the health
// a request sees is the health the previous ones left.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGateway, post, explain, simConfig, simStats, metric, KEY } from './harness.mjs';

const EU_KEY = 'tg-e2e-eu-' + Math.random().toString(36).slice(2);

// A UTC window around now (and one that is not): the test holds at any hour.
const hhmm = (min) => {
    const m = ((min % 1440) + 1440) % 1440;
    return `"${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}"`;
};
const nowMin = () => {
    const d = new Date();
    return d.getUTCHours() * 60 + d.getUTCMinutes();
};

const ROUTES = `routes:
  - name: eu-tenants
    match: { key_tag: eu-only }
    require: { region: [eu, us] }
    strategy: ordered
    candidates: [openai/gpt-4o-mini, vendorx/vx-1, deepseek/deepseek-flash, qwen/qwen-plus]
  - name: chinese-cheap
    match: { model: auto, language: zh }
    strategy: cheapest
    candidates: [deepseek/deepseek-flash, qwen/qwen-plus]
  - name: tools-capable
    match: { model: auto, has_tools: true }
    strategy: ordered
    candidates: [openai/gpt-4o-mini, anthropic/claude-haiku-4-5]
  - name: off-peak
    match: { model: off-peak }
    strategy: cheapest
    candidates: [qwen/qwen-plus, deepseek/deepseek-night]
  - name: peak
    match: { model: peak }
    strategy: cheapest
    candidates: [qwen/qwen-plus, deepseek/deepseek-later]
  - name: cheap-then-claude
    match: { model: auto }
    strategy: cheapest
    candidates: [deepseek/deepseek-flash, qwen/qwen-plus, anthropic/claude-haiku-4-5]
  - name: failover
    match: { model: failover }
    strategy: ordered
    candidates: [openai/gpt-4o-mini, deepseek/deepseek-flash, qwen/qwen-plus]
`;

function extraPrices() {
    const m = nowMin();
    // Dearer than Qwen (1/2 USD per Mtok) except inside its window.
    return `  deepseek/deepseek-night:
    input: 4
    output: 8
    windows: [{ from: ${hhmm(m - 60)}, to: ${hhmm(m + 60)}, input: 0.5, output: 1 }]
  deepseek/deepseek-later:
    input: 4
    output: 8
    windows: [{ from: ${hhmm(m + 120)}, to: ${hhmm(m + 180)}, input: 0.5, output: 1 }]
`;
}

const OPTS = () => ({
    workers: 1,
    routes: ROUTES,
    extraPricesYaml: extraPrices(),
    keys: [{ name: eu, secret: EU_KEY, tags: ['eu-only'] }],
    extraConfig: 'circuit: { failures: 2, cooldown_ms: 1000, max_cooldown_ms: 2000 }\n',
    limits: { first_byte_ms: 800 },
});
const eu = 'eu';

const ZH = '请用中文解释一下量子计算的基本原理和它的主要应用领域';
const body = (model, text = 'hello there', extra = {}) =>
    ({ model, messages: [{ role: 'user', content: text }], ...extra });
const send = (gw, b, key = KEY, headers = {}) =>
    post(gw, JSON.stringify(b), { authorization: `Bearer ${key}`, ...headers });
const routeOf = (r) => [r.status, r.headers.get('x-tollgate-route'), r.headers.get('x-tollgate-provider'),
    r.headers.get('x-tollgate-attempts')];
const TOOLS = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }];

async function clearFaults(sim) {
    for (const provider of ['openai', 'deepseek', 'qwen', 'anthropic'])
        await simConfig(sim, { provider, fault_status: 0, ttft_ms: null, retry_after: null });
}

describe('routing cookbook', () => {
    let gw;
    before(async () => {
        gw = await startGateway(OPTS());
    });
    after(async () => {
        await gw?.stop();
    });

    test('a Chinese prompt goes to the cheaper of DeepSeek and Qwen, the other is its failover', async () => {
        const ex = await explain(gw.config, body('auto', ZH));
        assert.equal(ex.request.language, 'zh');
        assert.equal(ex.route, 'chinese-cheap');
        assert.deepEqual(ex.candidates.map((c) => c.target), ['qwen/qwen-plus', 'deepseek/deepseek-flash']);
        assert.ok(Number(ex.candidates[0].est_cost_usd) < Number(ex.candidates[1].est_cost_usd));
        assert.deepEqual(routeOf(await send(gw, body('auto', ZH))), [200, 'chinese-cheap', 'qwen', '1']);
        // English text with the same model falls through to the next matching rule.
        assert.equal((await send(gw, body('auto', 'Explain quantum computing'))).headers.get('x-tollgate-route'),
            'cheap-then-claude');
        await simConfig(gw.sim, { provider: 'qwen', fault_status: 500 });
        try {
            assert.deepEqual(routeOf(await send(gw, body('auto', ZH))), [200, 'chinese-cheap', 'deepseek', '2']);
        } finally {
            await clearFaults(gw.sim);
        }
        await send(gw, body('auto', ZH)); // a success resets qwen's failure count
    });

    test('requests with tools go only to tools-capable models', async () => {
        const withTools = body('auto', 'call tool get_weather for Paris', { tools: TOOLS });
        const ex = await explain(gw.config, withTools);
        assert.equal(ex.route, 'tools-capable');
        assert.deepEqual(ex.candidates.map((c) => c.target), ['openai/gpt-4o-mini', 'anthropic/claude-haiku-4-5']);
        const r = await send(gw, withTools);
        assert.deepEqual(routeOf(r), [200, 'tools-capable', 'openai', '1']);
        assert.equal(r.json.choices[0].message.tool_calls[0].function.name, 'get_weather');
        const ex2 = await explain(gw.config, body('auto', 'no tools here'));
        assert.equal(ex2.rules_tried.find((x) => x.name === 'tools-capable').why, 'has_tools is false, rule wants true');
        assert.equal(ex2.route, 'cheap-then-claude');
    });

    test("DeepSeek's discount window makes it the cheapest while the window lasts", async () => {
        const ex = await explain(gw.config, body('off-peak'));
        assert.deepEqual(ex.candidates.map((c) => c.target), ['deepseek/deepseek-night', 'qwen/qwen-plus']);
        assert.deepEqual(routeOf(await send(gw, body('off-peak'))), [200, 'off-peak', 'deepseek', '1']);
        // The same prices with a window that has not started: Qwen is cheaper.
        const ex2 = await explain(gw.config, body('peak'));
        assert.deepEqual(ex2.candidates.map((c) => c.target), ['qwen/qwen-plus', 'deepseek/deepseek-later']);
        assert.deepEqual(routeOf(await send(gw, body('peak'))), [200, 'peak', 'qwen', '1']);
    });

    test('cheapest with a fallback to Claude: Claude comes last and is reached when both cheap ones fail', async () => {
        const ex = await explain(gw.config, body('auto', 'Summarise this paragraph, please.'));
        assert.equal(ex.strategy, 'cheapest');
        assert.deepEqual(ex.candidates.map((c) => c.target),
            ['qwen/qwen-plus', 'deepseek/deepseek-flash', 'anthropic/claude-haiku-4-5']);
        assert.deepEqual(routeOf(await send(gw, body('auto', 'Summarise'))), [200, 'cheap-then-claude', 'qwen', '1']);
        await simConfig(gw.sim, { provider: 'qwen', fault_status: 503 });
        await simConfig(gw.sim, { provider: 'deepseek', fault_status: 500 });
        try {
            const r = await send(gw, body('auto', 'Summarise'));
            if (r.status === 200) {
                // providers/anthropic.c is in the build: the live fallback reaches Claude.
                assert.deepEqual(routeOf(r), [200, 'cheap-then-claude', 'anthropic', '3']);
            } else {
                // Not yet: the Claude candidate is skipped, and the message says so.
                assert.equal(r.status, 502);
                assert.match(r.json.error.message, /every provider failed \(2 attempts\)/);
                assert.match(r.json.error.message, /qwen\/qwen-plus: HTTP 503.*deepseek\/deepseek-flash: HTTP 500/);
                assert.match(r.json.error.message, /anthropic\/claude-haiku-4-5: the anthropic dialect is not available/);
            }
        } finally {
            await clearFaults(gw.sim);
        }
        await send(gw, body('auto', 'reset qwen'));
        await send(gw, body('auto', ZH, { max_tokens: 1 }));
    });

    test('an eu-only key never reaches a cn or sg provider, whatever it asks for', async () => {
        const ex = await explain(gw.config, body('auto', ZH), eu);
        assert.equal(ex.route, 'eu-tenants');
        const kept = ex.candidates.filter((c) => c.kept).map((c) => c.target);
        assert.deepEqual(kept, ['openai/gpt-4o-mini', 'vendorx/vx-1']);
        const ds = ex.candidates.find((c) => c.target === 'deepseek/deepseek-flash');
        assert.equal(ds.kept, false);
        assert.match(ds.why, /^region cn is not in \[eu, us\], require of route 'eu-tenants'/);
        assert.deepEqual(routeOf(await send(gw, body('auto', ZH), EU_KEY)), [200, 'eu-tenants', 'openai', '1']);
        const direct = await send(gw, body('deepseek/deepseek-flash'), EU_KEY);
        assert.equal(direct.status, 403);
        assert.match(direct.json.error.message, /this key may not use deepseek\/deepseek-flash: region cn/);
    });
});

describe('failover and the circuit breaker', () => {
    let gw;
    before(async () => {
        gw = await startGateway(OPTS());
    });
    after(async () => {
        await gw?.stop();
    });

    for (const [what, knobs] of [
        ['500', { fault_status: 500 }],
        ['429', { fault_status: 429, retry_after: 0 }],
        ['529', { fault_status: 529 }],
        ['a first-byte timeout', { ttft_ms: 2000 }],
    ]) {
        test(`fails over on ${what} before the client sees a byte`, async () => {
            await simConfig(gw.sim, { provider: 'openai', ...knobs });
            try {
                for (const stream of [false, true]) {
                    const r = await send(gw, body('failover', 'hi', { stream }));
                    assert.deepEqual(routeOf(r), [200, 'failover', 'deepseek', '2']);
                    if (stream) assert.match(r.text, /data: \[DONE\]/);
                    // Two failures in a row open the circuit (circuit.failures: 2):
                    // one success in between keeps it closed for the next case.
                    if (!stream) await clearFaults(gw.sim), await send(gw, body('failover')),
                        await simConfig(gw.sim, { provider: 'openai', ...knobs });
                }
            } finally {
                await clearFaults(gw.sim);
            }
            assert.deepEqual(routeOf(await send(gw, body('failover'))), [200, 'failover', 'openai', '1']);
        });
    }

    test('a 429 with retry-after keeps the provider out until then', async () => {
        await simConfig(gw.sim, { provider: 'openai', fault_status: 429, retry_after: 1 });
        assert.deepEqual(routeOf(await send(gw, body('failover'))), [200, 'failover', 'deepseek', '2']);
        await clearFaults(gw.sim);
        // The provider asked for a second: it is skipped, not tried.
        assert.deepEqual(routeOf(await send(gw, body('failover'))), [200, 'failover', 'deepseek', '1']);
        await sleep(1100);
        assert.deepEqual(routeOf(await send(gw, body('failover'))), [200, 'failover', 'openai', '1']);
    });

    test('the circuit opens after repeated failures, then a probe closes it', async () => {
        const state = () => metric(gw, 'tollgate_circuit_state', { provider: 'openai', model: 'gpt-4o-mini' });
        await simConfig(gw.sim, { provider: 'openai', fault_status: 500 });
        assert.deepEqual(routeOf(await send(gw, body('failover'))), [200, 'failover', 'deepseek', '2']);
        assert.deepEqual(routeOf(await send(gw, body('failover'))), [200, 'failover', 'deepseek', '2']);
        assert.equal(await state(), 1);
        const before = (await simStats(gw.sim)).providers.openai.requests;
        // Open: skipped without a call.
        assert.deepEqual(routeOf(await send(gw, body('failover'))), [200, 'failover', 'deepseek', '1']);
        assert.equal((await simStats(gw.sim)).providers.openai.requests, before);
        const ex = await fetch(`${gw.url}/metrics`).then((r) => r.text());
        assert.match(ex, /tollgate_circuit_state\{provider="openai",model="gpt-4o-mini"\} 1/);
        // After the cool-down (1 s) the next request is the probe; it still fails: open again, for 2 s.
        await sleep(1100);
        assert.deepEqual(routeOf(await send(gw, body('failover'))), [200, 'failover', 'deepseek', '2']);
        assert.equal(await state(), 1);
        await clearFaults(gw.sim);
        await sleep(1100);
        assert.deepEqual(routeOf(await send(gw, body('failover'))), [200, 'failover', 'deepseek', '1']);
        await sleep(1000);
        // The probe succeeds: closed, and traffic is back.
        assert.deepEqual(routeOf(await send(gw, body('failover'))), [200, 'failover', 'openai', '1']);
        assert.equal(await state(), 0);
        assert.deepEqual(routeOf(await send(gw, body('failover'))), [200, 'failover', 'openai', '1']);
    });
});

describe('residency while the allowed providers fail', () => {
    let gw;
    before(async () => {
        gw = await startGateway(OPTS());
    });
    after(async () => {
        await gw?.stop();
    });

    test('the client gets 502, then 503 once their circuits open; cn and sg are never called', async () => {
        const calls = async () => {
            const p = (await simStats(gw.sim)).providers;
            return (p.deepseek?.requests ?? 0) + (p.qwen?.requests ?? 0);
        };
        const base = await calls();
        // "openai" and "vendorx" (eu) are both served by the simulator's openai provider.
        await simConfig(gw.sim, { provider: 'openai', fault_status: 500 });
        const statuses = [];
        for (let i = 0; i < 6; i++) {
            const r = await send(gw, body('auto', i % 2 ? ZH : 'hello'), EU_KEY);
            statuses.push(r.status);
            assert.notEqual(r.headers.get('x-tollgate-provider'), 'deepseek');
            assert.notEqual(r.headers.get('x-tollgate-provider'), 'qwen');
            const msg = r.json.error.message;
            // Attempts are listed as "target: HTTP ..."; cn and sg appear only as refused.
            assert.doesNotMatch(msg, /(deepseek|qwen)\/[\w.-]+: (HTTP|connection|no first byte)/, msg);
            if (r.status === 502) assert.match(msg, /openai\/gpt-4o-mini: HTTP 500.*vendorx\/vx-1: HTTP 500/);
            if (r.status === 503) {
                assert.match(msg, /no candidate of route 'eu-tenants' is allowed and healthy/);
                assert.match(msg, /deepseek\/deepseek-flash: region cn is not in \[eu, us\]/);
                assert.match(msg, /qwen\/qwen-plus: region sg is not in \[eu, us\]/);
            }
        }
        assert.deepEqual(statuses, [502, 502, 503, 503, 503, 503]);
        assert.equal(await calls(), base);
        // Meanwhile the other tenants are served as usual.
        assert.equal((await send(gw, body('auto', ZH))).headers.get('x-tollgate-provider'), 'qwen');
    });
});
