// `mixserve chat-template` must print exactly what @huggingface/jinja (transformers.js's
// renderer) renders, for every stored template x conversation x context x generation prompt,
// and must fail with the same message where the reference fails (raise_exception cases).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { FEATURE_MESSAGES, loadCases, loadFeatures, renderFeature, renderReference } from '../../tools/gen_chat_template_golden.mjs';

const bin = process.env.MIXSERVE_BIN ?? 'build/mixserve';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mixserve-chat-'));

function runMixserve(args) {
  return spawnSync(bin, ['chat-template', ...args], { encoding: 'utf8' });
}

function renderMixserve(c) {
  const messages = path.join(tmp, 'messages.json');
  const context = path.join(tmp, 'context.json');
  const tmpl = path.join(tmp, 'template.jinja');
  fs.writeFileSync(messages, JSON.stringify(c.messages));
  fs.writeFileSync(context, JSON.stringify(c.extra));
  fs.writeFileSync(tmpl, c.source);
  const args = ['--template', tmpl, '--messages', messages, '--context', context,
                '--bos-token', c.bos_token, '--eos-token', c.eos_token];
  if (c.add_generation_prompt) args.push('--add-generation-prompt');
  return runMixserve(args);
}

test('chat-template matches @huggingface/jinja on every stored template and conversation', () => {
  const cases = loadCases();
  assert.ok(cases.length >= 100, 'expected the full case matrix');
  let errors = 0;
  for (const c of cases) {
    const name = `${c.template} / ${c.conversation} / ${c.context} / agp=${c.add_generation_prompt}`;
    const ref = renderReference(c);
    const got = renderMixserve(c);
    if ('error' in ref) {
      ++errors;
      assert.notEqual(got.status, 0, `${name}: reference fails (${ref.error}) but mixserve did not`);
      assert.ok(got.stderr.includes(ref.error),
                `${name}: error should contain "${ref.error}", got: ${got.stderr}`);
    } else {
      assert.equal(got.status, 0, `${name}: mixserve failed: ${got.stderr}`);
      assert.equal(got.stdout, ref.output, name);
    }
  }
  assert.ok(errors > 0, 'the matrix must include raise_exception cases');
});

test('chat-template --model reads chat_template and tokens from tokenizer_config.json', () => {
  const model = path.join(tmp, 'model');
  fs.mkdirSync(model, { recursive: true });
  const source = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}";
  fs.writeFileSync(path.join(model, 'tokenizer_config.json'), JSON.stringify({
    bos_token: { __type: 'AddedToken', content: '<s>' }, eos_token: '</s>',
    chat_template: [{ name: 'tool_use', template: 'unused' }, { name: 'default', template: source }],
  }));
  const messages = [{ role: 'user', content: 'hi' }];
  const file = path.join(tmp, 'm.json');
  fs.writeFileSync(file, JSON.stringify(messages));
  const got = runMixserve(['--model', model, '--messages', file]);
  assert.equal(got.status, 0, got.stderr);
  const ref = new Template(source).render({ messages, bos_token: '<s>', eos_token: '</s>' });
  assert.equal(got.stdout, ref);
});

test('chat-template reports syntax errors with a position', () => {
  const tmpl = path.join(tmp, 'bad.jinja');
  fs.writeFileSync(tmpl, 'ok\n{% include "x.jinja" %}');
  const file = path.join(tmp, 'm2.json');
  fs.writeFileSync(file, '[]');
  const got = runMixserve(['--template', tmpl, '--messages', file]);
  assert.notEqual(got.status, 0);
  assert.match(got.stderr, /line 2, column 4: '\{% include %\}' is not supported/);
});

test('chat-template matches @huggingface/jinja on one small template per language feature', () => {
  const messages = path.join(tmp, 'feature_messages.json');
  fs.writeFileSync(messages, JSON.stringify(FEATURE_MESSAGES));
  for (const f of loadFeatures()) {
    if (f.name === 'strftime_shape') continue;  // clock-dependent
    const tmpl = path.join(tmp, 'feature.jinja');
    fs.writeFileSync(tmpl, f.template);
    const ref = renderFeature(f);
    const got = runMixserve(['--template', tmpl, '--messages', messages]);
    if ('error' in ref) {
      assert.notEqual(got.status, 0, f.name);
      assert.ok(got.stderr.includes(ref.error), `${f.name}: ${got.stderr}`);
    } else {
      assert.equal(got.status, 0, `${f.name}: ${got.stderr}`);
      assert.equal(got.stdout, ref.output, f.name);
    }
  }
});
