// reload.test.mjs — hot reload as an operator uses it: saving routes.yaml
// (in place or by rename, as editors do) or sending SIGHUP swaps the policy
// while requests keep flowing, none failing; a broken file is reported with
// FILE:LINE:COL and the running policy stays.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGateway, post, chatBody, until } from './harness.mjs';

const routes = (first, second) => `routes:
  - name: e2e-route
    match: { model: e2e-route }
    strategy: ordered
    candidates: [${first}, ${second}]
aliases: { deepseek: deepseek/deepseek-flash, mini: openai/gpt-4o-mini }
`;
const A = routes('openai/gpt-4o-mini', 'deepseek/deepseek-flash');
const B = routes('deepseek/deepseek-flash', 'openai/gpt-4o-mini');

let gw;
before(async () => {
    gw = await startGateway({ routes: A });
});
after(async () => {
    await gw?.stop();
});

const file = () => path.join(gw.dir, 'routes.yaml');
const provider = async () => (await post(gw, chatBody('e2e-route'))).headers.get('x-tollgate-provider');
const reloads = () => gw.gw.log().split('\n').filter((l) => l.includes('"msg":"reloaded ')).length;

function save(text, byRename) {
    if (!byRename) return writeFileSync(file(), text);
    writeFileSync(file() + '.swp', text);
    renameSync(file() + '.swp', file());
}

test('saving routes.yaml under load switches the policy without a failed request', async () => {
    assert.equal(await provider(), 'openai');
    let stop = false;
    const seen = {};
    const failures = [];
    let total = 0;
    const loop = async () => {
        while (!stop) {
            const r = await post(gw, chatBody('e2e-route', { stream: total % 2 === 1 }));
            total++;
            if (r.status !== 200 || (r.text.includes('"stream"') && !r.text.includes('[DONE]')))
                failures.push(`${r.status} ${r.text.slice(0, 200)}`);
            const p = r.headers.get('x-tollgate-provider');
            seen[p] = (seen[p] ?? 0) + 1;
        }
    };
    const loops = Array.from({ length: 8 }, loop);
    const before = reloads();
    for (let i = 0; i < 6; i++) {
        await sleep(250);
        save(i % 2 === 0 ? B : A, i >= 3);
    }
    await sleep(300);
    stop = true;
    await Promise.all(loops);
    assert.deepEqual(failures, []);
    assert.ok(total > 100, `only ${total} requests ran`);
    assert.ok(seen.openai > 0 && seen.deepseek > 0, JSON.stringify(seen));
    // Each save was its own reload (they are 250 ms apart, the debounce is 100 ms).
    assert.equal(reloads() - before, 6);
    assert.equal(await provider(), 'openai'); // the last save was A
    const times = gw.gw.log().match(/reloaded \S+ in ([\d.]+) ms \(file change\)/g);
    console.log(`# ${total} requests, ${failures.length} failed; reload times: ${times.map((t) => t.match(/in ([\d.]+) ms/)[1]).join(', ')} ms`);
});

test('a broken file is reported with FILE:LINE:COL and the running policy stays', async () => {
    save(B, true);
    assert.ok(await until(async () => (await provider()) === 'deepseek', 5000));
    const n = reloads();
    save(B.replace('strategy: ordered', 'strategy: fastestt'), false);
    const want = `${file()}:4:15: unknown strategy 'fastestt'`;
    assert.ok(await until(() => gw.gw.log().includes('failed: the running configuration stays'), 5000), gw.gw.log().slice(-2000));
    assert.ok(gw.gw.log().includes(want), gw.gw.log().slice(-2000));
    assert.equal(reloads(), n);
    assert.equal(await provider(), 'deepseek');
    save(A, false);
    assert.ok(await until(async () => (await provider()) === 'openai', 5000));
});

test('SIGHUP reloads too', async () => {
    const n = reloads();
    process.kill(gw.gw.pid, 'SIGHUP');
    assert.ok(await until(() => /reloaded \S+ in [\d.]+ ms \(SIGHUP\)/.test(gw.gw.log()) && reloads() === n + 1, 5000));
    assert.equal(await provider(), 'openai');
});
