#include "engine/train/pipeline_pass.hpp"

#include <algorithm>
#include <memory>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/runtime/autograd.hpp"
#include "engine/runtime/kernel_table.hpp"
#include "engine/runtime/op_profile.hpp"
#include "engine/train/batch_loss.hpp"

namespace engine::train {
namespace {

using Pipeline = session::TrainingSession::Pipeline;

// The (B,T,C) hidden states a stage sends on, and their gradient.
rt::Dims activation_dims(session::TrainingSession& session, const data::Batch& b) {
  return rt::Dims{b.rows, b.seq_len, session.model().info().hidden_size};
}

// Sends and receives between neighbours: a broadcast over their two-rank group (rank 0 the lower stage), so
// the same code serves Gloo (CPU) and NCCL (CUDA). Activations go up from rank 0, gradients down from rank 1.
// The dtype of the activations is agreed once, with the first one a link carries.
class Links {
 public:
  explicit Links(session::TrainingSession& session) : session_(session), pl_(*session.pipeline()) {}

  rt::Tensor receive_activation(const data::Batch& b) {
    rt::Tensor x = rt::Tensor::empty(activation_dims(session_, b), agree_dtype(*pl_.prev, /*sender=*/false, ENG_F32), device());
    pl_.prev->broadcast(x, 0);
    return x;
  }
  void send_activation(const rt::Tensor& y) {
    agree_dtype(*pl_.next, /*sender=*/true, y.dtype());
    rt::Tensor c = y.detached().contiguous();
    pl_.next->broadcast(c, 0);
  }
  rt::Tensor receive_gradient(const data::Batch& b, eng_dtype dtype) {
    rt::Tensor g = rt::Tensor::empty(activation_dims(session_, b), dtype, device());
    pl_.next->broadcast(g, 1);
    return g;
  }
  void send_gradient(const rt::Tensor& g) {
    rt::Tensor c = g.contiguous();
    pl_.prev->broadcast(c, 1);
  }

 private:
  rt::Device& device() { return session_.host().device(); }
  // The first activation over a link is preceded by its dtype (a CPU tensor); afterwards both sides know it.
  eng_dtype agree_dtype(rt::Communicator& link, bool sender, eng_dtype mine) {
    int& agreed = sender ? pl_.sent_dtype : pl_.received_dtype;
    if (agreed < 0) {
      rt::Tensor t = rt::Tensor::from_vector(rt::Dims{1}, ENG_I64, rt::cpu_device(),
                                             std::vector<int64_t>{static_cast<int64_t>(mine)});
      link.broadcast(t, 0);
      int64_t v = 0;
      t.copy_to_host(&v, sizeof v);
      agreed = static_cast<int>(v);
    } else if (sender && agreed != static_cast<int>(mine)) {
      fail("pipeline stage {}: an activation of dtype {} after the agreed {} (the blocks' output dtype changed)",
           pl_.stage.stage, rt::dtype_name(mine), rt::dtype_name(static_cast<eng_dtype>(agreed)));
    }
    return static_cast<eng_dtype>(agreed);
  }

  session::TrainingSession& session_;
  const Pipeline& pl_;
};

// One micro-batch in flight on this stage.
struct InFlight {
  rt::Tape* tape = nullptr;  // from the pipeline's pool; null when none is in flight
  std::shared_ptr<rt::GradSink> input_grad;  // where the gradient of the received activation accumulates
  eng_dtype input_dtype = ENG_F32;
  rt::Tensor output;                          // the activation sent on, or (last stage) the scaled loss
};

class StagePass {
 public:
  StagePass(session::TrainingSession& session, std::span<const data::Batch> batches, double scale, bool grad)
      : session_(session),
        hs_(session.host()),
        pl_(*session.pipeline()),
        links_(session),
        batches_(batches),
        scale_(scale),
        grad_(grad),
        flights_(batches.size()) {}

  // After a failure part-way the tapes still recording go back to the pool empty.
  ~StagePass() {
    hs_.use_tape(nullptr);
    for (InFlight& f : flights_)
      if (f.tape != nullptr) f.tape->clear();
  }

  // The forward of micro-batch m from its input (received already, undefined on the first stage).
  void forward(size_t m, const rt::Tensor& received) {
    const data::Batch& b = batches_[m];
    InFlight& f = flights_[m];
    if (grad_) {
      f.tape = acquire_tape();
      hs_.use_tape(f.tape);
    }  // evaluation records nothing: the session's tape, with grad off
    rt::Tensor input;
    if (!pl_.first()) {
      f.input_dtype = received.dtype();
      if (grad_) {
        f.input_grad = std::make_shared<rt::GradSink>(received.shape(), received.dtype(), received.device());
        input = f.tape->leaf(received, f.input_grad);
      } else {
        input = received;
      }
    }
    const BatchTensors t = batch_tensors(session_, b);
    rt::Tensor y;
    {
      rt::HostTimer timer("forward", "host");
      y = session_.model().forward_blocks(t.ids, t.pos, t.seg, input, pl_.stage.first_block, pl_.stage.last_block,
                                          grad_);
    }
    if (pl_.last()) {
      f.output = head_loss(session_, b, y, scale_, grad_);
      const rt::Tensor l = f.output.detached();
      if (!loss_sum_.defined()) {
        loss_sum_ = rt::Tensor::empty(rt::Dims{}, ENG_F64, l.device());
        l.device().kernels().fill(loss_sum_, 0.0);
      }
      l.device().kernels().axpby(loss_sum_, 1.0, l, 1.0);
    } else {
      links_.send_activation(y);
      f.output = y;
    }
    hs_.use_tape(nullptr);
    if (!grad_) flights_[m] = InFlight{};
  }

  // A tape for a micro-batch, recording as the session's does: an idle one of the pool, or a new one.
  rt::Tape* acquire_tape() {
    rt::Tape* t = nullptr;
    for (const auto& p : pl_.tapes)
      if (std::none_of(flights_.begin(), flights_.end(), [&](const InFlight& f) { return f.tape == p.get(); })) {
        t = p.get();
        break;
      }
    if (t == nullptr) t = pl_.tapes.emplace_back(std::make_unique<rt::Tape>()).get();
    hs_.own_tape().configure_like(*t);
    return t;
  }

  // The backward of micro-batch m; returns the gradient of its input (undefined on the first stage), which the
  // caller sends on once it has received what the schedule receives first.
  rt::Tensor backward(size_t m) {
    InFlight& f = flights_[m];
    hs_.use_tape(f.tape);
    {
      rt::HostTimer timer("backward", "host");
      if (pl_.last()) {
        f.tape->backward(f.output);
      } else {
        const rt::Tensor dy = links_.receive_gradient(batches_[m], f.output.dtype());
        if (rt::Tape::requires_grad(f.output))
          f.tape->backward(f.output, dy);
        else
          f.tape->clear();  // nothing trainable here and no input gradient to pass on (a first stage)
      }
    }
    hs_.use_tape(nullptr);
    rt::Tensor dx;
    if (!pl_.first()) {
      dx = f.input_grad->grad();
      if (!dx.defined()) {  // the stage's output did not depend on its input (not for a decoder): zeros
        dx = rt::Tensor::empty(activation_dims(session_, batches_[m]), f.input_dtype, hs_.device());
        hs_.device().fill_zero(dx.raw_data(), dx.nbytes());
      }
    }
    flights_[m] = InFlight{};
    return dx;
  }

  rt::Tensor receive(size_t m) { return pl_.first() ? rt::Tensor() : links_.receive_activation(batches_[m]); }
  void send_back(const rt::Tensor& dx) {
    if (!pl_.first()) links_.send_gradient(dx);
  }

  double loss() const { return loss_sum_.defined() ? loss_sum_.item() : 0.0; }

 private:
  session::TrainingSession& session_;
  host::HostSession& hs_;
  const Pipeline& pl_;
  Links links_;
  std::span<const data::Batch> batches_;
  double scale_;
  bool grad_;
  std::vector<InFlight> flights_;
  rt::Tensor loss_sum_;
};

}  // namespace

double pipeline_forward_backward(session::TrainingSession& session, std::span<const data::Batch> micro_batches,
                                 double scale) {
  const Pipeline& pl = *session.pipeline();
  StagePass pass(session, micro_batches, scale, /*grad=*/true);
  const size_t M = micro_batches.size();
  const size_t W = std::min(M, static_cast<size_t>(std::max(0, pl.stage.warmup)));
  const size_t steady = M - W;
  for (size_t i = 0; i < W; ++i) pass.forward(i, pass.receive(i));
  rt::Tensor next_input = steady > 0 ? pass.receive(W) : rt::Tensor();
  for (size_t i = 0; i < steady; ++i) {
    pass.forward(W + i, next_input);
    const rt::Tensor dx = pass.backward(i);
    // The next forward's input before this backward's gradient: the order the stage below sends them in.
    next_input = i + 1 < steady ? pass.receive(W + i + 1) : rt::Tensor();
    pass.send_back(dx);
  }
  for (size_t i = steady; i < M; ++i) pass.send_back(pass.backward(i));

  // A parameter every stage keeps (a tied embedding) but this one did not use: a zero gradient, so that the
  // strategy's sum over the stages sees the same gradients everywhere and every copy steps alike.
  rt::ParamStore& store = session.host().params();
  for (rt::Param* p : session.trainable()) {
    if (p->held_by_one() || store.grad(*p).defined()) continue;
    rt::Tensor zeros = rt::Tensor::zeros(p->compute_shape(), ENG_F32, session.host().device());
    store.grad_sink(*p).accumulate(zeros);
  }
  rt::HostTimer timer("loss read", "waits for the device");
  return pass.loss();
}

double pipeline_evaluate(session::TrainingSession& session, std::span<const data::Batch> batches) {
  StagePass pass(session, batches, 1.0, /*grad=*/false);
  for (size_t i = 0; i < batches.size(); ++i) pass.forward(i, pass.receive(i));
  return pass.loss();
}

}  // namespace engine::train
