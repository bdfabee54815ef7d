#!/usr/bin/env python3
"""Golden logits from Hugging Face transformers (float32, eager attention) for the CPU backend.

Weights are made exactly as mixserve's make_random_cpu_weights(config, seed=7) makes them (the
same splitmix64 stream and float32 rounding), written as a checkpoint and loaded through
from_pretrained, so only the logits are committed. Needs torch, transformers, safetensors, numpy.

Usage: OUT=tests/golden python3 tools/make_cpu_golden.py   (writes cpu_backend_hf.json)
The configs below must match the ones in tests/unit/test_cpu_golden.cpp.
"""
import json, os, tempfile
import numpy as np, torch, transformers
from safetensors.torch import save_file
M = (1 << 64) - 1
class Rng:
    def __init__(s, seed): s.i = 0; s.seed = seed
    def sym(s, n):
        k = np.arange(s.i + 1, s.i + n + 1, dtype=np.uint64); s.i += n
        with np.errstate(over="ignore"):
            z = np.uint64(s.seed) + k * np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 / 16777216.0) - np.float32(1)
    def uni(s, shape, scale, center=0.0):
        n = int(np.prod(shape))
        return (np.float32(center) + np.float32(scale) * s.sym(n)).astype(np.float32).reshape(shape)
def weights(c, moe, seed):
    V, H, F, L = c["vocab_size"], c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    q, kv = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    f = lambda x: np.float32(1) / np.sqrt(np.float32(x))
    r, w = Rng(seed), {}
    w["model.embed_tokens.weight"] = r.uni((V, H), 1.0)
    for l in range(L):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = r.uni((H,), 0.1, 1.0)
        for n, s in (("q", (q, H)), ("k", (kv, H)), ("v", (kv, H))):
            w[p + f"self_attn.{n}_proj.weight"] = r.uni(s, f(H))
        w[p + "self_attn.o_proj.weight"] = r.uni((H, q), f(q))
        w[p + "post_attention_layernorm.weight"] = r.uni((H,), 0.1, 1.0)
        if moe:
            w[p + "block_sparse_moe.gate.weight"] = r.uni((c["num_local_experts"], H), f(H))
        for e in range(c["num_local_experts"] if moe else 1):
            g, u, d = ((f"block_sparse_moe.experts.{e}.w{i}.weight" for i in (1, 3, 2)) if moe
                       else ("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"))
            w[p + g] = r.uni((F, H), f(H)); w[p + u] = r.uni((F, H), f(H)); w[p + d] = r.uni((H, F), f(F))
    w["model.norm.weight"] = r.uni((H,), 0.1, 1.0)
    if not c.get("tie_word_embeddings"):
        w["lm_head.weight"] = r.uni((V, H), f(H))
    return w
CASES = {
 "mixtral": ("Mixtral", dict(vocab_size=97, hidden_size=48, intermediate_size=40, num_hidden_layers=2,
     num_attention_heads=6, num_key_value_heads=2, head_dim=8, num_local_experts=4,
     num_experts_per_tok=2, rope_theta=1e6, rms_norm_eps=1e-5, sliding_window=None,
     tie_word_embeddings=False)),
 "mistral_window": ("Mistral", dict(vocab_size=61, hidden_size=36, intermediate_size=52,
     num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, head_dim=12,
     rope_theta=10000.0, rms_norm_eps=1e-6, sliding_window=5, tie_word_embeddings=True)),
}
out = {"transformers": transformers.__version__, "torch": torch.__version__, "seed": 7, "cases": {}}
for name, (arch, cfg) in CASES.items():
    model = getattr(transformers, arch + "ForCausalLM")(getattr(transformers, arch + "Config")(**cfg))
    d = tempfile.mkdtemp(); model.save_pretrained(d)
    for f in os.listdir(d):
        if f.endswith(".safetensors"): os.remove(os.path.join(d, f))
    w = weights(cfg, arch == "Mixtral", 7)
    save_file({k: torch.from_numpy(v) for k, v in w.items()}, os.path.join(d, "model.safetensors"), {"format": "pt"})
    m = getattr(transformers, arch + "ForCausalLM").from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    ids = [(i * 37 + 11) % cfg["vocab_size"] for i in range(12)]
    with torch.no_grad():
        lg = m(torch.tensor([ids])).logits[0]
    out["cases"][name] = {"token_ids": ids, "logits": [[float("%.8g" % x) for x in row] for row in lg.tolist()]}
    print(name, lg.shape)
json.dump(out, open(os.environ["OUT"] + "/cpu_backend_hf.json", "w"))
