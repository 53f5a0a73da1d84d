/*
 * engine/abi/optimizer.h: the optimizer plugin table (kind ENG_KIND_OPTIMIZER), ABI v1.
 *
 * An optimizer owns the state of the parameters (or local shards) it is given and steps them in place,
 * reading gradients through host->param_grad and values through host->param_value.
 */
#ifndef ENGINE_ABI_OPTIMIZER_H
#define ENGINE_ABI_OPTIMIZER_H

#include "engine/abi/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* optimizer capability flags (bits 16..) */
#define ENG_OPT_CAP_SHARDED (1ull << 16) /* works on local shards (required by fsdp/zero3) */

typedef struct eng_param_group {
  uint32_t struct_size;
  uint32_t reserved0;
  double weight_decay; /* already 0 for ENG_PARAM_NO_DECAY parameters unless the recipe says otherwise */
  double lr_scale;     /* multiplies the scheduled learning rate                                   */
} eng_param_group;

typedef struct eng_optim_step {
  uint32_t struct_size;
  uint32_t reserved0;
  int64_t step;        /* 1-based count of optimizer steps, including this one */
  double lr;           /* the scheduled learning rate for this step            */
  double grad_scale;   /* multiply gradients by this before use (1 normally)   */
} eng_optim_step;

typedef struct eng_optimizer_vtable {
  uint32_t struct_size;
  /* options_json: the recipe's [optimizer] section (lr, weight_decay and the plugin's own keys) */
  eng_status (*create)(const eng_host_api* host, const eng_ctx* ctx, const char* options_json, void** self);
  void (*destroy)(void* self);
  eng_status (*add_param)(void* self, const eng_ctx* ctx, eng_param param, const eng_param_group* group);
  /* update every added parameter that has a gradient */
  eng_status (*step)(void* self, const eng_ctx* ctx, const eng_optim_step* s);
  eng_status (*save_state)(void* self, const eng_ctx* ctx, eng_state st);
  eng_status (*load_state)(void* self, const eng_ctx* ctx, eng_state st);
  /* bytes of optimizer state per trainable element (memory plan), e.g. 8 for fp32 AdamW */
  double (*state_bytes_per_element)(void* self);
} eng_optimizer_vtable;

#ifdef __cplusplus
}
#endif

#endif /* ENGINE_ABI_OPTIMIZER_H */
