// h2.test.mjs — providers behind TLS with a private CA (`ca_file:`), as
// every real provider is. Under 50 concurrent clients no call is lost:
// against nginx `listen ssl http2` (which closes a connection after 1000
// calls, nginx's default) over the default HTTP/1.1 keep-alive pool, and
// with `http2: true` against nginx in front of the simulator. A stream the
// provider turns away before answering (REFUSED_STREAM, or past a GOAWAY's
// last stream) is sent again on another connection, not failed over to the
// next candidate. Knobs (docs/operations.md, "Upstream HTTP/2"): TG_H2_REQUESTS (20000),
// TG_H2_SECONDS (cap per load run, 12), TG_H2_CONCURRENCY (50),
// TG_H2_HTTP2 (the first run's http2: false), TG_H2_UPSTREAM (the first
// run's upstream: "return" — nginx answers at once — or "sim").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startGateway, startSimulator, post, chatBody, until } from './harness.mjs';
import { nginxWithHttp2, makeCerts, startNginxH2, startH2Refuser, hammer, cpuMs } from './h2_upstream.mjs';

const TOTAL = Number(process.env.TG_H2_REQUESTS || 20000);
const SECONDS = Number(process.env.TG_H2_SECONDS || 12);
const CONCURRENCY = Number(process.env.TG_H2_CONCURRENCY || 50);
const HTTP2 = process.env.TG_H2_HTTP2 ?? 'false';
const UPSTREAM = process.env.TG_H2_UPSTREAM ?? 'return';

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
    `  ${name}: { dialect: openai, base_url: ${url}/v1, api_key_env: TG_E2E_VENDOR_KEY, region: eu${extra} }\n`;
const accessLines = (gw) =>
    gw.gw.log().split('\n').filter((l) => l.includes('"attempts":')).map((l) => JSON.parse(l));

/** One load run through the gateway to nginx; returns the hammer result. */
async function loadRun(t, { http2, upstream, total, seconds }) {
    const sim = upstream === 'sim' ? await startSimulator(dir) : null;
    // nginx in front of the simulator reads the whole request body before it
    // answers, as a provider does; "return" answers at once, body unread.
    const ngx = await startNginxH2(dir, NGINX, certs, sim ? { proxyTo: sim.url } : {});
    const gw = await startGateway({
        workers: 1,
        extraProviders: provider('h2up', ngx.url, `, ca_file: ${certs.ca}, http2: ${http2}`),
        extraPrices: { 'h2up/h2-model': PRICE },
        // Every failure counted, none hidden behind an open breaker's 503s.
        extraConfig: 'circuit: { failures: 1000000 }\n',
    });
    try {
        const cpu0 = cpuMs(gw.gw.pid);
        const r = await hammer(gw.url, 'h2up/h2-model', { total, concurrency: CONCURRENCY, maxMs: seconds * 1000 });
        const cpuUs = ((cpuMs(gw.gw.pid) - cpu0) * 1000) / r.sent;
        const resent = (gw.gw.log().match(/call sent again on a new connection/g) ?? []).length;
        t.diagnostic(`http2: ${http2}, upstream: nginx ${upstream}; ${r.sent} requests at ${CONCURRENCY} concurrent in ` +
            `${r.ms} ms (${Math.round((r.sent * 1000) / r.ms)}/s), ${r.failed} failed, statuses ` +
            `${JSON.stringify(r.statuses)}, gateway CPU ${cpuUs.toFixed(1)} µs/request, sent again ${resent}`);
        assert.ok(r.sent === total || r.sent >= 2000, `only ${r.sent} requests fit in ${seconds} s`);
        assert.equal(r.failed, 0, `failures: ${r.errors.join(' | ')}\ngateway log:\n${gw.gw.log().slice(-3000)}`);
        const log = ngx.errorLog();
        assert.doesNotMatch(log, /\[(error|crit|alert|emerg)\]/, `nginx logged errors:\n${log.slice(-2000)}`);
        return r;
    } finally {
        await gw.stop();
        await ngx.stop();
        await sim?.stop();
    }
}

test(`TLS upstream (nginx ssl http2), default HTTP/1.1 pool: up to ${TOTAL} requests at ${CONCURRENCY} concurrent, none lost`,
    { skip: NGINX ? false : NO_NGINX }, async (t) => {
        await loadRun(t, { http2: HTTP2, upstream: UPSTREAM, total: TOTAL, seconds: SECONDS });
    });

test(`TLS upstream, http2: true (nginx ssl http2 in front of the simulator): up to ${Math.ceil(TOTAL / 2)} requests, none lost`,
    { skip: NGINX ? false : NO_NGINX }, async (t) => {
        await loadRun(t, { http2: 'true', upstream: 'sim', total: Math.ceil(TOTAL / 2), seconds: Math.ceil(SECONDS / 2) });
    });

for (const mode of ['refuse', 'goaway']) {
    test(`HTTP/2 stream turned away before any byte (${mode === 'refuse' ? 'REFUSED_STREAM' : 'GOAWAY'}) is sent again, not failed over`, async () => {
        const h2 = await startH2Refuser(certs, { mode });
        const gw = await startGateway({
            workers: 1,
            extraProviders: provider('h2ref', h2.url, `, ca_file: ${certs.ca}, http2: true`) +
                provider('h2noca', h2.url, ', http2: true'),
            extraPrices: { 'h2ref/h2-model': PRICE, 'h2noca/h2-model': PRICE },
            routes: `routes:
  - name: h2-route
    match: { model: h2-route }
    strategy: ordered
    candidates: [h2ref/h2-model, vendorx/vx-1]
`,
        });
        try {
            // One at a time, so every call after the first finds the
            // connection of the one before and is turned away on it; more
            // than libcurl's own five resends per handle.
            const N = 12;
            for (let i = 0; i < N; i++) {
                const r = await post(gw, chatBody('h2-route'));
                assert.equal(r.status, 200, r.text);
                assert.equal(r.json.choices[0].message.content, 'hello over h2', 'answered by the simulator: failed over');
            }
            assert.ok(h2.stats.refused >= N - 1, `the provider turned away only ${h2.stats.refused} streams`);
            assert.equal(h2.stats.answered, N);
            // libcurl sends a refused stream again by itself, five times per
            // handle; the calls after that are the gateway's to send again.
            assert.match(gw.gw.log(), /call sent again on a new connection/);
            // The access log is written in batches: wait for all N lines.
            const mine = () => accessLines(gw).filter((l) => l.route === 'h2-route');
            await until(() => mine().length >= N, 5000);
            const lines = mine();
            assert.equal(lines.length, N);
            for (const l of lines) {
                assert.equal(l.provider, 'h2ref');
                assert.equal(l.attempts, 1, `a failover attempt: ${JSON.stringify(l)}`);
            }
            // Without ca_file the private CA is not trusted: the same server fails TLS.
            const bad = await post(gw, chatBody('h2noca/h2-model'));
            assert.ok([502, 503].includes(bad.status), bad.text);
            assert.match(bad.text, /TLS (certificate verification|handshake) failed/);
            assert.doesNotMatch(bad.text, /127\.0\.0\.1/);
        } finally {
            await gw.stop();
            await h2.stop();
        }
    });
}
