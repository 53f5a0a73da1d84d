/*
 * engine/abi/parallel.h: the parallel strategy plugin table (kind ENG_KIND_PARALLEL), ABI v1.
 *
 * A strategy plans which rank holds what, and acts at hooks the engine calls around each decoder block
 * (the block seam), when a gradient is ready, and around the optimizer step. Collectives go through the
 * host's communicator. Every hook is optional (NULL) except setup.
 */
#ifndef ENGINE_ABI_PARALLEL_H
#define ENGINE_ABI_PARALLEL_H

#include "engine/abi/engine.h"
#include "engine/abi/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* parallel capability flags (bits 16..) */
#define ENG_PAR_CAP_SHARDS_PARAMS (1ull << 16) /* parameters live as shards: optimizer must be ENG_OPT_CAP_SHARDED */
#define ENG_PAR_CAP_QUANTIZED (1ull << 17)     /* handles quantized base weights                               */

typedef uint32_t eng_phase;
#define ENG_PHASE_FORWARD 0u
#define ENG_PHASE_BACKWARD 1u

/* A pipeline stage (eng_parallel_vtable.pipeline). The schedule of one optimizer step over M micro-batches:
 * the stage runs min(warmup, M) forwards, then alternates one forward and one backward until every forward
 * ran, then the remaining backwards (1F1B: warmup = stages - 1 - stage; GPipe: warmup = M, every forward
 * before any backward). Consecutive stages' warmups must differ by one (1F1B) or all be >= M (GPipe), so
 * that each pair of neighbours exchanges activations and gradients in the same order. */
typedef struct eng_pipeline_stage {
  uint32_t struct_size;
  int32_t stages;       /* the pipeline's depth (ranks of ENG_GROUP_MODEL) */
  int32_t stage;        /* this rank's: 0 embeds the tokens, stages - 1 applies the final norm and the loss */
  int32_t first_block;  /* the decoder blocks [first_block, last_block) this stage runs */
  int32_t last_block;
  int32_t warmup;       /* forwards before the first backward (see above) */
} eng_pipeline_stage;

/* Layer placement (eng_parallel_vtable.place_layers): one process drives several devices, each decoder block
 * runs on one of them and the engine moves the activations between them (and their gradients back). The
 * engine fills the inputs and allocates both arrays; the strategy fills the outputs. */
typedef struct eng_layer_map {
  uint32_t struct_size;
  int32_t available;     /* in: devices the engine can place on (>= 1); 0: simulated CPU devices, any number */
  int64_t device_bytes;  /* in: the memory of one such device, bytes (0: unknown) */
  int32_t devices;       /* out: devices used, 1..available (any >= 1 when available is 0) */
  int32_t n_layers;      /* in: entries of block_device (the model's decoder blocks) */
  int32_t* block_device; /* out: each block's device, 0-based, nondecreasing, starting at 0, every device used */
  int64_t n_params;      /* in: entries of param_device (the host's params(), in that order) */
  int32_t* param_device; /* out: each parameter's device (a tied one: its root's; the engine reads roots) */
} eng_layer_map;

typedef struct eng_parallel_vtable {
  uint32_t struct_size;
  eng_status (*create)(const eng_host_api* host, const eng_ctx* ctx, const char* options_json, void** self);
  void (*destroy)(void* self);
  /* after parameters are declared and before they are loaded: decide placement */
  eng_status (*setup)(void* self, const eng_ctx* ctx);
  eng_status (*before_block)(void* self, const eng_ctx* ctx, int32_t block, eng_phase phase);
  eng_status (*after_block)(void* self, const eng_ctx* ctx, int32_t block, eng_phase phase);
  eng_status (*grad_ready)(void* self, const eng_ctx* ctx, eng_param param);
  /* all gradients of the accumulated batch are in: reduce them */
  eng_status (*before_step)(void* self, const eng_ctx* ctx);
  eng_status (*after_step)(void* self, const eng_ctx* ctx);
  eng_status (*save_state)(void* self, const eng_ctx* ctx, eng_state st);
  eng_status (*load_state)(void* self, const eng_ctx* ctx, eng_state st);
  /* ---- ABI 1.1 (read only when struct_size covers it) ---- */
  /* (optional) the rank whose optimizer steps this trainable parameter, or -1 for every rank (replicated
   * optimizer state). Called once per trainable parameter after setup; with it the engine gives the
   * optimizer only this rank's parameters, frees the gradients of the others after before_step (the strategy
   * has reduced them by then), and sums the gradient norm over ranks. The strategy makes the replicas equal
   * again in after_step (e.g. a broadcast from each owner). */
  int32_t (*param_owner)(void* self, const eng_ctx* ctx, eng_param param);
  /* (optional) this rank's place in data parallelism: ranks with the same *dp_rank train on the same rows
   * (they hold parts of one model: tensor parallelism), *dp_size such groups share the global batch. The
   * engine then shards the data over dp_size (not the world size) and counts each group's tokens and loss
   * once. Absent: every rank is its own group (dp_rank = rank, dp_size = world). world must be a multiple of
   * dp_size. */
  eng_status (*data_parallel)(void* self, const eng_ctx* ctx, int32_t* dp_rank, int32_t* dp_size);
  /* (optional) pipeline parallelism: this rank's stage. Asked right after setup, before the weights load,
   * with the model's sizes: the strategy places each parameter on the stage that uses it here
   * (param_set_holder). The ranks of one data-parallel group (ENG_GROUP_MODEL, all of them without a mesh)
   * are the stages in rank order. The engine then runs every optimizer step's micro-batches through the
   * stages (the model's forward_blocks over [first_block, last_block)), sending activations to the next
   * stage and their gradients back, and computes the loss on the last. Absent, or stages == 1: no pipeline. */
  eng_status (*pipeline)(void* self, const eng_ctx* ctx, const eng_model_info* model, eng_pipeline_stage* out);
  /* (optional) layer placement: the device of each decoder block and of each parameter (see eng_layer_map).
   * Asked right after setup (and pipeline), before the weights load; the engine allocates every parameter,
   * its gradient and its optimizer state on its device, runs each block where it was placed, and computes
   * the loss where the lm_head lives. Absent, or devices == 1: everything on the run's device. Exclusive with
   * pipeline stages, shards and splits. */
  eng_status (*place_layers)(void* self, const eng_ctx* ctx, const eng_model_info* model, eng_layer_map* out);
} eng_parallel_vtable;

/* The size of the ABI 1.0 table (what a plugin built for 1.0 has). */
#define ENG_PARALLEL_VTABLE_SIZE_1_0 88u

#ifdef __cplusplus
}
#endif

#endif /* ENGINE_ABI_PARALLEL_H */
