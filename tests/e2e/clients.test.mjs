// clients.test.mjs — the real clients a user points at the gateway, run as
// they ship (pinned in package.json), offline and with telemetry off: Codex
// CLI (`codex exec`, a custom provider over the Responses API), Claude Code
// (`claude -p` with its default models, through the "claude-*" alias), the
// OpenAI Agents SDK (default API: Responses) and the Vercel AI SDK
// (`openai(model)`: Responses), each finishing a turn and billed.
// TOLLGATE_E2E_PENDING=1 skips the file (while /v1/responses is being built).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import OpenAI from 'openai';
import { Agent, Runner, OpenAIProvider, setTracingDisabled } from '@openai/agents';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText } from 'ai';
import { startGateway, hgetallNumbers, todayUtc, until, clientsConfig, runCodex, runClaude } from './harness.mjs';

const PENDING = process.env.TOLLGATE_E2E_PENDING === '1';
const it = (name, fn) => test(name, { skip: PENDING && 'TOLLGATE_E2E_PENDING=1', timeout: 120000 }, fn);

// Each client bills its own gateway key, so its ledger counters are its own.
const K = Object.fromEntries(['codex', 'claude', 'agents', 'aisdk'].map((n) => [n, `tg-e2e-${n}-` + randomBytes(10).toString('hex')]));

let gw;
before(async () => {
    if (PENDING) return;
    // Agents SDK traces go to api.openai.com unless turned off.
    process.env.OPENAI_AGENTS_DISABLE_TRACING = '1';
    setTracingDisabled(true);
    gw = await startGateway({ ...clientsConfig(), keys: Object.entries(K).map(([name, secret]) => ({ name, secret })) });
});
after(async () => {
    await gw?.stop();
});

// Requests today by a key (all providers and models), and those of one provider|model.
async function requestsOf(key, providerModel) {
    const h = await hgetallNumbers(`tg:usage:${todayUtc()}`);
    let all = 0, one = 0;
    for (const [f, v] of Object.entries(h)) {
        const [p, m, k, metric] = f.split('|');
        if (k !== key || metric !== 'requests') continue;
        all += v;
        if (`${p}|${m}` === providerModel) one += v;
    }
    return { all, one };
}

it('Codex CLI: `codex exec` through a wire_api="responses" provider answers and is billed', async () => {
    const r = await runCodex(gw.base, K.codex, 'say hi', { model: 'mini' });
    assert.equal(r.code, 0, `codex exit ${r.code}; stderr:\n${r.stderr.slice(-3000)}`);
    assert.ok(r.stdout.trim().length > 0, `codex printed the agent's answer; stderr:\n${r.stderr.slice(-2000)}`);
    assert.doesNotMatch(r.stderr, /ERROR/, 'no error reported by codex');
    const billed = await until(async () => (await requestsOf('codex', 'openai|gpt-4o-mini')).one >= 1);
    assert.ok(billed, 'the turn is recorded under openai/gpt-4o-mini for the codex key');
});

it('Claude Code: `claude -p` with its default model reaches Claude through the claude-* alias and is billed', async () => {
    const r = await runClaude(gw.url, K.claude, 'say hi');
    assert.equal(r.code, 0, `claude exit ${r.code}; stdout:\n${r.stdout.slice(-2000)}\nstderr:\n${r.stderr.slice(-2000)}`);
    assert.ok(r.stdout.trim().length > 0, 'claude printed an answer');
    let h;
    await until(async () => {
        h = await hgetallNumbers(`tg:usage:${todayUtc()}`);
        return Object.keys(h).some((f) => /^anthropic\|claude-[^|]+\|claude\|requests$/.test(f));
    });
    const fields = Object.keys(h).filter((f) => f.endsWith('|claude|requests'));
    assert.ok(fields.length > 0, 'requests recorded for the claude key');
    for (const f of fields) assert.match(f, /^anthropic\|claude-/, `every Claude Code request went to Anthropic (${f})`);
});

it('OpenAI Agents SDK (default Responses API): a run and a streamed run give a final output', async () => {
    const client = new OpenAI({ baseURL: gw.base, apiKey: K.agents, maxRetries: 0 });
    const runner = new Runner({ modelProvider: new OpenAIProvider({ openAIClient: client }), tracingDisabled: true });
    const agent = new Agent({ name: 'Assistant', instructions: 'Answer in one word.', model: 'mini' });
    const r = await runner.run(agent, 'Say hello.');
    assert.equal(typeof r.finalOutput, 'string');
    assert.ok(r.finalOutput.length > 0, 'a final output');

    const s = await runner.run(agent, 'Say hello again.', { stream: true });
    let deltas = '';
    for await (const ev of s) {
        if (ev.type === 'raw_model_stream_event' && ev.data.type === 'output_text_delta') deltas += ev.data.delta;
    }
    await s.completed;
    assert.ok(!s.error, `no stream error: ${s.error}`);
    assert.ok(s.finalOutput.length > 0, 'a streamed final output');
    assert.equal(s.finalOutput, deltas, 'the final output is what the deltas said');
    assert.ok((await until(async () => (await requestsOf('agents', 'openai|gpt-4o-mini')).one >= 2)), 'both runs billed');
});

it('AI SDK openai(model): generateText answers with usage', async () => {
    const openai = createOpenAI({ baseURL: gw.base, apiKey: K.aisdk });
    const r = await generateText({ model: openai('mini'), prompt: 'Say hello.', maxRetries: 0 });
    assert.ok(r.text.length > 0, 'text');
    assert.equal(r.finishReason, 'stop');
    assert.ok(r.usage.inputTokens > 0 && r.usage.outputTokens > 0, `usage ${JSON.stringify(r.usage)}`);
});

it('AI SDK openai(model): streamText streams text, finishes and reports usage', async () => {
    const openai = createOpenAI({ baseURL: gw.base, apiKey: K.aisdk });
    let err = null;
    const s = streamText({ model: openai('mini'), prompt: 'Say hello.', maxRetries: 0, onError: ({ error }) => (err = error) });
    const parts = [];
    for await (const d of s.textStream) parts.push(d);
    assert.equal(err, null, `no stream error: ${err}`);
    assert.ok(parts.length >= 1 && parts.join('').length > 0, 'text arrived in deltas');
    assert.equal(await s.finishReason, 'stop');
    const u = await s.usage;
    assert.ok(u.inputTokens > 0 && u.outputTokens > 0, `usage ${JSON.stringify(u)}`);
    assert.ok((await until(async () => (await requestsOf('aisdk', 'openai|gpt-4o-mini')).one >= 2)), 'both AI SDK calls billed');
});
