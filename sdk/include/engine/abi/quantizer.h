/*
 * engine/abi/quantizer.h: the quantizer plugin table (kind ENG_KIND_QUANTIZER), ABI v1.
 *
 * A quantizer chooses which frozen weights it stores, quantizes them as they are loaded (or takes
 * pre-quantized tensors), and multiplies or dequantizes on the fly when the engine resolves the linear seam.
 * Its per-parameter state is opaque to the engine, which keeps it with the parameter.
 */
#ifndef ENGINE_ABI_QUANTIZER_H
#define ENGINE_ABI_QUANTIZER_H

#include "engine/abi/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* quantizer capability flags (bits 16..) */
#define ENG_QUANT_CAP_FROZEN_ONLY (1ull << 16)  /* quantized weights take no gradient: full fine-tuning of
                                                   them is refused at validation                       */
#define ENG_QUANT_CAP_PREQUANTIZED (1ull << 17) /* can load pre-quantized checkpoints (e.g. bnb-4bit)     */

typedef struct eng_quantizer_vtable {
  uint32_t struct_size;
  eng_status (*create)(const eng_host_api* host, const eng_ctx* ctx, const char* options_json, void** self);
  void (*destroy)(void* self);
  /* 1 if this parameter should be stored quantized */
  int32_t (*takes)(void* self, const eng_param_info* param);
  /* value: the full-precision weight (out,in); *state receives the quantizer's storage for it */
  eng_status (*quantize)(void* self, const eng_ctx* ctx, eng_param param, eng_tensor value, void** state);
  /* y = x W^T with W in quantized storage; differentiable in x (through a registered custom op) */
  eng_status (*linear)(void* self, const eng_ctx* ctx, void* state, eng_tensor x, eng_tensor* out);
  /* the weight back in `dtype` (merging adapters, export, debugging) */
  eng_status (*dequantize)(void* self, const eng_ctx* ctx, void* state, eng_dtype dtype, eng_tensor* out);
  void (*free_state)(void* self, void* state);
  /* bytes of storage per weight element, scales included (memory plan) */
  double (*bytes_per_element)(void* self);
  /* (optional) save and load the quantized storage of one parameter */
  eng_status (*save_state)(void* self, const eng_ctx* ctx, void* state, eng_state st, const char* prefix);
  eng_status (*load_state)(void* self, const eng_ctx* ctx, eng_param param, eng_state st, const char* prefix,
                           void** state);
  /* ---- ABI 1.1 (appended) ---- */
  /* (optional) 1 if `stored_name`, a tensor of the checkpoint being loaded, is part of this parameter's
   * pre-quantized storage (e.g. "<param>.absmax" of a bitsandbytes-4bit checkpoint). The loader then reads the
   * parameter's name and every name owned for it into one state and calls load_state(prefix = the parameter's
   * name) instead of quantize. NULL (or a 1.0 plugin): the quantizer owns no stored names. */
  int32_t (*owns)(void* self, const eng_param_info* param, const char* stored_name);
} eng_quantizer_vtable;

#ifdef __cplusplus
}
#endif

#endif /* ENGINE_ABI_QUANTIZER_H */
