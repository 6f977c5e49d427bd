// h2.test.mjs — a provider behind TLS with a private CA (`ca_file:`) and
// HTTP/2, as every real provider is: nginx `listen ssl http2` with its
// default of 1000 streams per connection (then GOAWAY) under 50 concurrent
// clients must lose no request; a stream the provider refuses before
// answering (REFUSED_STREAM, or excluded by a GOAWAY) is sent again on
// another connection, not failed over to the next candidate.
// TG_H2_REQUESTS / TG_H2_SECONDS size the load run (bench/h2.sh: 20,000).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startGateway, startSimulator, post, chatBody } from './harness.mjs';
import { nginxWithHttp2, makeCerts, startNginxH2, startH2Refuser, hammer, cpuMs } from './h2_upstream.mjs';

const TOTAL = Number(process.env.TG_H2_REQUESTS || 20000);
const SECONDS = Number(process.env.TG_H2_SECONDS || 15);
const CONCURRENCY = Number(process.env.TG_H2_CONCURRENCY || 50);
const HTTP2 = process.env.TG_H2_HTTP2 ?? 'true';

const PRICE = { input: 1, cached_input: 1, output: 1 };
const { bin: NGINX, why: NO_NGINX } = nginxWithHttp2();

let dir, certs;
before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-h2-'));
    certs = makeCerts(dir);
});
after(() => {
    if (!process.env.TG_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
});

const provider = (name, url, extra = '') =>
    `  ${name}: { dialect: openai, base_url: ${url}/v1, api_key_env: TG_E2E_VENDOR_KEY, region: eu, ca_file: ${certs.ca}${extra} }\n`;

test(`TLS + HTTP/2 upstream (nginx): ${TOTAL} requests at ${CONCURRENCY} concurrent, none lost`, { skip: NGINX ? false : NO_NGINX }, async (t) => {
    // TG_H2_UPSTREAM=sim: nginx proxies to a simulator, which reads the whole
    // request body before it answers (as a provider does); by default nginx
    // answers at once from `return 200`, without waiting for the body.
    const sim = process.env.TG_H2_UPSTREAM === 'sim' ? await startSimulator(dir) : null;
    const ngx = await startNginxH2(dir, NGINX, certs, sim ? { proxyTo: sim.url } : {});
    const gw = await startGateway({
        workers: 1,
        extraProviders: provider('h2up', ngx.url, `, http2: ${HTTP2}`),
        extraPrices: { 'h2up/h2-model': PRICE },
        // Every failure counted, none hidden behind an open breaker's 503s.
        extraConfig: 'circuit: { failures: 1000000 }\n',
    });
    try {
        const cpu0 = cpuMs(gw.gw.pid);
        const r = await hammer(gw.url, 'h2up/h2-model', { total: TOTAL, concurrency: CONCURRENCY, maxMs: SECONDS * 1000 });
        const cpuUs = ((cpuMs(gw.gw.pid) - cpu0) * 1000) / r.sent;
        t.diagnostic(`http2: ${HTTP2}; ${r.sent} requests in ${r.ms} ms (${Math.round((r.sent * 1000) / r.ms)}/s), ` +
            `${r.failed} failed, statuses ${JSON.stringify(r.statuses)}, gateway CPU ${cpuUs.toFixed(1)} µs/request, ` +
            `resent ${(gw.gw.log().match(/call sent again on a new connection/g) ?? []).length}`);
        if (r.failed) t.diagnostic(`first failures: ${r.errors.join(' | ')}`);
        assert.ok(r.sent >= 1000, `only ${r.sent} requests fit in ${SECONDS} s`);
        assert.equal(r.failed, 0, `failures: ${r.errors.join(' | ')}\ngateway log:\n${gw.gw.log().slice(-3000)}`);
    } finally {
        await gw.stop();
        await ngx.stop();
        await sim?.stop();
    }
});
