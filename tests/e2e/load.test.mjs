// Many concurrent streams, and a corpus of malformed requests that must leave the server up.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer } from './server_harness.mjs';

let server;
before(async () => { server = await startServer(['--max-body-bytes', '65536']); });
after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0);
});

test('500 concurrent streaming requests all complete correctly', async () => {
  const client = server.client({ timeout: 120000 });
  const prompts = ['Alpha', 'Beta gamma', 'The quick brown fox', 'Zeta'];
  const expected = await Promise.all(prompts.map(async (p) => (await client.completions.create({
    model: 'tiny', prompt: p, max_tokens: 4, temperature: 0 })).choices[0].text));
  const runs = Array.from({ length: 500 }, async (_, i) => {
    const stream = await client.completions.create({ model: 'tiny', prompt: prompts[i % 4],
      max_tokens: 4, temperature: 0, stream: true });
    let text = '';
    let finish = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    return { i, text, finish };
  });
  for (const { i, text, finish } of await Promise.all(runs)) {
    assert.equal(finish, 'length');
    assert.equal(text, expected[i % 4], `request ${i}`);
  }
});

// Sends raw bytes on a fresh connection; resolves with what came back (until close or 3 s).
function raw(bytes) {
  return new Promise((resolve) => {
    const s = net.connect(server.port, '127.0.0.1');
    let out = Buffer.alloc(0);
    const done = () => { s.destroy(); resolve(out.toString('latin1')); };
    s.setTimeout(3000, done);
    s.on('data', (d) => {
      out = Buffer.concat([out, d]);
      if (/\r\n\r\n/.test(out.toString('latin1')) && /Content-Length: (\d+)/.test(out)) {
        const len = Number(out.toString('latin1').match(/Content-Length: (\d+)/)[1]);
        if (out.length >= out.indexOf('\r\n\r\n') + 4 + len) done();
      }
    });
    s.on('error', done);
    s.on('close', done);
    s.on('connect', () => s.write(bytes));
  });
}

function post(path, body, headers = {}) {
  return fetch(`${server.base}${path}`, { method: 'POST', body,
    headers: { 'content-type': 'application/json', ...headers } });
}

test('malformed JSON bodies get 400 in OpenAI error shape', async () => {
  const huge = '9'.repeat(400);
  const bodies = [
    '', '{', '{"prompt": "x"', 'null', '[]', '"text"', '{"prompt": 1.5}',
    '{"prompt": "x", "max_tokens": "ten"}', '{"prompt": "x", "max_tokens": -1}',
    `{"prompt": "x", "max_tokens": ${huge}}`, `{"prompt": "x", "temperature": 1e400}`,
    '{"prompt": "x", "n": 0}', '{"prompt": "x", "n": 1000000}', '{"prompt": []}',
    '{"prompt": [[]]}', '{"prompt": [1, "a"]}', '{"prompt": [-5]}', '{"prompt": [999999999]}',
    '{"prompt": {"a": 1}}', '{"prompt": "x", "stop": [1]}', '{"prompt": "x", "logprobs": 99}',
    '{"prompt": "x", "top_p": 0}', '{"prompt": "x", "stream": "yes"}',
    '{"prompt": "x", "stream_options": {"include_usage": true}}',
    '{"prompt": "x", "seed": "abc"}', '{"max_tokens": 3}', '{"prompt": "x", "model": 7}',
    '{"prompt": "\\ud800"}',
  ];
  for (const body of bodies) {
    const r = await post('/v1/completions', body);
    assert.equal(r.status, 400, body.slice(0, 60));
    const e = (await r.json()).error;
    assert.equal(e.type, 'invalid_request_error');
    assert.equal(typeof e.message, 'string');
  }
  const chats = ['{"messages": []}', '{"messages": [{"content": "x"}]}',
    '{"messages": [{"role": "user", "content": 5}]}', '{"messages": "hi"}',
    '{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}',
    '{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}'];
  for (const body of chats) {
    const r = await post('/v1/chat/completions', body);
    assert.equal(r.status, 400, body);
  }
  const invalidUtf8 = Buffer.concat([Buffer.from('{"prompt": "'), Buffer.from([0xff, 0xfe]),
    Buffer.from('"}')]);
  assert.equal((await post('/v1/completions', invalidUtf8)).status, 400);
});

test('oversized bodies, bad headers and broken HTTP leave the server answering', async () => {
  const big = JSON.stringify({ prompt: 'x'.repeat(100000) });
  assert.equal((await post('/v1/completions', big)).status, 413);
  const hugeHeader = `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(40000)}\r\n\r\n`;
  assert.match(await raw(hugeHeader), /^HTTP\/1.1 431/);
  assert.match(await raw('NOT HTTP AT ALL\r\n\r\n'), /^HTTP\/1.1 400/);
  assert.match(await raw('POST /v1/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n'),
    /^HTTP\/1.1 400/);
  assert.match(await raw('POST /v1/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"pro'),
    /^$/);  // the client gave up mid-body: nothing to answer
  assert.match(await raw('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1.1 200/);
  assert.equal((await fetch(`${server.base}/v1/completions`)).status, 405);
  assert.equal((await post('/v1/nothing', '{}')).status, 404);
  const ok = await server.client().completions.create({ model: 'tiny', prompt: 'still up?',
    max_tokens: 2 });
  assert.equal(ok.choices.length, 1);
});
