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

#ifdef __cplusplus
extern "C" {
#endif

/* parallel capability flags (bits 16..) */
#define ENG_PAR_CAP_SHARDS_PARAMS (1ull << 16) /* parameters live as shards: optimizer must be ENG_OPT_CAP_SHARDED */
#define ENG_PAR_CAP_QUANTIZED (1ull << 17)     /* handles quantized base weights                               */

typedef uint32_t eng_phase;
#define ENG_PHASE_FORWARD 0u
#define ENG_PHASE_BACKWARD 1u

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
} eng_parallel_vtable;

#ifdef __cplusplus
}
#endif

#endif /* ENGINE_ABI_PARALLEL_H */
