// A third reference for chat templates: transformers' own apply_chat_template (Python Jinja2),
// recorded by tools/make_golden.py in tests/golden/chat_template_hf.json. mixserve follows
// @huggingface/jinja (chat_template.test.mjs); where the two JavaScript-vs-Python renderers
// agree, mixserve must equal transformers byte for byte, and it must fail where transformers
// raises (the templates' role-alternation errors).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = process.env.MIXSERVE_BIN ?? path.join(repo, 'build/mixserve');
const golden = JSON.parse(fs.readFileSync(path.join(repo, 'tests/golden/chat_template_hf.json'), 'utf8'));
const data = JSON.parse(fs.readFileSync(path.join(repo, 'tests/data/chat_templates/conversations.json'), 'utf8'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mixserve-chat-hf-'));

// Known, documented divergence between Jinja2 and @huggingface/jinja (mixserve follows the
// latter): `none | trim` renders "None" in Python and is an error in JavaScript.
const JS_VS_PYTHON = new Set(['llama-3-8b-instruct.jinja/tool_calls']);

test('chat-template matches transformers apply_chat_template', () => {
  let compared = 0;
  for (const r of golden.renders) {
    const key = `${r.template}/${r.conversation}`;
    if (JS_VS_PYTHON.has(key)) continue;
    const messages = path.join(tmp, 'messages.json');
    fs.writeFileSync(messages, JSON.stringify(data.conversations[r.conversation]));
    const args = ['chat-template', '--template', path.join(repo, 'tests/data/chat_templates', r.template),
      '--messages', messages, '--bos-token', '<s>', '--eos-token', '</s>'];
    if (r.add_generation_prompt) args.push('--add-generation-prompt');
    const got = spawnSync(bin, args, { encoding: 'utf8' });
    const name = `${key} agp=${r.add_generation_prompt}`;
    if ('error' in r) {
      assert.notEqual(got.status, 0, `${name}: transformers raised (${r.error}) but mixserve rendered`);
    } else {
      assert.equal(got.status, 0, `${name}: ${got.stderr}`);
      assert.equal(got.stdout, r.text, name);
    }
    ++compared;
  }
  assert.ok(compared >= 90, `compared only ${compared} renders`);
});

process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
