// Renders every template in tests/data/chat_templates/ over every conversation with
// @huggingface/jinja (the renderer transformers.js uses, the reference we match byte for byte)
// and writes tests/data/chat_templates/expected.json for the C++ unit test.
//
//   node tools/gen_chat_template_golden.mjs
//
// Each case: template x conversation x context x add_generation_prompt, with either the
// rendered `output` or the reference's `error` message (raise_exception and friends).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Template } from '@huggingface/jinja';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.join(root, 'tests/data/chat_templates');

export function loadCases() {
  const data = JSON.parse(fs.readFileSync(path.join(dir, 'conversations.json'), 'utf8'));
  const templates = fs.readdirSync(dir).filter((f) => f.endsWith('.jinja')).sort();
  const cases = [];
  for (const file of templates) {
    const source = fs.readFileSync(path.join(dir, file), 'utf8');
    for (const [conversation, messages] of Object.entries(data.conversations)) {
      for (const [context, extra] of Object.entries(data.contexts)) {
        for (const addGenerationPrompt of [false, true]) {
          cases.push({ template: file, source, conversation, messages, context, extra,
                       add_generation_prompt: addGenerationPrompt,
                       bos_token: data.bos_token, eos_token: data.eos_token });
        }
      }
    }
  }
  return cases;
}

// Small templates, one language feature each, rendered over a two-message conversation.
export const FEATURE_MESSAGES = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi there' },
];

export function loadFeatures() {
  return JSON.parse(fs.readFileSync(path.join(dir, 'features.json'), 'utf8'));
}

export function renderFeature(f) {
  try {
    return { output: new Template(f.template).render({ messages: FEATURE_MESSAGES,
                                                        add_generation_prompt: false }) };
  } catch (e) {
    return { error: e.message };
  }
}

// As transformers.js's apply_chat_template calls it.
export function renderReference(c) {
  try {
    const output = new Template(c.source).render({
      messages: c.messages,
      add_generation_prompt: c.add_generation_prompt,
      bos_token: c.bos_token,
      eos_token: c.eos_token,
      ...c.extra,
    });
    return { output };
  } catch (e) {
    return { error: e.message };
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = loadCases().map((c) => ({
    template: c.template, conversation: c.conversation, context: c.context,
    add_generation_prompt: c.add_generation_prompt, ...renderReference(c),
  }));
  const features = loadFeatures().map((f) => ({ name: f.name, ...renderFeature(f) }));
  fs.writeFileSync(path.join(dir, 'expected.json'),
                   JSON.stringify({ conversations: out, features }, null, 1) + '\n');
  const errors = out.filter((c) => 'error' in c).length;
  console.log(`wrote ${features.length} features, ${out.length} cases (${errors} errors) to tests/data/chat_templates/expected.json`);
}
