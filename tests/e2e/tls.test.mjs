// tls.test.mjs — TLS listeners as an operator runs them: a plain and a TLS
// listener side by side, with a certificate chain (leaf + intermediate) from
// a private CA made by `openssl` for this run. Clients: curl --cacert, the
// official OpenAI SDK trusting the CA through NODE_EXTRA_CA_CERTS, openssl
// s_client (TLS 1.1 refused, ALPN http/1.1). Then what production does to
// it: the certificate rotated under load (new handshakes see the new serial,
// no request fails), a thousand clients that never finish a handshake (cut
// at the header timeout while others are served), and `tollgate check`
// pointing at a key that does not match its certificate.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync, renameSync, openSync, closeSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { BIN, KEY, ADMIN_TOKEN, VENDOR_SECRET, startGateway, freePort, until, chatBody } from './harness.mjs';

const execFileP = promisify(execFile);
const HEADER_TIMEOUT_MS = 1500;

let g, certs, tlsPort, ca;

/** Runs openssl; resolves { code, out } whatever the exit status. */
function openssl(args, input = '') {
    return new Promise((resolve) => {
        const p = execFile('openssl', args, { timeout: 15000 }, (err, stdout, stderr) =>
            resolve({ code: err ? (err.code ?? 1) : 0, out: stdout + stderr }));
        p.stdin.on('error', () => {}); // commands that never read their input
        p.stdin.end(input);
    });
}

async function ok(args) {
    const r = await openssl(args);
    if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.out}`);
}

/** A P-256 key and a leaf certificate for localhost/127.0.0.1 with `serial`,
 * signed by the intermediate; `dest` gets the chain (leaf, intermediate). */
async function issue(serial, certFile, keyFile) {
    const tmp = path.join(certs, `leaf-${serial}`);
    await ok(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=localhost',
        '-keyout', `${tmp}.key`, '-out', `${tmp}.csr`]);
    writeFileSync(`${tmp}.ext`, 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    await ok(['x509', '-req', '-in', `${tmp}.csr`, '-CA', path.join(certs, 'int.pem'), '-CAkey', path.join(certs, 'int.key'),
        '-set_serial', serial, '-days', '2', '-extfile', `${tmp}.ext`, '-out', `${tmp}.pem`]);
    const chain = readFileSync(`${tmp}.pem`, 'utf8') + readFileSync(path.join(certs, 'int.pem'), 'utf8');
    // Written beside and renamed over, as a certificate manager does.
    writeFileSync(`${keyFile}.new`, readFileSync(`${tmp}.key`));
    writeFileSync(`${certFile}.new`, chain);
    renameSync(`${keyFile}.new`, keyFile);
    renameSync(`${certFile}.new`, certFile);
}

function gatewayEnv() {
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (/_API_KEY$|^TG_E2E_UNSET_/.test(k)) delete env[k];
    env.TOLLGATE_ADMIN_TOKEN = ADMIN_TOKEN;
    env.TG_E2E_VENDOR_KEY = VENDOR_SECRET;
    return env;
}

/** The gateway of startGateway restarted on a config whose listen is a list:
 * its plain address and a TLS one. */
async function startTlsGateway() {
    const config = readFileSync(g.config, 'utf8').replace(/^listen: .*$/m,
        `listen:\n  - 127.0.0.1:${g.port}\n  - { address: 127.0.0.1:${tlsPort}, tls: { cert: certs/gateway.pem, key: certs/gateway.key } }`);
    writeFileSync(g.config, config);
    await g.gw.stop();
    const logFile = path.join(g.dir, 'gateway-tls.log');
    const fd = openSync(logFile, 'a');
    const child = spawn(BIN, ['serve', '-c', g.config], { cwd: g.dir, env: gatewayEnv(), stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })));
    g.gw = {
        pid: child.pid,
        log: () => readFileSync(logFile, 'utf8'),
        async stop() {
            child.kill('SIGTERM');
            const t = setTimeout(() => child.kill('SIGKILL'), 10000);
            const e = await exited;
            clearTimeout(t);
            return e;
        },
    };
    const up = await until(async () => (await get('/healthz')).status === 200, 15000);
    assert.ok(up, `the TLS listener did not answer; log:\n${g.gw.log().slice(-3000)}`);
}

/** One request over TLS on a new connection (agent: false); resolves
 * { status, body, serial, alpn, protocol } or rejects on any failure. */
function get(pathName, { method = 'GET', body, agent = false } = {}) {
    return new Promise((resolve, reject) => {
        const req = https.request({
            host: '127.0.0.1', servername: 'localhost', port: tlsPort, path: pathName, method, ca, agent,
            headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
            timeout: 10000,
        }, (res) => {
            const sock = res.socket;
            const cert = sock.getPeerCertificate();
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d) => (text += d));
            res.on('end', () => resolve({ status: res.statusCode, body: text, serial: cert.serialNumber,
                alpn: sock.alpnProtocol, protocol: sock.getProtocol() }));
            res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
        req.end(body);
    });
}

before(async () => {
    g = await startGateway({ limits: { header_timeout_ms: HEADER_TIMEOUT_MS } });
    certs = path.join(g.dir, 'certs');
    mkdirSync(certs);
    const c = (f) => path.join(certs, f);
    // A root CA, an intermediate under it, and the gateway's leaf under that.
    await ok(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
        '-subj', '/CN=Tollgate e2e root', '-keyout', c('ca.key'), '-out', c('ca.pem')]);
    await ok(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=Tollgate e2e intermediate',
        '-keyout', c('int.key'), '-out', c('int.csr')]);
    writeFileSync(c('int.ext'), 'basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n');
    await ok(['x509', '-req', '-in', c('int.csr'), '-CA', c('ca.pem'), '-CAkey', c('ca.key'), '-set_serial', '0x77',
        '-days', '2', '-extfile', c('int.ext'), '-out', c('int.pem')]);
    await issue('0x1001', c('gateway.pem'), c('gateway.key'));
    ca = readFileSync(c('ca.pem'));
    tlsPort = await freePort();
    await startTlsGateway();
});

after(async () => {
    await g?.stop();
});

test('curl over https with the private CA, next to the plain listener', async () => {
    const caFile = path.join(certs, 'ca.pem');
    const { stdout } = await execFileP('curl', ['-sS', '--cacert', caFile, '-w', '\n%{http_code} %{http_version}',
        '-H', `authorization: Bearer ${KEY}`, '-H', 'content-type: application/json',
        '-d', chatBody('mini'), `https://localhost:${tlsPort}/v1/chat/completions`]);
    const [body, status] = [stdout.slice(0, stdout.lastIndexOf('\n')), stdout.slice(stdout.lastIndexOf('\n') + 1)];
    assert.equal(status, '200 1.1');
    assert.ok(JSON.parse(body).choices[0].message.content.length > 0);
    // The plain listener serves the same gateway at the same time.
    const plain = await fetch(`${g.url}/v1/chat/completions`, { method: 'POST', body: chatBody('mini'),
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' } });
    assert.equal(plain.status, 200);
    await plain.text();
    // Without the CA, curl refuses the certificate: it is really verified.
    const bad = await execFileP('curl', ['-sS', `https://localhost:${tlsPort}/healthz`]).catch((e) => e);
    assert.equal(bad.code, 60);
    // Plain HTTP sent to the TLS port gets no HTTP answer.
    const raw = await new Promise((resolve) => {
        const s = net.connect(tlsPort, '127.0.0.1', () => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
        let got = '';
        s.on('data', (d) => (got += d.toString('latin1')));
        s.on('close', () => resolve(got));
        s.on('error', () => {});
    });
    assert.ok(!raw.startsWith('HTTP/1.1 200'), raw);
});

test('the official OpenAI SDK over https, trusting the CA with NODE_EXTRA_CA_CERTS', async () => {
    const script = `
        import OpenAI from 'openai';
        const client = new OpenAI({ baseURL: 'https://localhost:${tlsPort}/v1', apiKey: '${KEY}' });
        const whole = await client.chat.completions.create({ model: 'mini', messages: [{ role: 'user', content: 'hello over tls' }] });
        const stream = await client.chat.completions.create({ model: 'mini', stream: true,
            messages: [{ role: 'user', content: 'stream over tls' }] });
        let text = '';
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
        console.log(JSON.stringify({ whole: whole.choices[0].message.content, streamed: text }));`;
    const { stdout } = await execFileP(process.execPath, ['--input-type=module', '-e', script], {
        cwd: import.meta.dirname, env: { ...process.env, NODE_EXTRA_CA_CERTS: path.join(certs, 'ca.pem') },
        timeout: 30000,
    });
    const out = JSON.parse(stdout.trim().split('\n').pop());
    assert.ok(out.whole.length > 0);
    assert.ok(out.streamed.length > 0);
});

test('TLS 1.2 and 1.3 only; ALPN http/1.1', async () => {
    const target = `127.0.0.1:${tlsPort}`;
    // The client offers TLS 1.1 for real (security level 0 lets it), and
    // the gateway answers with a protocol_version alert.
    const old = await openssl(['s_client', '-connect', target, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0']);
    assert.notEqual(old.code, 0, old.out);
    assert.match(old.out, /alert protocol version/);
    const t12 = await openssl(['s_client', '-connect', target, '-tls1_2', '-servername', 'localhost',
        '-CAfile', path.join(certs, 'ca.pem'), '-alpn', 'h2,http/1.1']);
    assert.equal(t12.code, 0, t12.out);
    assert.match(t12.out, /Protocol\s*: TLSv1\.2/);
    assert.match(t12.out, /Cipher is ECDHE-ECDSA-(AES\d+-GCM|CHACHA20-POLY1305)/);
    assert.match(t12.out, /ALPN protocol: http\/1\.1/);
    assert.match(t12.out, /Verify return code: 0 \(ok\)/); // the chain file carried the intermediate
    // A TLS 1.2 suite without forward secrecy or AEAD is not offered.
    const weak = await openssl(['s_client', '-connect', target, '-tls1_2', '-cipher', 'AES128-SHA']);
    assert.notEqual(weak.code, 0, weak.out);
    const r = await get('/healthz');
    assert.equal(r.protocol, 'TLSv1.3');
    const alpn = await new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: tlsPort, servername: 'localhost', ca, ALPNProtocols: ['h2', 'http/1.1'] },
            () => { resolve(s.alpnProtocol); s.end(); });
        s.on('error', reject);
    });
    assert.equal(alpn, 'http/1.1');
});

test('certificate rotation under load: new handshakes get the new serial, no request fails', async () => {
    const seen = new Map();
    let failures = 0, done = 0, stop = false;
    const errors = [];
    // A keep-alive connection made before the rotation must keep working.
    const keep = new https.Agent({ keepAlive: true, maxSockets: 1 });
    assert.equal((await get('/healthz', { agent: keep })).serial, '1001');
    const loop = async () => {
        while (!stop) {
            try {
                const r = await get('/v1/chat/completions', { method: 'POST', body: chatBody('mini') });
                if (r.status !== 200) throw new Error(`status ${r.status}: ${r.body}`);
                seen.set(r.serial, (seen.get(r.serial) ?? 0) + 1);
                done++;
            } catch (e) {
                failures++;
                errors.push(String(e));
            }
        }
    };
    const loops = Array.from({ length: 4 }, loop);
    await sleep(700);
    await issue('0x2002', path.join(certs, 'gateway.pem'), path.join(certs, 'gateway.key'));
    process.kill(g.gw.pid, 'SIGHUP');
    const rotated = await until(async () => (await get('/healthz')).serial === '2002', 10000);
    await sleep(500);
    stop = true;
    await Promise.all(loops);
    assert.ok(rotated, `new handshakes never saw serial 2002; log:\n${g.gw.log().slice(-2000)}`);
    assert.equal(failures, 0, errors.slice(0, 5).join('\n'));
    assert.ok(seen.get('1001') > 0 && seen.get('2002') > 0, JSON.stringify([...seen]));
    assert.ok(done > 20, `only ${done} requests ran`);
    // The connection opened on the old certificate goes on with it.
    const again = await get('/healthz', { agent: keep });
    assert.equal(again.status, 200);
    assert.equal(again.serial, '1001');
    keep.destroy();
    assert.match(g.gw.log(), /certificate [^"]*gateway\.pem reloaded/);
});

test('the reload watcher follows the certificate files: rotating them alone is enough', async () => {
    await issue('0x3003', path.join(certs, 'gateway.pem'), path.join(certs, 'gateway.key'));
    const rotated = await until(async () => (await get('/healthz')).serial === '3003', 10000);
    assert.ok(rotated, `no reload after the certificate files changed; log:\n${g.gw.log().slice(-2000)}`);
    assert.match(g.gw.log(), /"reloaded [^"]*\(file change\)/);
});

test('1,000 clients that never finish a handshake hold no worker and are cut at the header timeout', async () => {
    const socks = [];
    let closed = 0;
    for (let i = 0; i < 1000; i++) {
        socks.push(await new Promise((resolve, reject) => {
            const s = net.connect(tlsPort, '127.0.0.1', () => {
                // Half a ClientHello record header, then silence.
                if (i % 2) s.write(Buffer.from([0x16, 0x03, 0x01]));
                resolve(s);
            });
            s.on('error', () => {});
            s.on('close', () => closed++);
            s.once('error', reject);
        }));
    }
    const t0 = Date.now();
    // Meanwhile the gateway serves, over TLS and plain HTTP, at normal speed.
    for (let i = 0; i < 10; i++) {
        const s = Date.now();
        const r = await get('/v1/chat/completions', { method: 'POST', body: chatBody('mini') });
        assert.equal(r.status, 200);
        assert.ok(Date.now() - s < 1000, `a request took ${Date.now() - s} ms next to the stuck handshakes`);
    }
    assert.equal((await fetch(`${g.url}/healthz`)).status, 200);
    assert.ok(closed < 1000, 'the stuck clients were cut before the header timeout could have run');
    const allCut = await until(() => closed === 1000, HEADER_TIMEOUT_MS + 8000);
    assert.ok(allCut, `${closed} of 1000 stuck handshakes were cut`);
    assert.ok(Date.now() - t0 >= HEADER_TIMEOUT_MS - 500);
    for (const s of socks) s.destroy();
    assert.equal((await get('/healthz')).status, 200);
});

test('tollgate check names a key that does not match its certificate, at its line', async () => {
    const bad = path.join(g.dir, 'bad.yaml');
    await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path.join(certs, 'other.key')]);
    writeFileSync(bad, readFileSync(g.config, 'utf8').replace('key: certs/gateway.key', 'key: certs/other.key'));
    const r = await execFileP(BIN, ['check', '-c', bad], { env: gatewayEnv() }).catch((e) => e);
    assert.equal(r.code, 1);
    const line = readFileSync(bad, 'utf8').split('\n').findIndex((l) => l.includes('other.key')) + 1;
    assert.match(r.stdout, new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${line}:\\d+: TLS key \\S*other\\.key does not match certificate`, 'm'));
    const good = await execFileP(BIN, ['check', '-c', g.config], { env: gatewayEnv() });
    assert.match(good.stdout, /: ok \(/);
});
