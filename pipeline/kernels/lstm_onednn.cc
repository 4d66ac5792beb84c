// One LSTM layer as two XLA FFI custom calls into oneDNN's fused LSTM primitives:
// RnnpipeLstmFwd (forward training: outputs, final carry, workspace) and
// RnnpipeLstmBwd (gradients of the inputs, the initial carry, the weights and the bias).
//
// Layouts are rnnpipe's own, so one checkpoint runs on either path: time-major
// x [T, B, I], carries [B, H], wi [I, 4H] and wh [H, 4H] with gate blocks i, f, g, o
// (oneDNN's "ldigo" with L = D = 1), one bias [4H] (bi + bh). oneDNN reorders the weights
// into its own blocked layouts on every call (as PyTorch's mkldnn_rnn_layer does).
//
// Threading. XLA calls a custom call from whichever thread of its pool is free, and
// GNU OpenMP builds a separate thread team per calling thread: on a 2-core machine the
// idle teams spun against the working one and the layer ran 1.5-2x slower than alone.
// So every oneDNN call runs on one dedicated thread (one OpenMP team); XLA's thread
// blocks until it is done. Primitive descriptors are created on that thread too (made on
// another thread, execution crashed in oneDNN 3.2's bias copy).
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;

namespace {

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// A weight in oneDNN's preferred layout: the buffer and the reorder into (or out of) it.
struct Staged {
  bool same = true;  // the preferred layout is the user's: no reorder
  memory own;
  dnnl::reorder reorder;
  void init(const memory::desc& preferred, const memory::desc& user, bool into) {
    same = preferred == user;
    if (same) return;
    own = memory(preferred, engine());
    reorder = into ? dnnl::reorder(dnnl::reorder::primitive_desc(engine(), user, engine(), preferred))
                   : dnnl::reorder(dnnl::reorder::primitive_desc(engine(), preferred, engine(), user));
  }
};

struct Layer {
  memory::desc x, y, state, wi, wh, bias;  // rnnpipe's layouts
  dnnl::lstm_forward::primitive_desc fpd;
  dnnl::lstm_backward::primitive_desc bpd;
  dnnl::lstm_forward fwd;
  dnnl::lstm_backward bwd;
  Staged fwi, fwh, bwi, bwh, dwi, dwh;
};

using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, bool>;

// Built once per shape and direction. Only the runner thread (Runner, below) ever calls
// this, so the cache and each Layer's staging buffers (Staged::own, written by every call)
// are touched by one thread at a time and need no lock of their own.
Layer& layer(int64_t T, int64_t B, int64_t I, int64_t H, bool reverse) {
  static std::map<Key, std::unique_ptr<Layer>> cache;
  auto& slot = cache[Key{T, B, I, H, reverse}];
  if (slot) return *slot;
  auto L = std::make_unique<Layer>();
  auto dir = reverse ? dnnl::rnn_direction::unidirectional_right2left
                     : dnnl::rnn_direction::unidirectional_left2right;
  L->x = memory::desc({T, B, I}, dt::f32, tag::tnc);
  L->y = memory::desc({T, B, H}, dt::f32, tag::tnc);
  L->state = memory::desc({1, 1, B, H}, dt::f32, tag::ldnc);
  L->wi = memory::desc({1, 1, I, 4, H}, dt::f32, tag::ldigo);
  L->wh = memory::desc({1, 1, H, 4, H}, dt::f32, tag::ldigo);
  L->bias = memory::desc({1, 1, 4, H}, dt::f32, tag::ldgo);
  memory::desc wi_any({1, 1, I, 4, H}, dt::f32, tag::any), wh_any({1, 1, H, 4, H}, dt::f32, tag::any);
  const auto& s = L->state;
  L->fpd = dnnl::lstm_forward::primitive_desc(engine(), dnnl::prop_kind::forward_training, dir, L->x, s, s,
                                              wi_any, wh_any, L->bias, L->y, s, s);
  L->bpd = dnnl::lstm_backward::primitive_desc(engine(), dnnl::prop_kind::backward, dir, L->x, s, s, wi_any,
                                               wh_any, L->bias, L->y, s, s, L->x, s, s, wi_any, wh_any, L->bias,
                                               L->y, s, s, L->fpd);
  L->fwd = dnnl::lstm_forward(L->fpd);
  L->bwd = dnnl::lstm_backward(L->bpd);
  L->fwi.init(L->fpd.weights_layer_desc(), L->wi, true);
  L->fwh.init(L->fpd.weights_iter_desc(), L->wh, true);
  L->bwi.init(L->bpd.weights_layer_desc(), L->wi, true);
  L->bwh.init(L->bpd.weights_iter_desc(), L->wh, true);
  L->dwi.init(L->bpd.diff_weights_layer_desc(), L->wi, false);
  L->dwh.init(L->bpd.diff_weights_iter_desc(), L->wh, false);
  slot = std::move(L);
  return *slot;
}

// One worker thread that runs every oneDNN call; callers block until theirs is done.
class Runner {
 public:
  Runner() : thread_([this] { loop(); }) { thread_.detach(); }
  void run(const std::function<void()>& job) {
    std::lock_guard<std::mutex> one_at_a_time(calls_);
    std::unique_lock<std::mutex> lock(mu_);
    job_ = &job;
    done_ = false;
    cv_.notify_all();
    cv_.wait(lock, [this] { return done_; });
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return job_ != nullptr; });
      const std::function<void()>* job = job_;
      lock.unlock();
      (*job)();
      lock.lock();
      job_ = nullptr;
      done_ = true;
      cv_.notify_all();
    }
  }
  std::mutex calls_, mu_;
  std::condition_variable cv_;
  const std::function<void()>* job_ = nullptr;
  bool done_ = false;
  std::thread thread_;
};

// The runner of this process (a forked child gets its own: threads do not survive fork).
Runner& runner() {
  static std::mutex mu;
  static Runner* r = nullptr;
  static pid_t owner = 0;
  std::lock_guard<std::mutex> lock(mu);
  if (r == nullptr || owner != getpid()) {
    r = new Runner();  // a parent's runner, if any, is not ours to free
    owner = getpid();
  }
  return *r;
}

// Runs ``body`` on the runner thread; a oneDNN error becomes an FFI error naming ``what``,
// and an ``invalid`` message the body left (a buffer that does not fit) an InvalidArgument.
ffi::Error on_runner(const char* what, const std::function<void()>& body, const std::string& invalid = "") {
  std::string err;
  runner().run([&] {
    try {
      body();
    } catch (const std::exception& e) {
      err = e.what();
    }
  });
  if (!invalid.empty()) return ffi::Error::InvalidArgument(invalid);
  if (err.empty()) return ffi::Error::Success();
  return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN LSTM ") + what + ": " + err);
}

memory wrap(const memory::desc& d, const void* p) { return memory(d, engine(), const_cast<void*>(p)); }

// The weight ``p`` (user layout) as the primitive wants it.
memory staged_in(dnnl::stream& s, Staged& st, const memory::desc& user, const void* p) {
  memory u = wrap(user, p);
  if (st.same) return u;
  st.reorder.execute(s, u, st.own);
  return st.own;
}

// The forward primitive's arguments; the backward primitive takes the same ones (its
// workspace has the same layout) and the gradients besides.
std::unordered_map<int, memory> forward_args(const Layer& L, const float* x, const float* h0, const float* c0,
                                             const memory& wi, const memory& wh, const float* b, const float* y,
                                             const float* hT, const float* cT, const void* ws) {
  return {{DNNL_ARG_SRC_LAYER, wrap(L.x, x)},      {DNNL_ARG_SRC_ITER, wrap(L.state, h0)},
          {DNNL_ARG_SRC_ITER_C, wrap(L.state, c0)}, {DNNL_ARG_WEIGHTS_LAYER, wi},
          {DNNL_ARG_WEIGHTS_ITER, wh},              {DNNL_ARG_BIAS, wrap(L.bias, b)},
          {DNNL_ARG_DST_LAYER, wrap(L.y, y)},       {DNNL_ARG_DST_ITER, wrap(L.state, hT)},
          {DNNL_ARG_DST_ITER_C, wrap(L.state, cT)}, {DNNL_ARG_WORKSPACE, wrap(L.fpd.workspace_desc(), ws)}};
}

using F32 = ffi::Buffer<ffi::F32>;
using Out = ffi::ResultBuffer<ffi::F32>;

std::string shape_text(ffi::Span<const int64_t> dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
  return out + "]";
}

// Every buffer's shape, checked against those x [T, B, I] and h0 [B, H] imply before oneDNN
// sees a pointer (as JAX's FFI examples check theirs): a mismatch is an InvalidArgument that
// names the buffer, never a read or write past its end.
struct Shapes {
  std::string error;
  void expect(const char* name, ffi::Span<const int64_t> got, std::initializer_list<int64_t> want) {
    if (!error.empty() || (got.size() == want.size() && std::equal(got.begin(), got.end(), want.begin()))) return;
    std::vector<int64_t> w(want);
    error = std::string("oneDNN LSTM: ") + name + " has shape " + shape_text(got) + ", expected " +
            shape_text(ffi::Span<const int64_t>(w.data(), w.size()));
  }
  // x, h0, c0, wi, wh, b: the inputs both calls share; returns T, B, I, H
  std::tuple<int64_t, int64_t, int64_t, int64_t> inputs(const F32& x, const F32& h0, const F32& c0, const F32& wi,
                                                        const F32& wh, const F32& b) {
    auto d = x.dimensions();
    if (d.size() != 3 || h0.dimensions().size() != 2) {
      error = "oneDNN LSTM: x must be [T, B, I] and h0 [B, H]; got " + shape_text(d) + " and " +
              shape_text(h0.dimensions());
      return {0, 0, 0, 0};
    }
    int64_t T = d[0], B = d[1], I = d[2], H = h0.dimensions()[1];
    expect("h0", h0.dimensions(), {B, H});
    expect("c0", c0.dimensions(), {B, H});
    expect("wi", wi.dimensions(), {I, 4 * H});
    expect("wh", wh.dimensions(), {H, 4 * H});
    expect("b", b.dimensions(), {4 * H});
    return {T, B, I, H};
  }
  void bytes(const char* name, size_t got, size_t want) {
    if (error.empty() && got != want)
      error = std::string("oneDNN LSTM: ") + name + " has " + std::to_string(got) + " bytes, expected " +
              std::to_string(want);
  }
};

ffi::Error LstmFwd(F32 x, F32 h0, F32 c0, F32 wi, F32 wh, F32 b, Out y, Out hT, Out cT,
                   ffi::ResultBuffer<ffi::U8> ws, bool reverse) {
  Shapes shapes;
  int64_t T, B, I, H;  // plain variables: the lambda below captures them (C++17)
  std::tie(T, B, I, H) = shapes.inputs(x, h0, c0, wi, wh, b);
  shapes.expect("y", y->dimensions(), {T, B, H});
  shapes.expect("hT", hT->dimensions(), {B, H});
  shapes.expect("cT", cT->dimensions(), {B, H});
  if (!shapes.error.empty()) return ffi::Error::InvalidArgument(shapes.error);
  return on_runner("forward", [&] {
    Layer& L = layer(T, B, I, H, reverse);
    shapes.bytes("workspace", ws->size_bytes(), L.fpd.workspace_desc().get_size());
    if (!shapes.error.empty()) return;
    dnnl::stream s(engine());
    memory mwi = staged_in(s, L.fwi, L.wi, wi.typed_data());
    memory mwh = staged_in(s, L.fwh, L.wh, wh.typed_data());
    L.fwd.execute(s, forward_args(L, x.typed_data(), h0.typed_data(), c0.typed_data(), mwi, mwh, b.typed_data(),
                                  y->typed_data(), hT->typed_data(), cT->typed_data(), ws->typed_data()));
    s.wait();
  }, shapes.error);
}

ffi::Error LstmBwd(F32 x, F32 h0, F32 c0, F32 wi, F32 wh, F32 b, F32 y, F32 hT, F32 cT,
                   ffi::Buffer<ffi::U8> ws, F32 dy, F32 dhT, F32 dcT, Out dx, Out dh0, Out dc0, Out dwi, Out dwh,
                   Out db, bool reverse) {
  Shapes shapes;
  int64_t T, B, I, H;  // plain variables: the lambda below captures them (C++17)
  std::tie(T, B, I, H) = shapes.inputs(x, h0, c0, wi, wh, b);
  shapes.expect("y", y.dimensions(), {T, B, H});
  shapes.expect("hT", hT.dimensions(), {B, H});
  shapes.expect("cT", cT.dimensions(), {B, H});
  shapes.expect("dy", dy.dimensions(), {T, B, H});
  shapes.expect("dhT", dhT.dimensions(), {B, H});
  shapes.expect("dcT", dcT.dimensions(), {B, H});
  shapes.expect("dx", dx->dimensions(), {T, B, I});
  shapes.expect("dh0", dh0->dimensions(), {B, H});
  shapes.expect("dc0", dc0->dimensions(), {B, H});
  shapes.expect("dwi", dwi->dimensions(), {I, 4 * H});
  shapes.expect("dwh", dwh->dimensions(), {H, 4 * H});
  shapes.expect("db", db->dimensions(), {4 * H});
  if (!shapes.error.empty()) return ffi::Error::InvalidArgument(shapes.error);
  return on_runner("backward", [&] {
    Layer& L = layer(T, B, I, H, reverse);
    shapes.bytes("workspace", ws.size_bytes(), L.fpd.workspace_desc().get_size());
    if (!shapes.error.empty()) return;
    dnnl::stream s(engine());
    memory mwi = staged_in(s, L.bwi, L.wi, wi.typed_data());
    memory mwh = staged_in(s, L.bwh, L.wh, wh.typed_data());
    memory udwi = wrap(L.wi, dwi->typed_data()), udwh = wrap(L.wh, dwh->typed_data());
    memory mdwi = L.dwi.same ? udwi : L.dwi.own, mdwh = L.dwh.same ? udwh : L.dwh.own;
    // oneDNN adds into the weight and bias gradients: start them at zero.
    std::memset(mdwi.get_data_handle(), 0, mdwi.get_desc().get_size());
    std::memset(mdwh.get_data_handle(), 0, mdwh.get_desc().get_size());
    std::memset(db->typed_data(), 0, L.bias.get_size());
    // The forward's arguments (its outputs now inputs), and the gradients.
    auto args = forward_args(L, x.typed_data(), h0.typed_data(), c0.typed_data(), mwi, mwh, b.typed_data(),
                             y.typed_data(), hT.typed_data(), cT.typed_data(), ws.typed_data());
    args.insert({{DNNL_ARG_DIFF_DST_LAYER, wrap(L.y, dy.typed_data())},
                 {DNNL_ARG_DIFF_DST_ITER, wrap(L.state, dhT.typed_data())},
                 {DNNL_ARG_DIFF_DST_ITER_C, wrap(L.state, dcT.typed_data())},
                 {DNNL_ARG_DIFF_SRC_LAYER, wrap(L.x, dx->typed_data())},
                 {DNNL_ARG_DIFF_SRC_ITER, wrap(L.state, dh0->typed_data())},
                 {DNNL_ARG_DIFF_SRC_ITER_C, wrap(L.state, dc0->typed_data())},
                 {DNNL_ARG_DIFF_WEIGHTS_LAYER, mdwi},
                 {DNNL_ARG_DIFF_WEIGHTS_ITER, mdwh},
                 {DNNL_ARG_DIFF_BIAS, wrap(L.bias, db->typed_data())}});
    L.bwd.execute(s, args);
    if (!L.dwi.same) L.dwi.reorder.execute(s, mdwi, udwi);
    if (!L.dwh.same) L.dwh.reorder.execute(s, mdwh, udwh);
    s.wait();
  }, shapes.error);
}

}  // namespace

// Bytes of the workspace the forward call returns and the backward call reads
// (-1: oneDNN cannot build the primitive; the message is printed to stderr).
extern "C" int64_t rnnpipe_lstm_workspace_bytes(int64_t T, int64_t B, int64_t I, int64_t H, int reverse) {
  int64_t bytes = -1;
  ffi::Error e = on_runner("workspace", [&] {
    bytes = static_cast<int64_t>(layer(T, B, I, H, reverse != 0).fpd.workspace_desc().get_size());
  });
  if (e.failure()) {
    fprintf(stderr, "%s\n", e.message().c_str());
    return -1;
  }
  return bytes;
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnpipeLstmFwd, LstmFwd,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Ret<F32>().Ret<F32>().Ret<F32>().Ret<ffi::Buffer<ffi::U8>>()
                                  .Attr<bool>("reverse"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnpipeLstmBwd, LstmBwd,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<ffi::Buffer<ffi::U8>>()
                                  .Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>().Ret<F32>()
                                  .Attr<bool>("reverse"));
