/*
 * engine/abi/engine.h: the core of the plugin C ABI, version 1.
 *
 * This is the only contract between the engine and a plugin library. Rules (docs/ABI.md has the long form):
 *  - C11 only; fixed-width integers, floats, pointers and uint32_t-sized enum constants cross. No STL, no
 *    exceptions, no RTTI.
 *  - Every struct starts with `uint32_t struct_size`; structs only grow at the end within a major version, and a
 *    reader uses min(its size, struct_size). Tables of function pointers follow the same rule.
 *  - Who creates an object destroys it. Tensors are engine-owned, refcounted opaque handles; a function that
 *    returns an eng_tensor through an out-parameter hands the caller one reference (release it).
 *  - Errors: functions return eng_status; on failure the callee has set a message in the call's context
 *    (host->set_error); the caller reads it with host->get_error.
 *  - Every call carries a context (eng_ctx): device, stream, autograd switch, rank, the error slot.
 */
#ifndef ENGINE_ABI_ENGINE_H
#define ENGINE_ABI_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- versions ------------------------------------------------------------------------------------------ */

#define ENG_ABI_VERSION_MAJOR 1
#define ENG_ABI_VERSION_MINOR 1
#define ENG_ABI_MAKE_VERSION(major, minor) ((((uint32_t)(major)) << 16) | ((uint32_t)(minor) & 0xFFFFu))
#define ENG_ABI_VERSION ENG_ABI_MAKE_VERSION(ENG_ABI_VERSION_MAJOR, ENG_ABI_VERSION_MINOR)
#define ENG_ABI_MAJOR_OF(v) ((uint32_t)(v) >> 16)
#define ENG_ABI_MINOR_OF(v) ((uint32_t)(v) & 0xFFFFu)

/* The single symbol a plugin library exports. */
#define ENG_PLUGIN_ENTRY_SYMBOL "engine_plugin_negotiate"

#if defined(_WIN32)
#define ENG_PLUGIN_EXPORT __declspec(dllexport)
#else
#define ENG_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* ---- status codes -------------------------------------------------------------------------------------- */

typedef int32_t eng_status;
#define ENG_OK 0
#define ENG_ERR_INVALID_ARGUMENT 1 /* a caller passed something wrong (shape, dtype, option)        */
#define ENG_ERR_UNSUPPORTED 2      /* valid request this implementation cannot do (device, dtype) */
#define ENG_ERR_OUT_OF_MEMORY 3
#define ENG_ERR_IO 4               /* a file could not be read or written                         */
#define ENG_ERR_VERSION 5          /* ABI negotiation failed                                       */
#define ENG_ERR_NOT_FOUND 6        /* a named thing (parameter, key, state entry) does not exist   */
#define ENG_ERR_INTERNAL 7         /* a bug, or an exception of unknown type caught at the edge    */
#define ENG_ERR_NONFINITE 8        /* NaN or Inf where a finite number was required                */

/* ---- enums (all uint32_t-wide) ------------------------------------------------------------------------- */

typedef uint32_t eng_plugin_kind;
#define ENG_KIND_MODEL 1u
#define ENG_KIND_QUANTIZER 2u
#define ENG_KIND_PEFT 3u
#define ENG_KIND_PARALLEL 4u
#define ENG_KIND_OPTIMIZER 5u

typedef uint32_t eng_dtype;
#define ENG_F32 0u
#define ENG_BF16 1u
#define ENG_F16 2u
#define ENG_F64 3u
#define ENG_I32 4u
#define ENG_I64 5u
#define ENG_U8 6u
#define ENG_I8 7u
#define ENG_BOOL 8u

/* Device types use DLPack's numbering so that a DLDevice converts directly. */
typedef uint32_t eng_device_type;
#define ENG_DEVICE_CPU 1u  /* == kDLCPU  */
#define ENG_DEVICE_CUDA 2u /* == kDLCUDA */

typedef uint32_t eng_log_level;
#define ENG_LOG_TRACE 0u
#define ENG_LOG_DEBUG 1u
#define ENG_LOG_INFO 2u
#define ENG_LOG_WARN 3u
#define ENG_LOG_ERROR 4u

/* Capability flags common to every kind (bits 0..15); kind headers define bits 16..63. */
#define ENG_CAP_DEVICE_CPU (1ull << 0)  /* runs on the CPU backend  */
#define ENG_CAP_DEVICE_CUDA (1ull << 1) /* runs on the CUDA backend */

/* ---- opaque handles ------------------------------------------------------------------------------------ */

typedef struct eng_tensor_s* eng_tensor;     /* engine-owned, refcounted                                   */
typedef struct eng_param_s* eng_param;       /* a named parameter in the parameter store; never freed by a plugin */
typedef struct eng_kv_cache_s* eng_kv_cache; /* engine-owned key/value cache used by the attention op      */
typedef struct eng_state_s* eng_state;       /* a string-keyed tensor dictionary for save/load             */
typedef uint32_t eng_op_id;                  /* a registered custom op                                     */

/* ---- the per-call context ------------------------------------------------------------------------------ */

typedef struct eng_ctx {
  uint32_t struct_size;
  eng_device_type device_type; /* where tensors made in this call live                          */
  int32_t device_index;
  int32_t grad_enabled;        /* 0: ops record nothing on the autograd tape                    */
  int32_t rank;                /* this process in the job, 0..world_size-1                      */
  int32_t world_size;
  int32_t local_rank;
  int32_t reserved0;
  void* stream;                /* cudaStream_t on CUDA, NULL on the CPU                          */
  void* host_data;             /* engine-private (session, error slot); plugins pass it through */
} eng_ctx;

/* ---- parameters ---------------------------------------------------------------------------------------- */

#define ENG_MAX_DIMS 8

/* What a parameter is, as the model declares it. */
typedef uint32_t eng_param_role;
#define ENG_ROLE_OTHER 0u
#define ENG_ROLE_EMBEDDING 1u /* token embedding table (V, C)                         */
#define ENG_ROLE_LINEAR 2u    /* projection weight (out, in), used through the linear seam */
#define ENG_ROLE_BIAS 3u      /* bias of a projection (out)                          */
#define ENG_ROLE_NORM 4u      /* norm scale (C)                                      */
#define ENG_ROLE_ADAPTER 5u   /* added by a PEFT method                              */

/* Parameter flags. */
#define ENG_PARAM_TRAINABLE (1u << 0) /* receives gradients and is stepped by the optimizer     */
#define ENG_PARAM_NO_DECAY (1u << 1)  /* optimizer applies no weight decay (biases, norms)       */
#define ENG_PARAM_QUANTIZED (1u << 2) /* base storage is held by the quantizer (set by engine)   */
#define ENG_PARAM_TIED (1u << 3)      /* shares storage with another parameter (tied embeddings) */
#define ENG_PARAM_NOT_SAVED (1u << 4) /* not read from / written to checkpoints                   */
/* How tensor parallelism may split a parameter (ABI 1.1). The model or PEFT plugin declares them; only a
 * strategy that splits (tp, through param_set_split) acts on them.
 *   TP_COLUMN: split along dim 0, the output features (whole heads); the linear's input is replicated and its
 *              gradient summed over the group.
 *   TP_ROW: split along dim 1, the input features; the linear's output is summed over the group, its
 *           (replicated) bias added after the sum.
 *   TP_PARTIAL_GRAD: replicated, but used on split activations, so each rank's gradient is a partial sum over
 *                    the group (LoRA's A of a column-split base, B of a row-split one). */
#define ENG_PARAM_TP_COLUMN (1u << 5)
#define ENG_PARAM_TP_ROW (1u << 6)
#define ENG_PARAM_TP_PARTIAL_GRAD (1u << 7)
/* (set by the engine, ABI 1.1) kept by one rank of the model group alone (param_set_holder: a pipeline stage) */
#define ENG_PARAM_HELD (1u << 8)

/* How a parameter is initialised when no checkpoint provides it. */
typedef uint32_t eng_init_kind;
#define ENG_INIT_ZEROS 0u
#define ENG_INIT_ONES 1u
#define ENG_INIT_NORMAL 2u          /* N(0, a^2)                                     */
#define ENG_INIT_UNIFORM 3u         /* U(-a, a)                                      */
#define ENG_INIT_KAIMING_UNIFORM 4u /* torch's kaiming_uniform_(w, a=sqrt(a)) as in nn.Linear and PEFT's lora_A */

typedef struct eng_param_decl {
  uint32_t struct_size;
  const char* name;                /* Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight" */
  int32_t ndim;
  int64_t shape[ENG_MAX_DIMS];
  eng_dtype dtype;                 /* compute/storage dtype requested; the engine may keep an fp32 master */
  eng_param_role role;
  uint32_t flags;
  eng_init_kind init;
  double init_arg;
  const char* tied_to;             /* ENG_PARAM_TIED: the name of the parameter whose storage it shares */
} eng_param_decl;

typedef struct eng_param_info {
  uint32_t struct_size;
  const char* name;                /* valid while the parameter store lives */
  int32_t ndim;
  int64_t shape[ENG_MAX_DIMS];
  eng_dtype dtype;
  eng_param_role role;
  uint32_t flags;
  int32_t block;                   /* decoder block index it was declared in, -1 outside blocks */
} eng_param_info;

/* ---- attention, rope and the KV cache ------------------------------------------------------------------ */

typedef uint32_t eng_rope_scaling;
#define ENG_ROPE_NONE 0u
#define ENG_ROPE_LLAMA3 1u /* Llama 3.1 "rope_type": "llama3" frequency rescaling */
#define ENG_ROPE_LINEAR 2u /* position interpolation: positions / factor        */

typedef struct eng_rope_config {
  uint32_t struct_size;
  double theta;                /* rope_theta                                              */
  int32_t rotary_dim;          /* dims rotated (== head_dim for llama/qwen2)              */
  eng_rope_scaling scaling;
  double factor;               /* llama3 / linear                                         */
  double low_freq_factor;      /* llama3                                                  */
  double high_freq_factor;     /* llama3                                                  */
  int64_t original_max_position; /* llama3: original_max_position_embeddings              */
} eng_rope_config;

/* Input of a model forward. */
typedef struct eng_batch {
  uint32_t struct_size;
  eng_tensor input_ids;    /* (B, T) int32                                                           */
  eng_tensor position_ids; /* (B, T) int32; restart at 0 for every packed sample                     */
  eng_tensor segment_ids;  /* (B, T) int32 or NULL: tokens attend only to earlier tokens of the same segment */
  eng_kv_cache kv_cache;   /* NULL in training; in generation the attention op appends to it        */
} eng_batch;

/* ---- custom ops ------------------------------------------------------------------------------------------
 * A plugin may register an op with its own forward and backward. The engine records it on the tape like a
 * built-in op, replays its forward under activation checkpointing, and calls its backward. Kernels are the
 * plugin's: it receives tensors whose memory it can reach through host->tensor_dlpack. */
typedef struct eng_custom_op {
  uint32_t struct_size;
  const char* name;            /* unique per process, e.g. "nf4.dequant_matmul"                            */
  int32_t n_inputs;
  int32_t n_outputs;
  uint32_t attrs_size;         /* bytes of the plain-data attribute block copied and kept by the engine    */
  uint32_t reserved0;
  void* self;                  /* passed back to forward/backward; must outlive the run                    */
  /* outputs: n_outputs new tensors (one reference each) */
  eng_status (*forward)(void* self, const eng_ctx* ctx, const eng_tensor* inputs, const void* attrs,
                        eng_tensor* outputs);
  /* grad_inputs: n_inputs new tensors or NULL where an input needs no gradient (needs_grad[i] == 0) */
  eng_status (*backward)(void* self, const eng_ctx* ctx, const eng_tensor* inputs, const eng_tensor* outputs,
                         const eng_tensor* grad_outputs, const void* attrs, const int32_t* needs_grad,
                         eng_tensor* grad_inputs);
  /* appended in ABI 1.1 (the struct was 56 bytes before; a shorter struct_size reads as 0): ENG_CUSTOM_OP_*
   * bits saying what backward does not read, so that the engine does not keep it alive until backward */
  uint32_t flags;
  uint32_t reserved1;
} eng_custom_op;

/* backward reads no input values: the engine keeps none for it and passes NULL for each input (the shapes and
 * dtypes are the gradients' own: grad_inputs[i] must still have input i's shape) */
#define ENG_CUSTOM_OP_BACKWARD_NO_INPUTS 1u
/* backward reads no output values: the engine keeps none for it and passes NULL for each output (an op whose
 * output is large and whose gradient needs only the inputs, e.g. a matmul against a frozen weight) */
#define ENG_CUSTOM_OP_BACKWARD_NO_OUTPUTS 2u

/* ---- the op table -----------------------------------------------------------------------------------------
 * Every op takes the context first, borrows its inputs and returns a new tensor (one reference) in *out.
 * With ctx->grad_enabled the op is recorded on the autograd tape: plugins write forward passes only.
 * Shapes use B batch, T time, C channels, H heads, D head dim, V vocabulary. Entries are only ever appended. */
typedef struct eng_op_table {
  uint32_t struct_size;
  /* ids (B,T) int32 -> (B,T,C) rows of the embedding parameter */
  eng_status (*embedding)(const eng_ctx* ctx, eng_param table, eng_tensor ids, eng_tensor* out);
  /* the linear seam: x (..., in) -> x W^T + b (..., out); W resolved through the quantizer and PEFT */
  eng_status (*linear)(const eng_ctx* ctx, eng_tensor x, eng_param weight, eng_param bias /* or NULL */,
                       eng_tensor* out);
  /* batched matmul on tensors: a (..., M, K) [or (..., K, M) with trans_a], b (..., K, N) [or (..., N, K)] */
  eng_status (*matmul)(const eng_ctx* ctx, eng_tensor a, eng_tensor b, int32_t trans_a, int32_t trans_b,
                       eng_tensor* out);
  /* elementwise, b broadcast over a's leading dims when b has fewer dims (trailing dims equal) */
  eng_status (*add)(const eng_ctx* ctx, eng_tensor a, eng_tensor b, eng_tensor* out);
  eng_status (*mul)(const eng_ctx* ctx, eng_tensor a, eng_tensor b, eng_tensor* out);
  eng_status (*scale)(const eng_ctx* ctx, eng_tensor x, double s, eng_tensor* out);
  /* x (..., C) * rsqrt(mean(x^2) + eps) * w (C) */
  eng_status (*rms_norm)(const eng_ctx* ctx, eng_tensor x, eng_param weight, double eps, eng_tensor* out);
  /* x (B,T,H,D), position_ids (B,T) int32; Hugging Face rotate_half convention */
  eng_status (*rope)(const eng_ctx* ctx, eng_tensor x, eng_tensor position_ids, const eng_rope_config* cfg,
                     eng_tensor* out);
  /* causal grouped-query attention: q (B,T,Hq,D), k and v (B,T,Hkv,D), Hq % Hkv == 0 -> (B,T,Hq,D).
   * segment_ids (B,T) int32 or NULL restricts attention to the same segment (packed samples).
   * kv_cache non-NULL: k and v are appended at the cache's current length for `layer` and q attends to all. */
  eng_status (*attention)(const eng_ctx* ctx, eng_tensor q, eng_tensor k, eng_tensor v, eng_tensor segment_ids,
                          double softmax_scale, eng_kv_cache kv_cache, int32_t layer, eng_tensor* out);
  eng_status (*silu)(const eng_ctx* ctx, eng_tensor x, eng_tensor* out);
  /* silu(gate) * up */
  eng_status (*swiglu)(const eng_ctx* ctx, eng_tensor gate, eng_tensor up, eng_tensor* out);
  /* softmax over the last dim */
  eng_status (*softmax)(const eng_ctx* ctx, eng_tensor x, eng_tensor* out);
  /* loss = scale * sum_i CE(logits_i, labels_i) over labels != ignore_index; logits (N,V), labels (N) int32 -> () f32 */
  eng_status (*cross_entropy)(const eng_ctx* ctx, eng_tensor logits, eng_tensor labels, int64_t ignore_index,
                              double scale, eng_tensor* out);
  /* the fused loss: hidden (N,C) @ weight (V,C)^T -> CE, in chunks; full (N,V) logits never exist -> () f32 */
  eng_status (*linear_cross_entropy)(const eng_ctx* ctx, eng_tensor hidden, eng_param weight, eng_tensor labels,
                                     int64_t ignore_index, double scale, eng_tensor* out);
  /* inverted dropout with probability p, from the engine's seeded generator (identical on replay) */
  eng_status (*dropout)(const eng_ctx* ctx, eng_tensor x, double p, eng_tensor* out);
  eng_status (*cast)(const eng_ctx* ctx, eng_tensor x, eng_dtype dtype, eng_tensor* out);
  /* a shape with one -1 entry is inferred */
  eng_status (*reshape)(const eng_ctx* ctx, eng_tensor x, int32_t ndim, const int64_t* shape, eng_tensor* out);
  eng_status (*transpose)(const eng_ctx* ctx, eng_tensor x, int32_t dim0, int32_t dim1, eng_tensor* out);
  /* [start, end) along dim */
  eng_status (*slice)(const eng_ctx* ctx, eng_tensor x, int32_t dim, int64_t start, int64_t end, eng_tensor* out);
  eng_status (*concat)(const eng_ctx* ctx, int32_t n, const eng_tensor* xs, int32_t dim, eng_tensor* out);
  eng_status (*contiguous)(const eng_ctx* ctx, eng_tensor x, eng_tensor* out);
  /* sum of all elements -> () f32 */
  eng_status (*sum)(const eng_ctx* ctx, eng_tensor x, eng_tensor* out);
  /* the current value of a parameter as a tensor that carries gradients back to it */
  eng_status (*param)(const eng_ctx* ctx, eng_param p, eng_tensor* out);
  /* a registered custom op (host->op_register); outputs: n_outputs new tensors */
  eng_status (*custom)(const eng_ctx* ctx, eng_op_id op, const eng_tensor* inputs, const void* attrs,
                       eng_tensor* outputs);

  /* In-place updates, never recorded (optimizers, parallel strategies). dst must be contiguous. */
  /* dst = a * dst + b * src */
  eng_status (*axpby_)(const eng_ctx* ctx, eng_tensor dst, double a, eng_tensor src, double b);
  /* dst = src (converting dtype) */
  eng_status (*copy_)(const eng_ctx* ctx, eng_tensor dst, eng_tensor src);
  eng_status (*fill_)(const eng_ctx* ctx, eng_tensor dst, double value);

  /* ---- appended in ABI 1.1: elementwise math for device-independent optimizers (check struct_size before
   * calling; docs/ABI.md "Elementwise math"). Recorded like the ops above; floating inputs (f32, bf16, f16;
   * f64 on the CPU) combine to one compute dtype as for add. Binary ops and where broadcast numpy-style: shapes
   * are aligned at their last dim and each dim pair is equal or has a 1 (the output takes the other); add and
   * mul above broadcast the same way since 1.1 (every pair they accepted before gives the same result). */
  eng_status (*sqrt)(const eng_ctx* ctx, eng_tensor x, eng_tensor* out);
  /* 1 / sqrt(x) */
  eng_status (*rsqrt)(const eng_ctx* ctx, eng_tensor x, eng_tensor* out);
  /* a / b, broadcast */
  eng_status (*div)(const eng_ctx* ctx, eng_tensor a, eng_tensor b, eng_tensor* out);
  /* -1, 0 or +1; its gradient is 0 */
  eng_status (*sign)(const eng_ctx* ctx, eng_tensor x, eng_tensor* out);
  /* |x|; gradient sign(x) (0 at 0) */
  eng_status (*abs)(const eng_ctx* ctx, eng_tensor x, eng_tensor* out);
  /* max(a, b) / min(a, b), broadcast; at a tie each input gets half the gradient */
  eng_status (*maximum)(const eng_ctx* ctx, eng_tensor a, eng_tensor b, eng_tensor* out);
  eng_status (*minimum)(const eng_ctx* ctx, eng_tensor a, eng_tensor b, eng_tensor* out);
  /* cond != 0 ? a : b, the three broadcast together; cond floating, int32 or u8 (bool too on the CPU), no
   * gradient for cond */
  eng_status (*where)(const eng_ctx* ctx, eng_tensor cond, eng_tensor a, eng_tensor b, eng_tensor* out);
  /* x ^ exponent (NaN for negative x and a non-integer exponent, as std::pow) */
  eng_status (*pow_scalar)(const eng_ctx* ctx, eng_tensor x, double exponent, eng_tensor* out);
  /* min(max(x, lo), hi), lo <= hi; the gradient passes where lo <= x <= hi */
  eng_status (*clamp)(const eng_ctx* ctx, eng_tensor x, double lo, double hi, eng_tensor* out);
  /* Multi-tensor in-place updates, never recorded (one call updates n tensors, one kernel launch per few dozen
   * on CUDA). For every i < n: dst[i] contiguous f32 (or f64 on the CPU; bf16 on CUDA); x[i] and y[i] of
   * dst[i]'s shape, any floating dtype and layout. The arrays hold n handles each. */
  /* dst[i] = a * dst[i] + b * src[i] */
  eng_status (*foreach_axpby_)(const eng_ctx* ctx, int32_t n, const eng_tensor* dst, double a,
                               const eng_tensor* src, double b);
  /* dst[i] = a * dst[i] + c * x[i] * y[i]   (Adam's second moment with x = y = the gradient) */
  eng_status (*foreach_addcmul_)(const eng_ctx* ctx, int32_t n, const eng_tensor* dst, double a,
                                 const eng_tensor* x, const eng_tensor* y, double c);
  /* dst[i] = a * dst[i] + c * x[i] / (sqrt(y_scale * y[i]) + eps) when sqrt_y != 0, else
   * a * dst[i] + c * x[i] / (y_scale * y[i] + eps)   (Adam's step with bias corrections in c and y_scale) */
  eng_status (*foreach_addcdiv_)(const eng_ctx* ctx, int32_t n, const eng_tensor* dst, double a,
                                 const eng_tensor* x, const eng_tensor* y, double c, double y_scale, double eps,
                                 int32_t sqrt_y);
  /* dst[i] = a * dst[i] + c * sign(p * x[i] + q * y[i]); y may be NULL (sign(p * x[i]))   (Lion, signSGD) */
  eng_status (*foreach_add_sign_)(const eng_ctx* ctx, int32_t n, const eng_tensor* dst, double a,
                                  const eng_tensor* x, double p, const eng_tensor* y, double q, double c);
} eng_op_table;

/* ---- the host service table ----------------------------------------------------------------------------
 * The plugin's only way into the engine (SQLite-style). Valid from negotiate until the process ends. */
/* What a plugin may need to know of the device its kernels run on (device_properties; appended in 1.0). */
typedef struct eng_device_properties {
  uint32_t struct_size;
  eng_device_type device_type;
  int32_t device_index;
  int32_t sm_count;           /* CUDA multiprocessors; the CPU's worker threads on the CPU  */
  int32_t compute_capability; /* CUDA major * 10 + minor (90: H100/H200); 0 on the CPU      */
  int32_t reserved0;
  uint64_t total_memory;      /* bytes of device memory (host memory on the CPU)            */
  char name[64];              /* "NVIDIA H200", "cpu"; NUL-terminated                       */
} eng_device_properties;

typedef struct eng_host_api {
  uint32_t struct_size;
  uint32_t abi_version; /* the version the host and this plugin agreed on */

  /* logging and errors */
  void (*log)(const eng_ctx* ctx, eng_log_level level, const char* message);
  /* set the message of the error being returned in ctx's error slot; code is the status being returned */
  void (*set_error)(const eng_ctx* ctx, eng_status code, const char* message);
  /* the message of the last error set in ctx's slot, "" if none; valid until the next set_error */
  const char* (*get_error)(const eng_ctx* ctx);

  /* tensors */
  eng_status (*tensor_empty)(const eng_ctx* ctx, eng_dtype dtype, int32_t ndim, const int64_t* shape,
                             eng_tensor* out);
  eng_status (*tensor_zeros)(const eng_ctx* ctx, eng_dtype dtype, int32_t ndim, const int64_t* shape,
                             eng_tensor* out);
  /* copies `bytes` of host memory (contiguous, row-major) into a new tensor on ctx's device */
  eng_status (*tensor_from_host)(const eng_ctx* ctx, eng_dtype dtype, int32_t ndim, const int64_t* shape,
                                 const void* data, size_t bytes, eng_tensor* out);
  /* copies the tensor (any layout, any device) into contiguous host memory of `bytes` */
  eng_status (*tensor_to_host)(const eng_ctx* ctx, eng_tensor t, void* dst, size_t bytes);
  void (*tensor_retain)(eng_tensor t);
  void (*tensor_release)(eng_tensor t); /* NULL is accepted */
  int32_t (*tensor_ndim)(eng_tensor t);
  int64_t (*tensor_dim)(eng_tensor t, int32_t i); /* negative i counts from the end */
  eng_dtype (*tensor_dtype)(eng_tensor t);
  /* a raw view; its shape and strides arrays stay valid while t is alive. Strides are in elements. */
  eng_status (*tensor_dlpack)(eng_tensor t, DLTensor* out);

  /* memory on ctx's device through the engine's caching allocator */
  eng_status (*device_alloc)(const eng_ctx* ctx, size_t bytes, void** out);
  void (*device_free)(const eng_ctx* ctx, void* ptr);

  /* the op table (records autograd) */
  const eng_op_table* ops;

  /* custom ops */
  eng_status (*op_register)(const eng_ctx* ctx, const eng_custom_op* op, eng_op_id* out);

  /* the parameter store */
  eng_status (*param_declare)(const eng_ctx* ctx, const eng_param_decl* decl, eng_param* out);
  int64_t (*param_count)(const eng_ctx* ctx);
  eng_param (*param_at)(const eng_ctx* ctx, int64_t index);
  eng_param (*param_find)(const eng_ctx* ctx, const char* name); /* NULL if absent */
  eng_status (*param_info)(eng_param p, eng_param_info* out);
  /* the stored value itself (not a copy), contiguous, row-major, of the declared shape, on ctx's device:
   * an ENG_F32 master while the parameter is trainable (whatever dtype it was declared with), its declared
   * storage dtype (e.g. ENG_BF16) while frozen. A tied parameter gives its root's value. A parameter held by a
   * quantizer has none (ENG_ERR_UNSUPPORTED). In-place updates (optimizers, PEFT load) change the parameter;
   * the tensor stays valid while the reference is held, but set_trainable replaces it (fetch it again). */
  eng_status (*param_value)(const eng_ctx* ctx, eng_param p, eng_tensor* out);
  /* the gradient accumulated over the step's micro-batches: ENG_F32, contiguous, the parameter's shape, on
   * ctx's device; *out = NULL (and ENG_OK) when no backward reached it yet. Not yet scaled by the clipping
   * factor: the optimizer multiplies by eng_optim_step.grad_scale. */
  eng_status (*param_grad)(const eng_ctx* ctx, eng_param p, eng_tensor* out);
  eng_status (*param_set_trainable)(const eng_ctx* ctx, eng_param p, int32_t trainable);
  /* PEFT: route linear(x, base) through the run's PEFT plugin with this cookie */
  eng_status (*peft_attach)(const eng_ctx* ctx, eng_param base, void* cookie);

  /* the block seam: activation checkpointing and parallel hooks act between these */
  eng_status (*block_begin)(const eng_ctx* ctx, int32_t block);
  eng_status (*block_end)(const eng_ctx* ctx, int32_t block);

  /* random numbers from the run's seeded generator (reproducible, saved in checkpoints) */
  uint64_t (*rng_next_u64)(const eng_ctx* ctx);

  /* state dictionaries (optimizer and strategy state in checkpoints) */
  eng_status (*state_put)(const eng_ctx* ctx, eng_state st, const char* key, eng_tensor t);
  eng_status (*state_get)(const eng_ctx* ctx, eng_state st, const char* key, eng_tensor* out);

  /* collectives over the run's communicator (NCCL for CUDA tensors, Gloo for CPU tensors); in place */
  eng_status (*all_reduce_sum)(const eng_ctx* ctx, eng_tensor t);
  eng_status (*broadcast)(const eng_ctx* ctx, eng_tensor t, int32_t root);
  eng_status (*all_gather)(const eng_ctx* ctx, eng_tensor shard, eng_tensor full);       /* full = concat of shards */
  eng_status (*reduce_scatter_sum)(const eng_ctx* ctx, eng_tensor full, eng_tensor shard);
  eng_status (*barrier)(const eng_ctx* ctx);

  /* plugin-owned state dictionaries and tensor files (appended: the struct_size rule applies) */
  /* a new empty string -> tensor dictionary owned by the caller (free it with state_destroy) */
  eng_status (*state_create)(const eng_ctx* ctx, eng_state* out);
  /* frees a state from state_create or safetensors_read (NULL accepted); never one the engine passed in */
  void (*state_destroy)(eng_state st);
  /* number of entries, -1 for NULL */
  int64_t (*state_size)(eng_state st);
  /* the i-th key in sorted order, NULL when out of range; valid until the state changes */
  const char* (*state_key_at)(eng_state st, int64_t i);
  /* writes every entry to `path` atomically, byte-identical to Python's safetensors for the same tensors;
   * metadata_json: a JSON object of strings for "__metadata__", or NULL */
  eng_status (*safetensors_write)(const eng_ctx* ctx, const char* path, eng_state st,
                                  const char* metadata_json);
  /* reads and validates a .safetensors file into a new caller-owned state: tensors on ctx's device in their
   * stored dtype; errors name the file and the tensor */
  eng_status (*safetensors_read)(const eng_ctx* ctx, const char* path, eng_state* out);

  /* the device of ctx (appended): fills *out up to out->struct_size, which the caller sets. Kernels a plugin
   * carries run on ctx->stream (the engine's compute stream on CUDA) and allocate with device_alloc. */
  eng_status (*device_properties)(const eng_ctx* ctx, eng_device_properties* out);

  /* ---- appended in ABI 1.1 (check struct_size before calling; docs/ABI.md "1.1") ---- */
  /* The engine's one target matcher, for PEFT target_modules and quantizer skip lists: *out = 1 when the
   * module `name` ("model.layers.0.self_attn.q_proj"; a parameter name's trailing ".weight"/".bias" is
   * dropped) matches spec_json, else 0. spec_json is the recipe's value as JSON:
   *   "all-linear"  every ENG_ROLE_LINEAR weight declared inside a decoder block, never lm_head;
   *   any other string: an ECMAScript regular expression matched against the whole module name;
   *   a list of strings: a module equal to an entry or ending with "." + entry (last component or suffix).
   * A malformed spec is ENG_ERR_INVALID_ARGUMENT with a message saying what is wrong. */
  eng_status (*target_match)(const eng_ctx* ctx, const char* spec_json, const char* name, int32_t* out);
  /* writes `bytes` of `data` (text, JSON, anything) to `path` atomically: a temporary file in the same folder,
   * fsynced, renamed over `path`, the folder fsynced. The folder must exist. A failure names the file. */
  eng_status (*file_write)(const eng_ctx* ctx, const char* path, const void* data, size_t bytes);

  /* ---- appended in ABI 1.1: parameter placement (zero3/fsdp) ----------------------------------------------
   * A parallel strategy with ENG_PAR_CAP_SHARDS_PARAMS keeps parameters as flat shards (docs/distributed.md).
   * Rank r of W holds elements [r*shard, (r+1)*shard) of the flattened (row-major) root parameter, zeros past
   * its end (shard * W >= numel). The full value lives in one buffer of W*shard elements whose memory exists
   * only between param_gather and param_release; param_value and the ops gather on demand, so any use is
   * correct, and the strategy's block hooks gather ahead and release after. Tensors of a released value stay
   * valid handles (the tape's saved references); touching their memory before the next gather is an error.
   * The gather, release and reduce entries are collectives: every rank calls them in the same order. */
  /* (setup only) place root p as shards of `shard` elements per rank (0: whole on every rank). Applied after
   * the weights are loaded and initialised. Quantized parameters are refused (ENG_ERR_UNSUPPORTED). */
  eng_status (*param_set_local)(const eng_ctx* ctx, eng_param p, int64_t shard);
  /* collective: the full value becomes valid (an all-gather of the shards); no-op when whole or gathered */
  eng_status (*param_gather)(const eng_ctx* ctx, eng_param p);
  /* the full value's memory goes back to the device; no-op when whole or released */
  eng_status (*param_release)(const eng_ctx* ctx, eng_param p);
  /* collective, trainable sharded p: the gradient accumulated since the last call, summed over ranks, is
   * added into the local gradient shard and the full gradient is freed (reduce-scatter). Call it when p's
   * gradient is final for the micro-batch (after its block's backward). */
  eng_status (*param_reduce_grad)(const eng_ctx* ctx, eng_param p);
  /* what an ENG_OPT_CAP_SHARDED optimizer steps: the local shard (1-D, `shard` elements, the storage dtype)
   * and its local gradient (f32, NULL when none yet) of a sharded p; the whole value and gradient (as
   * param_value, param_grad) of any other. Either out may be NULL. */
  eng_status (*param_local)(const eng_ctx* ctx, eng_param p, eng_tensor* value, eng_tensor* grad);

  /* ---- appended in ABI 1.1: flat shards (fsdp) ------------------------------------------------------------
   * (setup only) place the `count` roots in `params` together as one flat buffer (their flattened values back
   * to back, in this order) cut into `world` equal shards of ceil(total / world) elements, zeros past the end;
   * rank r keeps shard r, so one parameter may span several ranks' shards and have no element in another's.
   * All must share the storage dtype (fp32 while trainable, else the declared dtype) and the trainability;
   * none may be tied, quantized or placed already. Afterwards param_gather, param_release and
   * param_reduce_grad of any member act on the whole buffer (one collective for all members), and param_local
   * gives a member's part of this rank's shard: the elements [begin, end) of its flattened value that lie in
   * it, possibly none (a 1-D tensor of 0 elements), and the same part of the local gradient. */
  eng_status (*param_set_local_flat)(const eng_ctx* ctx, const eng_param* params, int64_t count);

  /* ---- appended in ABI 1.1: split parameters (tensor parallelism, tp) ------------------------------------
   * (setup only) keep root p as slice `rank` of `world` equal slices along dim `dim` (0 or 1; shape[dim] must
   * divide by the world size; the slice is a plain tensor of the local shape). Applied after the weights are
   * loaded. param_value, param_local and the gradient are then the local slice; the linear seam adds the
   * collectives the split implies (dim 0: the input's gradient summed over the ranks; dim 1: the output
   * summed over the ranks, then the bias added), and attention runs on the heads the local q/k/v hold. The
   * model's eng_model_info heads must divide by the world size (whole heads per rank). Quantized, tied or
   * already placed parameters are refused. Checkpoints and saves consolidate the slices. */
  eng_status (*param_set_split)(const eng_ctx* ctx, eng_param p, int32_t dim);

  /* ---- appended in ABI 1.1: the groups of a tensor x data parallel mesh ---------------------------------
   * With a strategy whose data_parallel entry gives dp_size groups of world/dp_size ranks: ENG_GROUP_MODEL is
   * this rank's data-parallel group (its ranks hold the parts of one model: splits and the tensor-parallel
   * collectives use it), ENG_GROUP_DATA the ranks that hold the same part in every group (one per
   * data-parallel group). Without a mesh both are the world. t = sum of t over the group. */
  eng_status (*group_all_reduce_sum)(const eng_ctx* ctx, eng_tensor t, int32_t group);

  /* ---- appended in ABI 1.1: parameters held by one pipeline stage (pp) -----------------------------------
   * (setup only) only rank `holder` of ENG_GROUP_MODEL (the stage whose blocks use p) keeps root p: on the
   * group's other ranks it is never loaded, initialised or allocated, has no gradient and is not given to the
   * optimizer. param_gather makes it valid there (a broadcast from the holder: a collective of the model
   * group, which saves and exports use to consolidate), param_release frees it again. Tied, quantized or
   * already placed parameters are refused. */
  eng_status (*param_set_holder)(const eng_ctx* ctx, eng_param p, int32_t holder);
} eng_host_api;

#define ENG_GROUP_WORLD 0
#define ENG_GROUP_MODEL 1
#define ENG_GROUP_DATA 2

/* ---- negotiation --------------------------------------------------------------------------------------- */

typedef struct eng_negotiate_request {
  uint32_t struct_size;
  uint32_t host_abi_min; /* oldest version the host speaks          */
  uint32_t host_abi_max; /* newest version the host speaks          */
  uint32_t reserved0;
  const eng_host_api* host;
} eng_negotiate_request;

typedef struct eng_plugin_descriptor {
  uint32_t struct_size;
  uint32_t abi_version;            /* the version the plugin chose (or, on ENG_ERR_VERSION, the one it needs) */
  eng_plugin_kind kind;
  uint32_t reserved0;
  const char* name;                /* the recipe's `plugin = "..."`                                          */
  const char* version;             /* the plugin's own version, semver                                       */
  const char* description;         /* one line                                                               */
  const char* options_schema_json; /* JSON schema of its recipe section (object with "properties")         */
  uint64_t capabilities;           /* ENG_CAP_* and the kind's own flags                                     */
  const void* vtable;              /* the kind's table (eng_model_vtable, ...), starting with struct_size    */
} eng_plugin_descriptor;

/* The entry point. The host fills req and out->struct_size; the plugin fills the rest (all strings static)
 * and returns ENG_OK, or ENG_ERR_VERSION with out->abi_version set to the version it was built for. */
typedef eng_status (*eng_plugin_negotiate_fn)(const eng_negotiate_request* req, eng_plugin_descriptor* out);

#ifdef __cplusplus
}
#endif

#endif /* ENGINE_ABI_ENGINE_H */
