// ApiService without sockets: routing, authentication, loading/draining, overload, context
// limits, and CompletionJob output (streamed equals non-streamed) on the fake engine.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <thread>

#include "engine_fakes.h"
#include "server/api_service.h"

namespace mixserve::server {
namespace {

using json = nlohmann::json;

struct Fixture {
  explicit Fixture(ServiceOptions opts = {"tiny", "", 1024}, int32_t max_num_seqs = 32)
      : service(opts) {
    EngineConfig cfg;
    cfg.block_size = 8;
    cfg.kv_cache_tokens = 1024;
    cfg.max_model_len = 256;
    cfg.max_num_seqs = max_num_seqs;
    tokenizer = std::make_shared<testing::FakeTokenizer>();
    engine = std::make_unique<Engine>(std::make_unique<testing::FakeBackend>(64), tokenizer, cfg);
  }
  void ready() {
    engine->start();
    service.set_ready(engine.get(), tokenizer);
  }
  HttpResponse post(const std::string& path, const std::string& body, std::string auth = "") {
    return service.handle("POST", path, auth, body);
  }
  // Polls a job to the end (as the HTTP layer does on wake-ups); returns all its bytes.
  static std::string drain(CompletionJob& job) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!job.done() && std::chrono::steady_clock::now() < deadline) {
      out += job.poll();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_TRUE(job.done());
    return out;
  }

  ApiService service;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::unique_ptr<Engine> engine;
};

json body_json(const HttpResponse& r) { return json::parse(r.body); }

TEST(ServerApi, HealthAndModelsAre503UntilReadyThen200) {
  Fixture f;
  EXPECT_EQ(f.service.handle("GET", "/health", "", "").status, 503);
  EXPECT_EQ(f.post("/v1/completions", R"({"prompt": [1, 2]})").status, 503);
  EXPECT_EQ(f.service.handle("GET", "/v1/models", "", "").status, 503);  // not listed yet
  f.ready();
  EXPECT_EQ(f.service.handle("GET", "/v1/models", "", "").status, 200);
  EXPECT_EQ(f.service.handle("GET", "/health", "", "").status, 200);
  EXPECT_EQ(f.service.handle("GET", "/health?x=1", "", "").status, 200);
  f.service.set_draining();
  const HttpResponse r = f.post("/v1/completions", R"({"prompt": [1, 2]})");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(body_json(r)["error"]["type"], "service_unavailable_error");
}

TEST(ServerApi, RoutesMethodsAndModels) {
  Fixture f;
  f.ready();
  EXPECT_EQ(f.service.handle("GET", "/nope", "", "").status, 404);
  EXPECT_EQ(f.service.handle("GET", "/v1/completions", "", "").status, 405);
  EXPECT_EQ(f.service.handle("POST", "/health", "", "").status, 405);
  const json models = body_json(f.service.handle("GET", "/v1/models", "", ""));
  EXPECT_EQ(models["data"][0]["id"], "tiny");
  EXPECT_EQ(models["data"][0]["max_model_len"], 256);
  EXPECT_EQ(f.service.handle("GET", "/v1/models/tiny", "", "").status, 200);
  EXPECT_EQ(f.service.handle("GET", "/v1/models/other", "", "").status, 404);
  const HttpResponse unknown = f.post("/v1/completions", R"({"model": "gpt", "prompt": [1]})");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(body_json(unknown)["error"]["code"], "model_not_found");
  EXPECT_EQ(body_json(f.service.handle("GET", "/version", "", ""))["version"], MIXSERVE_VERSION);
  const HttpResponse metrics = f.service.handle("GET", "/metrics", "", "");
  EXPECT_NE(metrics.body.find("mixserve:request_errors_total{code=\"404\""), std::string::npos);
  EXPECT_NE(metrics.content_type.find("text/plain"), std::string::npos);
}

TEST(ServerApi, ApiKeyGuardsV1AndTokenizeOnly) {
  Fixture f({"tiny", "k3y", 1024});
  f.ready();
  EXPECT_EQ(f.service.handle("GET", "/v1/models", "", "").status, 401);
  EXPECT_EQ(f.service.handle("GET", "/v1/models", "Bearer wrong", "").status, 401);
  EXPECT_EQ(f.service.handle("GET", "/v1/models", "k3y", "").status, 401);
  EXPECT_EQ(f.service.handle("GET", "/v1/models", "Bearer k3y", "").status, 200);
  EXPECT_EQ(f.post("/detokenize", R"({"tokens": [1]})").status, 401);
  EXPECT_EQ(f.service.handle("GET", "/health", "", "").status, 200);
  EXPECT_EQ(f.service.handle("GET", "/metrics", "", "").status, 200);
}

TEST(ServerApi, ContextLimitAndVocabularyAre400) {
  Fixture f;
  f.ready();
  const HttpResponse over = f.post("/v1/completions", R"({"prompt": [1, 2], "max_tokens": 255})");
  EXPECT_EQ(over.status, 400);
  EXPECT_EQ(body_json(over)["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(body_json(over)["error"]["param"], "max_tokens");
  EXPECT_EQ(f.post("/v1/completions", R"({"prompt": [1, 2], "max_tokens": 254})").status, 200);
  std::string long_prompt = "[1";
  for (int i = 0; i < 300; ++i) long_prompt += ",1";
  const HttpResponse too_long = f.post("/v1/completions", "{\"prompt\": " + long_prompt + "]}");
  EXPECT_EQ(body_json(too_long)["error"]["param"], "prompt");
  EXPECT_EQ(body_json(f.post("/v1/completions", R"({"prompt": [64]})"))["error"]["param"],
            "prompt");
  // The fake tokenizer has no chat template.
  EXPECT_EQ(f.post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "x"}]})")
                .status, 400);
}

TEST(ServerApi, StreamedTextEqualsNonStreamedText) {
  Fixture f;
  f.ready();
  const std::string req = R"("prompt": [[5, 6, 7], [9]], "max_tokens": 9, "n": 2, "temperature": 0)";
  HttpResponse full = f.post("/v1/completions", "{" + req + "}");
  ASSERT_EQ(full.status, 200) << full.body;
  ASSERT_TRUE(full.job);
  EXPECT_FALSE(full.job->streaming());
  const json body = json::parse(Fixture::drain(*full.job));
  ASSERT_EQ(body["choices"].size(), 4u);  // 2 prompts x n = 2
  EXPECT_EQ(body["usage"]["prompt_tokens"], 4);
  EXPECT_EQ(body["usage"]["completion_tokens"], 36);

  HttpResponse streamed = f.post("/v1/completions", "{" + req +
                                 R"(, "stream": true, "stream_options": {"include_usage": true}})");
  ASSERT_TRUE(streamed.job && streamed.job->streaming());
  EXPECT_EQ(streamed.content_type, "text/event-stream");
  const std::string sse = Fixture::drain(*streamed.job);
  std::vector<std::string> texts(4);
  std::string id;
  json usage;
  size_t pos = 0;
  bool done = false;
  while (pos < sse.size()) {
    const size_t end = sse.find("\n\n", pos);
    ASSERT_NE(end, std::string::npos);
    const std::string data = sse.substr(pos + 6, end - pos - 6);
    pos = end + 2;
    if (data == "[DONE]") {
      done = true;
      EXPECT_EQ(pos, sse.size());
      break;
    }
    const json c = json::parse(data);
    if (id.empty()) id = c["id"];
    EXPECT_EQ(c["id"], id);
    if (c["choices"].empty()) usage = c["usage"];
    for (const json& ch : c["choices"]) texts[ch["index"].get<size_t>()] += ch["text"];
  }
  EXPECT_TRUE(done);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(texts[i], body["choices"][i]["text"]) << i;
  EXPECT_EQ(usage, body["usage"]);
  EXPECT_EQ(body["choices"][0]["text"], body["choices"][1]["text"]);  // greedy samples agree
}

TEST(ServerApi, FullQueueIs429WithRetryAfterAndJobsReleaseTheirSlot) {
  Fixture f({"tiny", "", 1}, /*max_num_seqs=*/1);
  f.ready();
  const std::string req = R"({"prompt": [3], "max_tokens": 200, "ignore_eos": true})";
  HttpResponse a = f.post("/v1/completions", req);
  HttpResponse b = f.post("/v1/completions", req);
  ASSERT_TRUE(a.job && b.job);
  EXPECT_EQ(f.service.requests_in_flight(), 2);
  const HttpResponse c = f.post("/v1/completions", req);
  EXPECT_EQ(c.status, 429);
  ASSERT_EQ(c.headers.size(), 1u);
  EXPECT_EQ(c.headers[0], (std::pair<std::string, std::string>{"Retry-After", "1"}));
  EXPECT_EQ(body_json(c)["error"]["type"], "rate_limit_error");
  // A cancelled (disconnected) job frees its place as soon as it goes away.
  a.job->cancel();
  a.job.reset();
  EXPECT_EQ(f.service.requests_in_flight(), 1);
  b.job.reset();
  EXPECT_EQ(f.service.requests_in_flight(), 0);
  // The engine stops the cancelled requests within a step and frees their blocks.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (f.engine->stats().num_free_kv_blocks != f.engine->num_kv_blocks() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(f.engine->stats().num_free_kv_blocks, f.engine->num_kv_blocks());
  EXPECT_LT(f.engine->stats().generated_tokens, 400);
}

TEST(ServerApi, TokenStreamListenerFiresOnSetAndAfterEveryPush) {
  TokenStream stream("r", 2);
  std::atomic<int> wakeups{0};
  stream.set_listener([&] {
    // Called without the stream's lock: the consumer may read right here.
    EXPECT_FALSE(stream.finished() && wakeups.load() < 3);
    wakeups.fetch_add(1);
  });
  EXPECT_EQ(wakeups.load(), 1);  // events may have arrived before the listener was set
  StreamEvent e;
  e.token_ids = {1};
  stream.push(e);
  EXPECT_EQ(wakeups.load(), 2);
  e.finish_reason = "stop";
  stream.push(e);
  e.sample_index = 1;
  stream.push(e);
  EXPECT_EQ(wakeups.load(), 4);
  stream.set_listener(nullptr);
  stream.push(e);
  EXPECT_EQ(wakeups.load(), 4);
}

TEST(ServerApi, JobListenerWakesUntilTheJobIsDone) {
  Fixture f;
  f.ready();
  HttpResponse r = f.post("/v1/completions", R"({"prompt": [4], "max_tokens": 5, "stream": true})");
  ASSERT_TRUE(r.job);
  std::atomic<int> wakeups{0};
  r.job->set_listener([&] { wakeups.fetch_add(1); });
  // Poll only when woken, as the HTTP layer does.
  std::string out;
  int seen = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!r.job->done() && std::chrono::steady_clock::now() < deadline) {
    if (wakeups.load() != seen) {
      seen = wakeups.load();
      out += r.job->poll();
    }
    std::this_thread::yield();
  }
  ASSERT_TRUE(r.job->done());
  EXPECT_EQ(out.substr(out.size() - 14), "data: [DONE]\n\n");
  r.job->set_listener(nullptr);
}

TEST(ServerApi, TokenizeAndDetokenize) {
  Fixture f;
  f.ready();
  const json d = body_json(f.post("/detokenize", R"({"tokens": [1, 2]})"));
  EXPECT_EQ(d["prompt"], f.tokenizer->decode(std::vector<int32_t>{1, 2}, false));
  EXPECT_EQ(f.post("/detokenize", R"({"tokens": [100]})").status, 400);
  const json t = body_json(f.post("/tokenize", R"({"prompt": "abc"})"));
  EXPECT_EQ(t["count"], 0);  // the fake tokenizer encodes nothing
  EXPECT_EQ(t["max_model_len"], 256);
}

}  // namespace
}  // namespace mixserve::server
