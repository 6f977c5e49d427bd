// stream.mjs — the streaming half of `make bench`: opens N concurrent SSE
// chat streams to URL (raw HTTP/1.1, one socket each, opened in batches of
// 250) and holds them open (the simulator sends BENCH_TOKENS at BENCH_TPS);
// once every stream has its first token it samples the RSS of process PID
// (the gateway), then sends BENCH_PROBES more streams one after another
// while the N are still open and measures their time to first token
// (request written -> first content delta). The probes, not the opening
// burst, give the TTFT figures: a burst of N measures queueing in the load
// generator as much as the gateway. An https:// URL (the TLS origin of
// BENCH_UPSTREAM=tls, trusted through BENCH_CA) is spoken in HTTP/2, the N
// streams spread over sessions of at most BENCH_H2_STREAMS (900) streams each
// and the probes on a session of their own, as the gateway multiplexes its
// calls to that origin: the direct baseline then holds few descriptors too.
// Prints one JSON line:
//   {"n","ok","failed","burst_ttft_p99_ms","ttft_p50_ms","ttft_p99_ms","rss_kb","fds","up_conns"}
// (fds: PID's open descriptors with the N open; up_conns: established
// connections to port BENCH_UPPORT then, when set)
//   node bench/stream.mjs URL N [PID]
// env: BENCH_KEY, BENCH_MODEL, BENCH_TOKENS (60), BENCH_TPS (2), BENCH_PROBES (200),
//      BENCH_CA, BENCH_H2_STREAMS
import net from 'node:net';
import http2 from 'node:http2';
import fs from 'node:fs';

const [url, nArg, pidArg] = process.argv.slice(2);
const N = Number(nArg || 1000);
const u = new URL(url);
const key = process.env.BENCH_KEY || 'tg-demo-key';
const model = process.env.BENCH_MODEL || 'deepseek/deepseek-flash';
// Long enough that every stream is still open when RSS is sampled.
const tokens = Number(process.env.BENCH_TOKENS || 60), tps = Number(process.env.BENCH_TPS || 2);
const body = JSON.stringify({ model, stream: true, max_tokens: tokens, messages: [{ role: 'user', content: 'stream to me' }] });
const req = `POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${key}\r\n` +
    `Content-Type: application/json\r\nx-sim-tps: ${tps}\r\nx-sim-output-tokens: ${tokens}\r\nx-sim-ttft-ms: 0\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

const probes = Number(process.env.BENCH_PROBES || 200);
let ttft = [];
const socks = [];
let failed = 0;

// HTTP/2 (https:// URLs): sessions to the origin, each holding up to perSession streams.
const h2 = u.protocol === 'https:';
const perSession = Number(process.env.BENCH_H2_STREAMS || 900);
const sessions = [];
function session() {
    const s = http2.connect(u.origin, { ca: process.env.BENCH_CA ? fs.readFileSync(process.env.BENCH_CA) : undefined });
    s.on('error', () => {});
    // The origin closes a connection after its 1000th stream (keepalive_requests).
    s.used = 0;
    s.on('goaway', () => { s.gone = true; });
    s.on('close', () => { s.gone = true; });
    sessions.push(s);
    return s;
}
let cur = null;
const headers = {
    ':method': 'POST', ':path': u.pathname, authorization: `Bearer ${key}`, 'content-type': 'application/json',
    'x-sim-tps': String(tps), 'x-sim-output-tokens': String(tokens), 'x-sim-ttft-ms': '0',
};
function openH2(keep, sess) {
    return new Promise((resolve) => {
        if (!sess) {
            if (!cur || cur.gone || cur.used >= perSession) cur = session();
            sess = cur;
        }
        sess.used++;
        const t0 = process.hrtime.bigint();
        const st = sess.request(headers);
        let done = false, seen = '';
        const finish = (ok) => {
            if (done) return;
            done = true;
            if (ok) ttft.push(Number(process.hrtime.bigint() - t0) / 1e6);
            else failed++;
            if (!keep) st.close(http2.constants.NGHTTP2_CANCEL);
            resolve();
        };
        st.on('response', (h) => { if (h[':status'] >= 400) finish(false); });
        st.on('data', (d) => {
            if (done) return;
            seen += d.toString('latin1');
            if (/"content":"[^"]/.test(seen)) finish(true);
            else if (seen.length > 4096) finish(false);
        });
        st.on('error', () => finish(false));
        st.on('close', () => finish(false));
        st.end(body);
        if (keep) socks.push(st);
    });
}

function open(keep = true) {
    if (h2) return openH2(keep, keep ? null : probeSession());
    return new Promise((resolve) => {
        const s = net.connect(Number(u.port), u.hostname);
        let t0 = 0, done = false, seen = '';
        const finish = (ok) => {
            if (done) return;
            done = true;
            if (ok) ttft.push(Number(process.hrtime.bigint() - t0) / 1e6);
            else failed++;
            if (!keep) s.destroy();
            resolve();
        };
        s.setNoDelay(true);
        s.on('connect', () => {
            t0 = process.hrtime.bigint();
            s.write(req);
        });
        s.on('data', (d) => {
            if (done) return;
            seen += d.toString('latin1');
            if (seen.includes('"content":"') && /"content":"[^"]/.test(seen)) finish(true);
            else if (seen.length > 4096 || / [45]\d\d /.test(seen.slice(0, 16))) {
                if (process.env.BENCH_DEBUG) console.error(seen.slice(0, 400));
                finish(false);
            }
        });
        s.on('error', () => finish(false));
        s.on('close', () => {
            if (process.env.BENCH_DEBUG && !done) console.error('closed after', JSON.stringify(seen.slice(0, 300)));
            finish(false);
        });
        if (keep) socks.push(s);
    });
}

let probeSess = null;
function probeSession() {
    if (!probeSess || probeSess.gone || probeSess.used >= perSession) probeSess = session();
    return probeSess;
}

const pct = (a, p) => (a.length ? a[Math.min(a.length - 1, Math.floor((a.length * p) / 100))] : NaN);
const batch = 250;
const pending = [];
for (let i = 0; i < N; i += batch) {
    const k = Math.min(batch, N - i);
    for (let j = 0; j < k; j++) pending.push(open());
    await new Promise((r) => setTimeout(r, 5));
}
await Promise.all(pending);
let rss = null, fds = null, upConns = null;
if (pidArg) {
    const m = fs.readFileSync(`/proc/${pidArg}/status`, 'utf8').match(/^VmRSS:\s+(\d+)/m);
    rss = m ? Number(m[1]) : null;
    fds = fs.readdirSync(`/proc/${pidArg}/fd`).length;
}
// Established TCP connections to BENCH_UPPORT (the TLS origin): on loopback
// only the gateway's calls have it as their remote port.
if (process.env.BENCH_UPPORT) {
    const port = Number(process.env.BENCH_UPPORT).toString(16).toUpperCase().padStart(4, '0');
    upConns = fs.readFileSync('/proc/net/tcp', 'utf8').split('\n')
        .filter((l) => { const f = l.trim().split(/\s+/); return f[2] && f[2].endsWith(':' + port) && f[3] === '01'; }).length;
}
const burst = ttft.sort((a, b) => a - b);
const ok = burst.length;
ttft = [];
for (let i = 0; i < probes; i++) await open(false);
ttft.sort((a, b) => a - b);
const ms = (v) => +v.toFixed(2);
console.log(JSON.stringify({
    n: N, ok, failed, burst_ttft_p99_ms: ms(pct(burst, 99)), ttft_p50_ms: ms(pct(ttft, 50)), ttft_p99_ms: ms(pct(ttft, 99)),
    rss_kb: rss, fds, up_conns: upConns,
}));
for (const s of socks) (h2 ? s.close() : s.destroy());
process.exit(0);
