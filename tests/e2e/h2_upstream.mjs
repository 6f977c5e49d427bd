// h2_upstream.mjs — providers behind TLS for tests/e2e/h2.test.mjs: a
// private CA and a certificate for 127.0.0.1 made with openssl; nginx
// `listen ssl http2` answering every chat call with a fixed OpenAI-style
// completion (`return 200`, so the upstream costs almost nothing) or proxying
// to the simulator; a node:http2 server that turns streams away on demand;
// a load generator that counts what failed; a process's CPU time.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { writeFileSync, readFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { freePort, until, KEY } from './harness.mjs';

/** nginx's path, or null when it is missing or built without HTTP/2 (the reason in `why`). */
export function nginxWithHttp2() {
    for (const bin of ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx']) {
        if (!existsSync(bin)) continue;
        // nginx -V prints its build options on stderr.
        const v = spawnSync(bin, ['-V'], { encoding: 'utf8' });
        const text = `${v.stdout ?? ''}${v.stderr ?? ''}`;
        for (const m of ['http_v2', 'http_ssl'])
            if (!text.includes(`--with-${m}_module`)) return { bin: null, why: `${bin} is built without --with-${m}_module` };
        return { bin, why: '' };
    }
    return { bin: null, why: 'nginx is not installed (tools/deps.sh test installs nginx-light)' };
}

/** A private CA and a certificate for 127.0.0.1 signed by it: { ca, cert, key } file paths in `dir`. */
export function makeCerts(dir) {
    const f = (n) => path.join(dir, n);
    const ossl = (...a) => execFileSync('openssl', a, { stdio: ['ignore', 'ignore', 'pipe'] });
    ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
        '-subj', '/CN=Tollgate test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'));
    ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=127.0.0.1',
        '-keyout', f('server.key'), '-out', f('server.csr'));
    writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    ossl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
        '-days', '2', '-extfile', f('server.ext'), '-out', f('server.pem'));
    return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}

/** The completion every upstream of this file answers with (usage included, so the call is billed). */
export const ANSWER = JSON.stringify({
    id: 'chatcmpl-h2', object: 'chat.completion', created: 1700000000, model: 'h2-model',
    choices: [{ index: 0, message: { role: 'assistant', content: 'hello over h2' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
});

/**
 * Starts nginx on a free port: `listen 127.0.0.1:P ssl http2`, one worker,
 * nginx's defaults otherwise (keepalive_requests 1000: a GOAWAY after every
 * 1000th stream of a connection, which is what real providers do too).
 * Returns { port, url, stop(), errorLog() }.
 */
export async function startNginxH2(dir, bin, certs, { keepaliveRequests, proxyTo } = {}) {
    const port = await freePort();
    const conf = path.join(dir, 'nginx.conf');
    writeFileSync(conf, `# Written by tests/e2e/h2_upstream.mjs.
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log info;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path ${dir}/nginx-body;
    server {
        listen 127.0.0.1:${port} ssl http2;
        ssl_certificate ${certs.cert};
        ssl_certificate_key ${certs.key};
        ${keepaliveRequests ? `keepalive_requests ${keepaliveRequests};` : ''}
        client_body_buffer_size 64k;
        location / {
${proxyTo ? `            proxy_pass http://sim/openai/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";` : `            default_type application/json;
            return 200 '${ANSWER}';`}
        }
    }
    ${proxyTo ? `upstream sim { server ${new URL(proxyTo).host}; keepalive 64; }` : ''}
}
`);
    const child = spawn(bin, ['-c', conf, '-e', path.join(dir, 'nginx-error.log'), '-p', dir], { stdio: 'ignore' });
    let exited = null;
    child.on('exit', (code, sig) => (exited = { code, sig }));
    const up = await until(async () => exited || (await tcpOpen(port)), 10000);
    if (up !== true) {
        child.kill('SIGKILL');
        throw new Error(`nginx did not start on ${port}: ${readLog(path.join(dir, 'nginx-error.log'))}`);
    }
    return {
        port,
        url: `https://127.0.0.1:${port}`,
        errorLog: () => readLog(path.join(dir, 'nginx-error.log')),
        async stop() {
            if (exited) return;
            const gone = new Promise((r) => child.on('exit', r));
            child.kill('SIGTERM');
            const t = setTimeout(() => child.kill('SIGKILL'), 5000);
            await gone;
            clearTimeout(t);
        },
    };
}

function readLog(f) {
    try {
        return readFileSync(f, 'utf8');
    } catch {
        return '';
    }
}

function tcpOpen(port) {
    return new Promise((resolve) => {
        const req = http.request({ host: '127.0.0.1', port, method: 'HEAD', path: '/', timeout: 500 });
        req.on('response', (r) => {
            r.resume();
            resolve(true);
        });
        // A plain-HTTP request to a TLS port is answered 400 or reset: either way something listens.
        req.on('error', (e) => resolve(e.code !== 'ECONNREFUSED'));
        req.on('timeout', () => req.destroy());
        req.end();
    });
}

/**
 * An HTTP/2 provider (node:http2 over TLS) that answers the first stream of
 * every connection and turns away the later ones before sending anything, as
 * a server at its per-connection stream limit does: with RST_STREAM
 * (REFUSED_STREAM) when `mode` is 'refuse', with a GOAWAY whose last stream
 * is the answered one when `mode` is 'goaway'. A client that reuses the
 * connection has to send the call again on a new one. Counts connections,
 * streams seen, turned away and answered. Returns { port, url, stats, stop() }.
 */
export async function startH2Refuser(certs, { mode = 'refuse' } = {}) {
    const stats = { sessions: 0, streams: 0, refused: 0, answered: 0 };
    const server = http2.createSecureServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) });
    server.on('session', (s) => {
        stats.sessions++;
        s.answered = 0;
    });
    server.on('stream', (stream) => {
        stats.streams++;
        stream.on('error', () => {}); // the refusal itself surfaces as a stream error here
        const s = stream.session;
        if (s.answered > 0) {
            stats.refused++;
            if (mode === 'goaway') s.goaway(http2.constants.NGHTTP2_NO_ERROR, s.lastAnswered);
            else stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
            return;
        }
        s.answered++;
        s.lastAnswered = stream.id;
        stream.on('data', () => {});
        stream.on('end', () => {
            stats.answered++;
            stream.respond({ ':status': 200, 'content-type': 'application/json' });
            stream.end(ANSWER);
        });
    });
    const sessions = new Set();
    server.on('session', (s) => {
        sessions.add(s);
        s.on('close', () => sessions.delete(s));
    });
    const port = await freePort();
    await new Promise((r) => server.listen(port, '127.0.0.1', r));
    return {
        port,
        url: `https://127.0.0.1:${port}`,
        stats,
        async stop() {
            const closed = new Promise((r) => server.close(r));
            for (const s of sessions) s.destroy();
            await closed;
        },
    };
}

/** CPU time (user + system) a process has used so far, in ms, from /proc (Linux). */
export function cpuMs(pid) {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; /* utime, stime in USER_HZ (100) */
}

/**
 * Sends `total` chat calls for `model` to the gateway, `concurrency` at a
 * time over kept-alive HTTP/1.1 connections, stopping early after `maxMs`.
 * Returns { sent, ok, failed, statuses: {code: n}, errors: [first few bodies], ms }.
 */
export async function hammer(gwUrl, model, { total = 20000, concurrency = 50, maxMs = Infinity } = {}) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
    const body = JSON.stringify({ model, max_tokens: 16, messages: [{ role: 'user', content: 'hello over h2' }] });
    const u = new URL('/v1/chat/completions', gwUrl);
    const res = { sent: 0, ok: 0, failed: 0, statuses: {}, errors: [], ms: 0 };
    const t0 = Date.now();
    const one = () =>
        new Promise((resolve) => {
            const req = http.request(
                {
                    host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent,
                    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
                },
                (r) => {
                    let text = '';
                    r.setEncoding('utf8');
                    r.on('data', (c) => (text += c));
                    r.on('end', () => resolve({ status: r.statusCode, text }));
                },
            );
            req.on('error', (e) => resolve({ status: 0, text: String(e) }));
            req.end(body);
        });
    const worker = async () => {
        while (res.sent < total && Date.now() - t0 < maxMs) {
            res.sent++;
            const { status, text } = await one();
            res.statuses[status] = (res.statuses[status] ?? 0) + 1;
            if (status === 200) res.ok++;
            else {
                res.failed++;
                if (res.errors.length < 5) res.errors.push(`${status} ${text.slice(0, 300)}`);
            }
        }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    res.ms = Date.now() - t0;
    agent.destroy();
    await sleep(0);
    return res;
}
